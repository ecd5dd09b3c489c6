/**
 * mongrel2's `@*` notices: `METHOD: "JSON"` messages on path `@*` whose body
 * is `{"type":"disconnect"}` or `{"type":"credits"}`.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { parseJsonBytes } from "./json_bytes.ts";
import { firstHeader, type Mongrel2Message } from "./message.ts";

/** A notice mongrel2 sends about a connection rather than a request. */
export type Mongrel2Notice =
  | { type: "disconnect" }
  | { type: "credits"; credits: number };

/**
 * Returns the notice a message carries, or `null` when it is not a notice
 * (client "JSON socket" messages also use `METHOD: "JSON"`, but never the
 * `@*` path).
 *
 * @param message A parsed message.
 * @returns The notice, or `null`.
 * @throws {ProtocolError} When an `@*` message has an unknown or malformed body.
 *
 * @example Usage
 * ```ts
 * import { parseMessage } from "./message.ts";
 * import { parseNotice } from "./notice.ts";
 * const bytes = new TextEncoder().encode(
 *   'abc 3 @* 17:{"METHOD":"JSON"},21:{"type":"disconnect"},',
 * );
 * console.assert(parseNotice(parseMessage(bytes))?.type === "disconnect");
 * ```
 */
export function parseNotice(message: Mongrel2Message): Mongrel2Notice | null {
  if (
    message.path !== "@*" || firstHeader(message.headers, "METHOD") !== "JSON"
  ) {
    return null;
  }
  const body = parseJsonBytes(message.body);
  const type = typeof body === "object" && body !== null && !Array.isArray(body)
    ? body.type
    : undefined;
  if (type === "disconnect") return { type };
  if (type === "credits") {
    const text = firstHeader(message.headers, "DOWNLOAD_CREDITS") ?? "";
    const credits = /^\d{1,12}$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(credits)) {
      throw new ProtocolError(
        `Cannot parse credits notice: DOWNLOAD_CREDITS "${text}" is not a byte count`,
        0,
      );
    }
    return { type, credits };
  }
  throw new ProtocolError(
    `Cannot parse notice: unknown type ${JSON.stringify(type)}`,
    0,
  );
}
