/**
 * A small, strict HTTP/1.x response parser: the inverse of what m2fetch
 * writes through mongrel2. Tests use it to turn the bytes a client would
 * receive back into a status, headers and body (RFC 9112 §4–§7).
 *
 * Pure: no I/O, works on bytes, header values are byte strings.
 *
 * @module
 */

import { concatBytes, decodeByteString } from "../protocol/bytes.ts";
import type { BodyFraming } from "./response.ts";

export type { BodyFraming } from "./response.ts";

/** One HTTP/1.x response read from bytes. */
export interface ParsedResponse {
  /** `HTTP/1.0` or `HTTP/1.1`. */
  version: string;
  /** The status code. */
  status: number;
  /** The reason phrase (may be empty). */
  statusText: string;
  /** Header fields in order; names lower-cased, values byte strings without surrounding whitespace. */
  headers: [string, string][];
  /** Trailer fields of a chunked body, like {@linkcode headers}. */
  trailers: [string, string][];
  /** How the body was delimited. */
  framing: BodyFraming;
  /** The body (de-chunked); what arrived so far when not complete. */
  body: Uint8Array<ArrayBuffer>;
  /** Whether the whole body arrived. */
  complete: boolean;
  /** Offset of the first byte after the response (meaningful when complete). */
  end: number;
}

/** Options for {@linkcode parseResponse}. */
export interface ParseResponseOptions {
  /** Where the response starts in the bytes (default 0). */
  offset?: number;
  /** The request method: a response to HEAD has no body (default `GET`). */
  method?: string;
  /**
   * Whether the bytes end because the connection closed, which is what
   * completes a close-delimited body (default false).
   */
  closed?: boolean;
}

/**
 * Bytes that are not a valid HTTP/1.x response.
 *
 * @example Usage
 * ```ts
 * import { HttpParseError } from "@m2fetch/m2fetch/testing";
 * const error = new HttpParseError("Cannot parse response: no status line", 0);
 * console.assert(error.offset === 0 && error instanceof SyntaxError);
 * ```
 */
export class HttpParseError extends SyntaxError {
  /** Byte offset where the problem was found. */
  readonly offset: number;

  /**
   * Creates the error.
   *
   * @param message What failed and why.
   * @param offset Byte offset in the input.
   */
  constructor(message: string, offset: number) {
    super(message);
    this.name = "HttpParseError";
    this.offset = offset;
  }
}

const CR = 0x0d;
const LF = 0x0a;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const STATUS_LINE = /^(HTTP\/1\.[01]) (\d{3})(?: ([^\r\n]*))?$/;
const HEX = /^[0-9A-Fa-f]{1,15}$/;

/**
 * Parses one response starting at `options.offset`.
 *
 * @param bytes The bytes a client received.
 * @param options Offset, request method, and whether the connection closed.
 * @returns The response, or `null` when its head has not fully arrived.
 * @throws {HttpParseError} When the bytes break the HTTP/1.x grammar.
 *
 * @example Usage
 * ```ts
 * import { parseResponse } from "@m2fetch/m2fetch/testing";
 * const bytes = new TextEncoder().encode(
 *   "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
 * );
 * const response = parseResponse(bytes);
 * console.assert(response?.complete && new TextDecoder().decode(response.body) === "ok");
 * ```
 */
