/**
 * Abort reasons shared by the main thread and the handler workers. A leaf
 * module: a worker imports it without loading the connection state.
 *
 * @module
 */

/**
 * `request.signal.reason` once the response is out: the reason `deno serve`
 * gives. One instance for every request: a DOMException records a stack
 * when made, and this one says nothing a stack would add.
 *
 * @example Usage
 * ```ts
 * import { REQUEST_FINISHED } from "./abort_reasons.ts";
 * console.assert(REQUEST_FINISHED.name === "AbortError");
 * ```
 */
export const REQUEST_FINISHED: DOMException = new DOMException(
  "The request has been cancelled.",
  "AbortError",
);
