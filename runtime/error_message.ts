/**
 * The message of a thrown value, for a log line or for the message of an
 * error that wraps it.
 *
 * @module
 */

/**
 * Returns the message of a thrown value: an `Error`'s `message`, anything
 * else converted to a string.
 *
 * @param error What was thrown.
 * @returns Its message, without the error's name or stack.
 *
 * @example Usage
 * ```ts
 * import { errorMessage } from "./error_message.ts";
 * console.assert(errorMessage(new TypeError("bad port")) === "bad port");
 * console.assert(errorMessage(42) === "42");
 * ```
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
