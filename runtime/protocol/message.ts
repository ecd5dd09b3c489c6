/**
 * The message mongrel2 sends a handler: `UUID SP ID SP PATH SP HEADERS BODY`,
 * where HEADERS is a JSON netstring (`LEN:{...},`) or a tnetstring dict
 * (`LEN:...}`), detected per message, and BODY is a netstring.
 *
 * @module
 */

import { decodeByteString, parseDecimal } from "./bytes.ts";
import { ProtocolError } from "./errors.ts";
import { parseJsonBytes } from "./json_bytes.ts";
import { defineEntry, readFrame, type TNetValue } from "./tnetstring.ts";

/** Header values as mongrel2 sends them: one string, or several for duplicates. */
export type Mongrel2Headers = Record<string, string | string[]>;

/** A parsed message from mongrel2. */
export interface Mongrel2Message {
  /** The handler's `send_ident`, echoed as the sender of every reply. */
  sender: string;
  /** The connection id (decimal digits). */
  connectionId: string;
  /** The raw, still percent-encoded path, or `@*` for notices. */
  path: string;
  /** Header keys: lower-case for client headers, upper-case for mongrel2's own. */
  headers: Mongrel2Headers;
  /** The body bytes (a view into the message, not a copy). */
  body: Uint8Array;
  /** How the headers were encoded. */
  headerFormat: "json" | "tnetstring";
}

const SPACE = 0x20;
const MAX_SENDER_LENGTH = 128;
/** Connection ids are uint32; replies take at most 10 digits. */
const MAX_ID_DIGITS = 10;
const SENDER_BYTE = new Uint8Array(256);
for (const [from, to] of [[0x30, 0x39], [0x41, 0x5a], [0x61, 0x7a]]) {
  for (let byte = from; byte <= to; byte++) SENDER_BYTE[byte] = 1;
}
SENDER_BYTE[0x2d] = 1;

/** Where the three space-separated fields of a message end. */
export interface Envelope {
  /** The space after the sender. */
  senderEnd: number;
  /** The space after the connection id. */
  idEnd: number;
  /** The space after the path. */
  pathEnd: number;
}

/**
 * Checks the `SENDER ID PATH ` start of a message and finds its spaces.
 *
 * @param bytes The message.
 * @returns The offsets of the three spaces.
 * @throws {ProtocolError} When the sender or connection id is malformed or a space is missing.
 *
 * @example Usage
 * ```ts
 * import { readEnvelope } from "./message.ts";
 * const ends = readEnvelope(new TextEncoder().encode("abc 7 @* 2:{},0:,"));
 * console.assert(ends.senderEnd === 3 && ends.idEnd === 5 && ends.pathEnd === 8);
 * ```
 */
export function readEnvelope(bytes: Uint8Array): Envelope {
  const firstSpace = bytes.indexOf(SPACE);
  if (firstSpace <= 0 || firstSpace > MAX_SENDER_LENGTH) {
    throw new ProtocolError(
      "Cannot parse message: no sender followed by a space",
      0,
    );
  }
  for (let i = 0; i < firstSpace; i++) {
    // mongrel2 rejects a reply whose sender holds anything else (§1.7), so
    // such a message could never be answered.
    if (!SENDER_BYTE[bytes[i]]) {
      throw new ProtocolError(
        "Cannot parse message: the sender may only hold letters, digits and '-'",
        i,
      );
    }
  }
  const secondSpace = bytes.indexOf(SPACE, firstSpace + 1);
  if (
    secondSpace < 0 || secondSpace - firstSpace - 1 > MAX_ID_DIGITS ||
    parseDecimal(bytes, firstSpace + 1, secondSpace) < 0
  ) {
    throw new ProtocolError(
      "Cannot parse message: connection id is not a decimal number of at most 10 digits followed by a space",
      firstSpace + 1,
    );
  }
  const thirdSpace = bytes.indexOf(SPACE, secondSpace + 1);
  if (thirdSpace < 0) {
    throw new ProtocolError(
      "Cannot parse message: no space after the path",
      secondSpace + 1,
    );
  }
  return { senderEnd: firstSpace, idEnd: secondSpace, pathEnd: thirdSpace };
}

/**
 * Parses one mongrel2 message from its bytes.
 *
 * @param bytes One ZeroMQ frame received from mongrel2.
 * @returns The parsed message.
 * @throws {ProtocolError} When the bytes do not follow the grammar.
 *
 * @example Usage
 * ```ts
 * import { parseMessage } from "@m2fetch/m2fetch/testing";
 * const bytes = new TextEncoder().encode(
 *   'abc 7 / 46:{"PATH":"/","METHOD":"GET","host":"localhost"},0:,',
 * );
 * const message = parseMessage(bytes);
 * console.assert(message.connectionId === "7" && message.headers.METHOD === "GET");
 * ```
 */