export function parseResponse(
  bytes: Uint8Array,
  options: ParseResponseOptions = {},
): ParsedResponse | null {
  const start = options.offset ?? 0;
  const method = options.method ?? "GET";
  const closed = options.closed ?? false;
  const head = readFields(bytes, start, "head");
  if (head === null) return null;
  const [statusLine, ...lines] = head.lines;
  const match = STATUS_LINE.exec(statusLine.text);
  if (match === null) {
    throw new HttpParseError(
      `Cannot parse response: status line ${
        JSON.stringify(statusLine.text.slice(0, 80))
      } is not "HTTP/1.x NNN reason"`,
      statusLine.offset,
    );
  }
  const headers = toFields(lines, "header");
  const status = Number(match[2]);
  const response: ParsedResponse = {
    version: match[1],
    status,
    statusText: match[3] ?? "",
    headers,
    trailers: [],
    framing: "none",
    body: new Uint8Array(0),
    complete: true,
    end: head.end,
  };
  if (
    method === "HEAD" || (status >= 100 && status < 200) || status === 204 ||
    status === 304
  ) {
    return response;
  }
  const transferEncoding = values(headers, "transfer-encoding");
  if (transferEncoding.length > 0) {
    const codings = transferEncoding.join(",").split(",").map((coding) =>
      coding.trim().toLowerCase()
    );
    if (codings.at(-1) === "chunked") {
      response.framing = "chunked";
      readChunked(bytes, head.end, response);
      return response;
    }
    // A response whose last coding is not chunked runs to the close.
    return readToClose(bytes, head.end, closed, response);
  }
  const lengths = values(headers, "content-length");
  if (lengths.length > 0) {
    const distinct = new Set(
      lengths.join(",").split(",").map((value) => value.trim()),
    );
    const [value] = distinct;
    if (distinct.size !== 1 || !/^\d{1,15}$/.test(value)) {
      throw new HttpParseError(
        `Cannot parse response: content-length ${
          JSON.stringify(lengths.join(", "))
        } is not one byte count`,
        head.end,
      );
    }
    const length = Number(value);
    const available = Math.min(length, bytes.length - head.end);
    response.framing = "length";
    response.body = bytes.slice(head.end, head.end + available);
    response.complete = available === length;
    response.end = head.end + available;
    return response;
  }
  return readToClose(bytes, head.end, closed, response);
}

/**
 * Parses every response in `bytes`, in order, pairing each final response
 * with the next request method. Interim (1xx) responses other than 101 are
 * kept but take no method; parsing stops after a 101, whose connection no
 * longer speaks HTTP, and at the first incomplete response.
 *
 * @param bytes Everything a client received on one connection.
 * @param methods The methods of the requests on it, in order.
 * @param closed Whether the connection has closed after these bytes.
 * @returns The responses; only the last may be incomplete.
 * @throws {HttpParseError} When the bytes break the HTTP/1.x grammar.
 *
 * @example Usage
 * ```ts
 * import { parseResponses } from "@m2fetch/m2fetch/testing";
 * const bytes = new TextEncoder().encode(
 *   "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n" +
 *     "HTTP/1.1 204 No Content\r\n\r\n",
 * );
 * const responses = parseResponses(bytes, ["HEAD", "GET"], false);
 * console.assert(responses.length === 2 && responses[0].body.length === 0);
 * ```
 */
export function parseResponses(
  bytes: Uint8Array,
  methods: readonly string[],
  closed: boolean,
): ParsedResponse[] {
  const responses: ParsedResponse[] = [];
  let offset = 0;
  let index = 0;
  while (offset < bytes.length) {
    const response = parseResponse(bytes, {
      offset,
      method: methods[index] ?? "GET",
      closed,
    });
    if (response === null) break;
    responses.push(response);
    if (!response.complete || response.status === 101) break;
    if (response.status >= 200) index++;
    offset = response.end;
  }
  return responses;
}

/**
 * Builds a Fetch `Response` from a parsed one. The body of an incomplete
 * response is what arrived.
 *
 * @param parsed The parsed response.
 * @returns The response.
 * @throws {RangeError} For a status the Fetch API cannot hold (below 200).
 *
 * @example Usage
 * ```ts
 * import { parseResponse, toFetchResponse } from "@m2fetch/m2fetch/testing";
 * const bytes = new TextEncoder().encode(
 *   "HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope",
 * );
 * const response = toFetchResponse(parseResponse(bytes)!);
 * console.assert(response.status === 404 && (await response.text()) === "nope");
 * ```
 */
export function toFetchResponse(parsed: ParsedResponse): Response {
  if (parsed.status < 200 || parsed.status > 599) {
    throw new RangeError(
      `Cannot build a Response with status ${parsed.status}: the Fetch API only allows 200 to 599`,
    );
  }
  const headers = new Headers();
  for (const [name, value] of parsed.headers) headers.append(name, value);
  const nullBody = parsed.status === 204 || parsed.status === 205 ||
    parsed.status === 304;
  return new Response(nullBody ? null : parsed.body, {
    status: parsed.status,
    statusText: parsed.statusText,
    headers,
  });
}

interface Line {
  text: string;
  offset: number;
}

