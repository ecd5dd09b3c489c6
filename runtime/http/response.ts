/**
 * Encodes a `Response` as HTTP/1.x bytes: mongrel2 writes reply bodies to
 * the client verbatim, so the handler side owns the status line, headers and
 * body framing.
 *
 * @module
 */

import { STATUS_TEXT } from "./status_text.ts";

/**
 * How the body follows the head on the wire. `upgrade`: a 101, after which
 * the body is the new protocol's byte stream, written as is until it ends;
 * then the connection closes.
 */
export type BodyFraming = "none" | "length" | "chunked" | "close" | "upgrade";

/** What {@linkcode encodeResponseHead} needs to know about the exchange. */
export interface ResponseHeadOptions {
  /** The request method (HEAD responses carry no body). */
  method: string;
  /** The request's HTTP version. */
  version: string;
  /** Whether the request allows the connection to stay open. */
  keepAlive: boolean;
  /** The body length when known in full, or `null` for a stream. */
  bodyLength: number | null;
  /** Value of the `Date` header, see {@linkcode httpDate}. */
  date: string;
}

/** The encoded head and how to frame the body after it. */
export interface ResponseHead {
  /** Status line and headers, ending with the blank line. */
  head: Uint8Array;
  /** Body framing; `none` means no body bytes may follow. */
  framing: BodyFraming;
  /** Body length for `length` framing. */
  contentLength: number;
  /** Whether the connection stays open after this response. */
  keepAlive: boolean;
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "content-length",
  "upgrade",
]);
const encoder = new TextEncoder();
const NON_ASCII = /[^\x20-\x7e\r\n\t]/;
/**
 * Control bytes a header value may not hold (RFC 9110 §5.5), beyond the
 * NUL, CR and LF that `Headers` refuses itself; CR and LF in a head end
 * its lines.
 */
// deno-lint-ignore no-control-regex -- matching control bytes is the point
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;

/**
 * Returns whether a response with this status and method carries a body.
 *
 * @param status The status code.
 * @param method The request method.
 * @returns False for HEAD, 1xx, 204 and 304.
 *
 * @example Usage
 * ```ts
 * import { allowsBody } from "./response.ts";
 * console.assert(!allowsBody(204, "GET") && allowsBody(200, "POST"));
 * ```
 */
export function allowsBody(status: number, method: string): boolean {
  return method !== "HEAD" && status >= 200 && status !== 204 &&
    status !== 304;
}

/**
 * Returns whether an HTTP/1.x request lets the connection stay open: an
 * HTTP/1.1 request unless it says `Connection: close`, an HTTP/1.0 request
 * only when it says `Connection: keep-alive`.
 *
 * @param version `HTTP/1.0` or `HTTP/1.1`.
 * @param connection The request's `connection` header values.
 * @returns Whether to keep the connection open.
 *
 * @example Usage
 * ```ts
 * import { requestKeepsAlive } from "./response.ts";
 * console.assert(!requestKeepsAlive("HTTP/1.0", undefined));
 * console.assert(!requestKeepsAlive("HTTP/1.1", "close"));
 * ```
 */
export function requestKeepsAlive(
  version: string,
  connection: string | readonly string[] | undefined,
): boolean {
  const joined = typeof connection === "string"
    ? connection
    : connection?.join(",") ?? "";
  const tokens = joined.toLowerCase().split(",").map((token) => token.trim());
  if (tokens.includes("close")) return false;
  if (version === "HTTP/1.1") return true;
  return tokens.includes("keep-alive");
}

/** Deno's internal record of a Response, which says whether fetch() decoded its body. */
const RESPONSE_RECORD = Object.getOwnPropertySymbols(new Response()).find(
  (symbol) => symbol.description === "response",
);

/**
 * Whether `response` came from `fetch()` with its body decompressed: its
 * `content-encoding` and `content-length` then describe bytes that are no
 * longer there, and `deno serve` leaves both out, as m2fetch does.
 *
 * @param response A handler's response.
 * @returns True for a body `fetch()` decoded.
 *
 * @example Usage
 * ```ts
 * import { decodedByFetch } from "./response.ts";
 * const own = new Response("x", { headers: { "content-encoding": "gzip" } });
 * console.assert(decodedByFetch(own) === false);
 * ```
 */
export function decodedByFetch(response: Response): boolean {
  if (RESPONSE_RECORD === undefined) return false;
  const record = (response as unknown as Record<symbol, unknown>)[
    RESPONSE_RECORD
  ] as { bodyDecoded?: boolean } | undefined;
  return record?.bodyDecoded === true;
}

/** Headers that do not describe a body fetch() decompressed. */
export const DECODED_AWAY = new Set(["content-encoding", "content-length"]);

/**
 * Encodes the status line and headers of `response`. The body is not read:
 * the caller passes its length when it already holds the whole body.
 *
 * @param response The handler's response.
 * @param options Facts about the request and body.
 * @returns The head bytes and the body framing to use.
 * @throws {TypeError} When a header value holds a control byte (other
 * than TAB) that `Headers` lets through and HTTP/1.1 forbids.
 *
 * @example Usage
 * ```ts
 * import { encodeResponseHead } from "./response.ts";
 * const { head, framing } = encodeResponseHead(new Response("hi"), {
 *   method: "GET", version: "HTTP/1.1", keepAlive: true, bodyLength: 2,
 *   date: "Thu, 01 Jan 1970 00:00:00 GMT",
 * });
 * console.assert(framing === "length");
 * console.assert(new TextDecoder().decode(head).startsWith("HTTP/1.1 200 OK\r\n"));
 * ```
 */