export function parseMessage(bytes: Uint8Array): Mongrel2Message {
  const { senderEnd: firstSpace, idEnd: secondSpace, pathEnd: thirdSpace } =
    readEnvelope(bytes);
  const headerFrame = readFrame(bytes, thirdSpace + 1);
  let headers: Mongrel2Headers;
  let headerFormat: Mongrel2Message["headerFormat"];
  // One decode for the prefix (and tnetstring headers), then slices of it:
  // a byte string has one code unit per byte, so offsets carry over.
  let text: string;
  if (headerFrame.tag === 0x7d) {
    headerFormat = "tnetstring";
    text = decodeByteString(bytes, 0, headerFrame.end);
    headers = parseHeaderDict(bytes, text, headerFrame.start, headerFrame.end);
  } else if (headerFrame.tag === 0x2c) {
    headerFormat = "json";
    text = decodeByteString(bytes, 0, thirdSpace);
    headers = checkHeaders(
      parseJsonBytes(bytes, headerFrame.start, headerFrame.end),
      thirdSpace + 1,
    );
  } else {
    throw new ProtocolError(
      "Cannot parse message: headers are neither a JSON netstring nor a tnetstring dict",
      thirdSpace + 1,
    );
  }
  const bodyFrame = readFrame(bytes, headerFrame.end + 1);
  if (bodyFrame.tag !== 0x2c) {
    throw new ProtocolError(
      "Cannot parse message: body netstring does not end with ','",
      bodyFrame.end,
    );
  }
  if (bodyFrame.end + 1 !== bytes.length) {
    throw new ProtocolError(
      "Cannot parse message: bytes follow the body netstring",
      bodyFrame.end + 1,
    );
  }
  return {
    sender: text.slice(0, firstSpace),
    connectionId: text.slice(firstSpace + 1, secondSpace),
    path: text.slice(secondSpace + 1, thirdSpace),
    headers,
    body: bytes.subarray(bodyFrame.start, bodyFrame.end),
    headerFormat,
  };
}

/** Parses a tnetstring dict body whose values are strings or lists of strings. */
function parseHeaderDict(
  bytes: Uint8Array,
  text: string,
  start: number,
  end: number,
): Mongrel2Headers {
  // The generic tnetstring parser handles this; a dedicated loop avoids the
  // nested subarray views on the hot path.
  const headers: Mongrel2Headers = {};
  let at = start;
  while (at < end) {
    const key = readFrame(bytes, at);
    if (key.tag !== 0x2c || key.end >= end) {
      throw new ProtocolError(
        "Cannot parse headers: a key is not a string inside the dict",
        at,
      );
    }
    const name = text.slice(key.start, key.end);
    const value = readFrame(bytes, key.end + 1);
    if (value.end >= end) {
      throw new ProtocolError(
        `Cannot parse headers: the value of "${name}" runs past the dict`,
        key.end + 1,
      );
    }
    if (value.tag === 0x2c) {
      defineEntry(headers, name, text.slice(value.start, value.end));
    } else if (value.tag === 0x5d) {
      const list: string[] = [];
      let item = value.start;
      while (item < value.end) {
        const entry = readFrame(bytes, item);
        if (entry.tag !== 0x2c || entry.end >= value.end) {
          throw new ProtocolError(
            `Cannot parse headers: "${name}" lists something other than strings`,
            item,
          );
        }
        list.push(text.slice(entry.start, entry.end));
        item = entry.end + 1;
      }
      defineEntry(headers, name, list);
    } else {
      throw new ProtocolError(
        `Cannot parse headers: "${name}" is neither a string nor a list`,
        key.end + 1,
      );
    }
    at = value.end + 1;
  }
  return headers;
}

function checkHeaders(value: TNetValue, offset: number): Mongrel2Headers {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("Cannot parse headers: not an object", offset);
  }
  for (const [name, item] of Object.entries(value)) {
    if (typeof item === "string") continue;
    if (Array.isArray(item) && item.every((v) => typeof v === "string")) {
      continue;
    }
    throw new ProtocolError(
      `Cannot parse headers: "${name}" is neither a string nor a list of strings`,
      offset,
    );
  }
  return value as Mongrel2Headers;
}

/**
 * Returns the first value of a header, or `undefined` when absent.
 *
 * @param headers The message headers.
 * @param name The exact key.
 * @returns The first value.
 *
 * @example Usage
 * ```ts
 * import { firstHeader } from "./message.ts";
 * console.assert(firstHeader({ "x-dup": ["a", "b"] }, "x-dup") === "a");
 * ```
 */
export function firstHeader(
  headers: Mongrel2Headers,
  name: string,
): string | undefined {
  const value = Object.hasOwn(headers, name) ? headers[name] : undefined;
  return Array.isArray(value) ? value[0] : value;
}