/**
 * Reads CRLF-terminated lines up to the empty line. Returns null when the
 * empty line has not arrived.
 */
function readFields(
  bytes: Uint8Array,
  start: number,
  what: "head" | "trailer",
): { lines: Line[]; end: number } | null {
  const lines: Line[] = [];
  let at = start;
  while (true) {
    const lf = bytes.indexOf(LF, at);
    if (lf < 0) return null;
    if (lf === at || bytes[lf - 1] !== CR) {
      throw new HttpParseError(
        `Cannot parse response ${what}: a line ends with a bare LF, not CRLF`,
        lf,
      );
    }
    if (lf - 1 === at) {
      if (what === "head" && lines.length === 0) {
        throw new HttpParseError(
          "Cannot parse response: it starts with an empty line, not a status line",
          at,
        );
      }
      return { lines, end: lf + 1 };
    }
    lines.push({ text: decodeByteString(bytes, at, lf - 1), offset: at });
    at = lf + 1;
  }
}

function toFields(lines: Line[], what: string): [string, string][] {
  const fields: [string, string][] = [];
  for (const line of lines) {
    if (line.text[0] === " " || line.text[0] === "\t") {
      throw new HttpParseError(
        `Cannot parse ${what}: obsolete line folding is not allowed in a response`,
        line.offset,
      );
    }
    const colon = line.text.indexOf(":");
    const name = colon < 0 ? "" : line.text.slice(0, colon);
    if (!TOKEN.test(name)) {
      throw new HttpParseError(
        `Cannot parse ${what}: line ${
          JSON.stringify(line.text.slice(0, 80))
        } is not "name: value"`,
        line.offset,
      );
    }
    const value = line.text.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (/[\0\r\n]/.test(value)) {
      throw new HttpParseError(
        `Cannot parse ${what}: the value of "${name}" holds NUL, CR or LF`,
        line.offset,
      );
    }
    fields.push([name.toLowerCase(), value]);
  }
  return fields;
}

function values(fields: [string, string][], name: string): string[] {
  return fields.filter(([key]) => key === name).map(([, value]) => value);
}

function readToClose(
  bytes: Uint8Array,
  start: number,
  closed: boolean,
  response: ParsedResponse,
): ParsedResponse {
  response.framing = "close";
  response.body = bytes.slice(start);
  response.complete = closed;
  response.end = bytes.length;
  return response;
}

/** Decodes a chunked body into `response` (body, trailers, complete, end). */
function readChunked(
  bytes: Uint8Array,
  start: number,
  response: ParsedResponse,
): void {
  const chunks: Uint8Array[] = [];
  let at = start;
  response.complete = false;
  try {
    while (true) {
      const lf = bytes.indexOf(LF, at);
      if (lf < 0) return;
      if (lf === at || bytes[lf - 1] !== CR) {
        throw new HttpParseError(
          "Cannot parse chunked body: a chunk size line ends with a bare LF, not CRLF",
          lf,
        );
      }
      const line = decodeByteString(bytes, at, lf - 1);
      const sizeText = line.split(";", 1)[0].replace(/[ \t]+$/, "");
      if (!HEX.test(sizeText)) {
        throw new HttpParseError(
          `Cannot parse chunked body: chunk size ${
            JSON.stringify(line.slice(0, 40))
          } is not a hexadecimal number`,
          at,
        );
      }
      const size = parseInt(sizeText, 16);
      const dataStart = lf + 1;
      if (size === 0) {
        const trailer = readFields(bytes, dataStart, "trailer");
        if (trailer === null) return;
        response.trailers = toFields(trailer.lines, "trailer");
        response.complete = true;
        response.end = trailer.end;
        return;
      }
      const dataEnd = dataStart + size;
      if (dataEnd > bytes.length) {
        chunks.push(bytes.subarray(dataStart));
        return;
      }
      chunks.push(bytes.subarray(dataStart, dataEnd));
      if (dataEnd + 2 > bytes.length) return;
      if (bytes[dataEnd] !== CR || bytes[dataEnd + 1] !== LF) {
        throw new HttpParseError(
          `Cannot parse chunked body: the ${size}-byte chunk is not followed by CRLF`,
          dataEnd,
        );
      }
      at = dataEnd + 2;
    }
  } finally {
    response.body = concatBytes(chunks);
  }
}
