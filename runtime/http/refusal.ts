/**
 * The requests m2fetch answers itself instead of passing them to the
 * handler, decided from the message alone: pure, so each rule can be
 * tested with a built message.
 *
 * @module
 */

import {
  firstHeader,
  type Mongrel2Headers,
  type Mongrel2Message,
} from "../protocol/message.ts";

/** Why a request is answered by m2fetch, and how loudly to log it. */
export interface Refusal {
  /** The status m2fetch answers with. */
  status: number;
  /** The log line's reason. */
  why: string;
  /** The log level. */
  level: "info" | "warn" | "error";
}

/** What {@linkcode refusalOf} needs besides the message. */
export interface RefusalLimits {
  /** The largest body accepted, in bytes. */
  maxBodySize: number;
  /** Whether the server is shutting down. */
  stopping: boolean;
}

/**
 * Whether mongrel2 sent a WebSocket handshake (its body is mongrel2's
 * accept key, not a client body).
 *
 * @param message A parsed request.
 * @returns True for a `WEBSOCKET_HANDSHAKE`.
 *
 * @example Usage
 * ```ts
 * import { isHandshake } from "./refusal.ts";
 * import { parseMessage } from "../protocol/message.ts";
 * const message = parseMessage(new TextEncoder().encode(
 *   'abc 1 / 43:{"METHOD":"WEBSOCKET_HANDSHAKE","PATH":"/"},4:abcd,',
 * ));
 * console.assert(isHandshake(message));
 * ```
 */
export function isHandshake(message: Mongrel2Message): boolean {
  return firstHeader(message.headers, "METHOD") === "WEBSOCKET_HANDSHAKE";
}

/**
 * Why a request may mean one thing to the client (or a proxy in front of
 * mongrel2) and another to mongrel2 and the handler, if it may; RFC 9112
 * says to answer 400 and close, as `deno serve` does:
 *
 * - several different `Content-Length` values (mongrel2 reads the first), or
 *   a `Transfer-Encoding` mongrel2 did not decode (it decodes a single
 *   `chunked` only, which it spools, and otherwise reads the body by
 *   `Content-Length`, or takes none): what the client sent as body reaches
 *   mongrel2 as further requests, which a proxy in front never saw as such
 *   (§6.3);
 * - several `Host` headers: `request.url` takes the first, a handler reading
 *   the header gets them all, and mongrel2 routed by one of them (§3.2).
 *
 * @param headers The request's headers.
 * @param dechunked Whether mongrel2 decoded a chunked body (a chunked upload).
 * @returns The reason, or `null` when the request is unambiguous.
 *
 * @example Usage
 * ```ts
 * import { ambiguity } from "./refusal.ts";
 * console.assert(ambiguity({ "content-length": ["0", "35"] }, false) !== null);
 * console.assert(ambiguity({ "transfer-encoding": "gzip" }, false) !== null);
 * console.assert(ambiguity({ host: ["a", "b"] }, false) !== null);
 * console.assert(ambiguity({ "transfer-encoding": "chunked" }, true) === null);
 * ```
 */
export function ambiguity(
  headers: Mongrel2Headers,
  dechunked: boolean,
): string | null {
  const own = (name: string) =>
    Object.hasOwn(headers, name) ? headers[name] : undefined;
  const lengths = own("content-length");
  if (Array.isArray(lengths) && new Set(lengths).size > 1) {
    return `several Content-Length values (${
      lengths.join(", ")
    }), of which mongrel2 took the first`;
  }
  const coding = own("transfer-encoding");
  if (coding !== undefined && !(dechunked && typeof coding === "string")) {
    return `Transfer-Encoding "${
      [coding].flat().join(", ")
    }", which mongrel2 did not decode (it decodes a single "chunked" only)`;
  }
  const host = own("host");
  if (Array.isArray(host)) {
    return `several Host headers (${host.join(", ")})`;
  }
  return null;
}

/**
 * The answer m2fetch gives a request with no upload marker instead of
 * calling the handler, if any.
 *
 * @param message A parsed request (not an upload's start or done).
 * @param limits The body limit and whether the server is stopping.
 * @returns The refusal, or `null` to call the handler.
 *
 * @example Usage
 * ```ts
 * import { refusalOf } from "./refusal.ts";
 * import { parseMessage } from "../protocol/message.ts";
 * const message = parseMessage(new TextEncoder().encode(
 *   'abc 1 / 50:{"METHOD":"POST","PATH":"/","content-length":"10"},2:hi,',
 * ));
 * const refusal = refusalOf(message, { maxBodySize: 1024, stopping: false });
 * console.assert(refusal?.status === 400);
 * ```
 */
export function refusalOf(
  message: Mongrel2Message,
  limits: RefusalLimits,
): Refusal | null {
  if (message.headers.UPLOAD_STREAM !== undefined) {
    // mongrel2 would pass the rest of the body in continuation pieces
    // after upload credits m2fetch never grants: refused, not served
    // with a truncated body. Closing makes mongrel2 drop the upload.
    return {
      status: 501,
      why:
        "Refused a streamed upload: mongrel2 runs with upload.stream=1, which m2fetch does not take (set upload.stream=0 and upload.temp_store)",
      level: "warn",
    };
  }
  if (message.body.length > limits.maxBodySize) {
    return {
      status: 413,
      why:
        `Refused a ${message.body.length}-byte body over the ${limits.maxBodySize}-byte limit`,
      level: "warn",
    };
  }
  const ambiguous = ambiguity(message.headers, false);
  if (ambiguous !== null) {
    return {
      status: 400,
      why: `Refused an ambiguous request: ${ambiguous}`,
      level: "warn",
    };
  }
  const declared = firstHeader(message.headers, "content-length");
  if (
    declared !== undefined && !isHandshake(message) &&
    !(/^\d{1,15}$/.test(declared) && Number(declared) === message.body.length)
  ) {
    // mongrel2 forwards a Content-Length above 2^31-1, negative or not a
    // number with no body at all (§1.5): the header would lie to the
    // handler, and mongrel2 reads the body bytes as further requests,
    // which the refusal's close keeps from being served. (A handshake's
    // body is mongrel2's accept key, not the client's.)
    return {
      status: 400,
      why:
        `Refused a request whose Content-Length "${declared}" is not the ${message.body.length} bytes mongrel2 passed`,
      level: "warn",
    };
  }
  if (limits.stopping && isHandshake(message)) {
    // A socket opened now would be cut when the drain ends.
    return {
      status: 503,
      why: "Refused a WebSocket upgrade: the server is shutting down",
      level: "warn",
    };
  }
  return null;
}