export function encodeResponseHead(
  response: Response,
  options: ResponseHeadOptions,
): ResponseHead {
  const status = response.status;
  const version = options.version === "HTTP/1.0" ? "HTTP/1.0" : "HTTP/1.1";
  let keepAlive = options.keepAlive;
  let head = `${version} ${status} ${STATUS_TEXT[status] ?? ""}\r\n`;
  let hasDate = false;
  let declaredLength: string | null = null;
  const decoded = decodedByFetch(response);
  // forEach, not for…of: Deno's Headers iterator is quadratic (see
  // header_list.ts).
  response.headers.forEach((value, name) => {
    if (decoded && DECODED_AWAY.has(name)) return;
    // A 101 must still name the protocol it switches to (RFC 9110 §15.2.2).
    const switching = status === 101 &&
      (name === "upgrade" || name === "connection");
    if (HOP_BY_HOP.has(name) && !switching) {
      if (name === "content-length") declaredLength = value;
      // The handler asks to end the connection, as it may under deno
      // serve: the head says so below, and m2fetch closes after the body.
      if (name === "connection" && /(^|,)\s*close\s*(,|$)/i.test(value)) {
        keepAlive = false;
      }
      return;
    }
    if (name === "date") hasDate = true;
    head += `${name}: ${value}\r\n`;
  });
  if (!hasDate) head += `date: ${options.date}\r\n`;

  let framing: BodyFraming;
  let contentLength = 0;
  const bodyAllowed = status >= 200 && status !== 204 && status !== 304;
  if (status === 101) {
    framing = "upgrade";
    keepAlive = false;
  } else if (!bodyAllowed) {
    framing = "none";
  } else {
    // A HEAD response describes the GET's body: the handler's own
    // Content-Length says more than the (empty) body it returned.
    const declared = parseLength(declaredLength);
    const length = options.method === "HEAD" && declared !== null
      ? declared
      : options.bodyLength ?? declared;
    if (length !== null) {
      contentLength = length;
      head += `content-length: ${length}\r\n`;
      framing = options.method === "HEAD" ? "none" : "length";
    } else if (options.method === "HEAD") {
      framing = "none";
    } else if (version === "HTTP/1.1") {
      head += "transfer-encoding: chunked\r\n";
      framing = "chunked";
    } else {
      framing = "close";
      keepAlive = false;
    }
  }
  if (!keepAlive && version === "HTTP/1.1" && framing !== "upgrade") {
    head += "connection: close\r\n";
  }
  if (keepAlive && version === "HTTP/1.0") head += "connection: keep-alive\r\n";
  head += "\r\n";
  const plain = !NON_ASCII.test(head);
  if (!plain) refuseControlBytes(head);
  return {
    head: plain ? encoder.encode(head) : encodeLatin1(head),
    framing,
    contentLength,
    keepAlive,
  };
}

/**
 * Throws for a head with a control byte in a header value, which `Headers`
 * lets through (only NUL, CR and LF are refused there) but HTTP/1.1 does
 * not: clients reject such a response, or print the byte to a terminal.
 */
function refuseControlBytes(head: string): void {
  const found = CONTROL.exec(head);
  if (found === null) return;
  const start = head.lastIndexOf("\r\n", found.index) + 2;
  const name = head.slice(start, head.indexOf(":", start));
  const byte = found[0].charCodeAt(0).toString(16).padStart(2, "0");
  throw new TypeError(
    `Cannot send the response header "${name}": its value holds the control byte 0x${byte}, which HTTP/1.1 forbids`,
  );
}

function parseLength(value: string | null): number | null {
  if (value === null || !/^\d{1,15}$/.test(value.trim())) return null;
  return Number(value.trim());
}

function encodeLatin1(text: string): Uint8Array {
  // Header values are byte strings, so every code unit fits in a byte.
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

const CRLF = new Uint8Array([0x0d, 0x0a]);
const LAST_CHUNK = encoder.encode("0\r\n\r\n");

/**
 * Returns the pieces of one chunk in chunked transfer coding: the size line,
 * the data, and the closing CRLF. Empty data yields no pieces, because a
 * zero-size chunk would end the body.
 *
 * @param data The chunk data.
 * @returns The pieces to send, in order.
 *
 * @example Usage
 * ```ts
 * import { chunkPieces } from "./response.ts";
 * const pieces = chunkPieces(new TextEncoder().encode("hello"));
 * console.assert(new TextDecoder().decode(pieces[0]) === "5\r\n");
 * ```
 */
export function chunkPieces(data: Uint8Array): Uint8Array[] {
  if (data.length === 0) return [];
  return [encoder.encode(`${data.length.toString(16)}\r\n`), data, CRLF];
}

/**
 * The bytes that end a chunked body.
 *
 * @returns `0\r\n\r\n`.
 *
 * @example Usage
 * ```ts
 * import { lastChunk } from "./response.ts";
 * console.assert(lastChunk().length === 5);
 * ```
 */
export function lastChunk(): Uint8Array {
  return LAST_CHUNK;
}

let cachedSecond = -1;
let cachedDate = "";

/**
 * Returns the current time as an HTTP date, recomputed at most once a second.
 *
 * @param now Milliseconds since the epoch (default `Date.now()`).
 * @returns For example `Fri, 04 Dec 2026 19:49:38 GMT`.
 *
 * @example Usage
 * ```ts
 * import { httpDate } from "./response.ts";
 * console.assert(httpDate(0) === "Thu, 01 Jan 1970 00:00:00 GMT");
 * ```
 */
export function httpDate(now: number = Date.now()): string {
  const second = Math.floor(now / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedDate = new Date(second * 1000).toUTCString();
  }
  return cachedDate;
}
