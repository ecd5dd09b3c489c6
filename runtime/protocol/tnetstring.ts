/**
 * tnetstrings: the length-prefixed, typed encoding mongrel2 uses for headers
 * in `protocol='tnetstring'` mode, for netstring bodies, and for `X` ctl
 * replies. Lengths are byte counts, so everything works on `Uint8Array`.
 *
 * Strings are byte strings (one code unit per byte, see `bytes.ts`): decoding
 * never fails on non-UTF-8 bytes and encoding round-trips exactly.
 *
 * @module
 */

import {
  concatBytes,
  decodeByteString,
  encodeByteString,
  parseDecimal,
} from "./bytes.ts";
import { ProtocolError } from "./errors.ts";

/** A value a tnetstring can hold. */
export type TNetValue =
  | string
  | number
  | boolean
  | null
  | TNetValue[]
  | { [key: string]: TNetValue };

/** The result of parsing one tnetstring out of a larger buffer. */
export interface TNetParseResult {
  /** The decoded value. */
  value: TNetValue;
  /** Offset of the first byte after the tnetstring. */
  end: number;
}

const COLON = 0x3a;
const MAX_LENGTH_DIGITS = 10;

/**
 * Reads the `LEN:` prefix at `offset` and returns the payload bounds and tag.
 *
 * @param bytes The input.
 * @param offset Where the tnetstring starts.
 * @returns Payload start, payload end and the type tag byte.
 * @throws {ProtocolError} On a missing colon, bad length or truncated input.
 *
 * @example Usage
 * ```ts
 * import { readFrame } from "./tnetstring.ts";
 * const frame = readFrame(new TextEncoder().encode("2:hi,"), 0);
 * console.assert(frame.start === 2 && frame.end === 4 && frame.tag === 0x2c);
 * ```
 */
export function readFrame(
  bytes: Uint8Array,
  offset: number,
): { start: number; end: number; tag: number } {
  const limit = Math.min(bytes.length, offset + MAX_LENGTH_DIGITS + 1);
  let colon = offset;
  while (colon < limit && bytes[colon] !== COLON) colon++;
  if (colon >= limit) {
    throw new ProtocolError(
      "Cannot parse tnetstring: no ':' after a length of at most 10 digits",
      offset,
    );
  }
  const length = parseDecimal(bytes, offset, colon);
  if (length < 0) {
    throw new ProtocolError(
      "Cannot parse tnetstring: length is not a decimal number",
      offset,
    );
  }
  const start = colon + 1;
  const end = start + length;
  if (end >= bytes.length) {
    throw new ProtocolError(
      `Cannot parse tnetstring: declared length ${length} runs past the end of the message`,
      offset,
    );
  }
  return { start, end, tag: bytes[end] };
}

/**
 * Parses one tnetstring starting at `offset`.
 *
 * @param bytes The input.
 * @param offset Where the tnetstring starts (default 0).
 * @returns The value and the offset after it.
 * @throws {ProtocolError} On any malformed input, or nesting deeper than 32
 * levels below the outermost value.
 *
 * @example Usage
 * ```ts
 * import { parseTNetstring } from "./tnetstring.ts";
 * const { value } = parseTNetstring(new TextEncoder().encode("5:hello,"));
 * console.assert(value === "hello");
 * ```
 */
export function parseTNetstring(
  bytes: Uint8Array,
  offset = 0,
): TNetParseResult {
  return parseNested(bytes, offset, 0);
}

const MAX_DEPTH = 32;

function parseNested(
  bytes: Uint8Array,
  offset: number,
  depth: number,
): TNetParseResult {
  if (depth > MAX_DEPTH) {
    throw new ProtocolError(
      "Cannot parse tnetstring: nesting is deeper than 32 levels",
      offset,
    );
  }
  const { start, end, tag } = readFrame(bytes, offset);
  return {
    value: decodePayload(bytes, start, end, tag, offset, depth),
    end: end + 1,
  };
}

function decodePayload(
  bytes: Uint8Array,
  start: number,
  end: number,
  tag: number,
  offset: number,
  depth: number,
): TNetValue {
  switch (tag) {
    case 0x2c: // ,
      return decodeByteString(bytes, start, end);
    case 0x23: { // #
      const text = decodeByteString(bytes, start, end);
      if (
        !/^-?\d{1,16}$/.test(text) || !Number.isSafeInteger(Number(text))
      ) {
        throw new ProtocolError(
          `Cannot parse tnetstring integer: "${text}" is not an integer`,
          offset,
        );
      }
      return Number(text);
    }
    case 0x5e: { // ^
      const text = decodeByteString(bytes, start, end);
      const value = Number(text);
      if (text.trim() === "" || !Number.isFinite(value)) {
        throw new ProtocolError(
          `Cannot parse tnetstring float: "${text}" is not a number`,
          offset,
        );
      }
      return value;
    }
    case 0x21: { // !
      const text = decodeByteString(bytes, start, end);
      if (text === "true") return true;
      if (text === "false") return false;
      throw new ProtocolError(
        `Cannot parse tnetstring boolean: "${text}" is neither true nor false`,
        offset,
      );
    }
    case 0x7e: // ~
      if (end !== start) {
        throw new ProtocolError(
          "Cannot parse tnetstring null: payload is not empty",
          offset,
        );
      }
      return null;
    case 0x5d: { // ]
      const list: TNetValue[] = [];
      let at = start;
      while (at < end) {
        const item = parseNested(bytes.subarray(0, end + 1), at, depth + 1);
        if (item.end > end) {
          throw new ProtocolError(
            "Cannot parse tnetstring list: an item runs past the list",
            at,
          );
        }
        list.push(item.value);
        at = item.end;
      }
      return list;
    }
    case 0x7d: { // }
      const dict: { [key: string]: TNetValue } = {};
      const inner = bytes.subarray(0, end + 1);
      let at = start;
      while (at < end) {
        // Read within the dict, a key ends at its tag at most: one that
        // ends there has the dict's "}" for its own.
        const key = readFrame(inner, at);
        if (key.tag !== 0x2c) {
          throw new ProtocolError(
            "Cannot parse tnetstring dict: a key is not a string inside the dict",
            at,
          );
        }
        const name = decodeByteString(bytes, key.start, key.end);
        const item = parseNested(inner, key.end + 1, depth + 1);
        if (item.end > end) {
          throw new ProtocolError(
            "Cannot parse tnetstring dict: a value runs past the dict",
            at,
          );
        }
        defineEntry(dict, name, item.value);
        at = item.end;
      }
      return dict;
    }
    default:
      throw new ProtocolError(
        `Cannot parse tnetstring: unknown type tag 0x${
          tag.toString(16).padStart(2, "0")
        }`,
        end,
      );
  }
}

/**
 * Sets `dict[name] = value` without letting a client-chosen key such as
 * `__proto__` reach the prototype.
 *
 * @param dict The target object.
 * @param name The key.
 * @param value The value.
 *
 * @example Usage
 * ```ts
 * import { defineEntry } from "./tnetstring.ts";
 * const dict = {};
 * defineEntry(dict, "__proto__", "x");
 * console.assert(Object.keys(dict)[0] === "__proto__");
 * ```
 */
export function defineEntry(
  dict: { [key: string]: TNetValue },
  name: string,
  value: TNetValue,
): void {
  if (name === "__proto__") {
    Object.defineProperty(dict, name, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    dict[name] = value;
  }
}

const encoder = new TextEncoder();

/**
 * Encodes a value as a tnetstring. Strings must be byte strings (code units
 * at most 0xFF); `Uint8Array` values are written as raw string payloads.
 *
 * @param value The value.
 * @returns The encoded bytes.
 * @throws {RangeError} For non-finite numbers or strings with code units above 0xFF.
 * @throws {TypeError} For values a tnetstring cannot hold.
 *
 * @example Usage
 * ```ts
 * import { encodeTNetstring } from "./tnetstring.ts";
 * const bytes = encodeTNetstring(["ctl", { "keep-alive": true }]);
 * console.assert(new TextDecoder().decode(bytes) === "31:3:ctl,21:10:keep-alive,4:true!}]");
 * ```
 */
export function encodeTNetstring(value: TNetValue | Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  encodeInto(value, parts);
  return concatBytes(parts);
}

function frame(parts: Uint8Array[], payloadParts: Uint8Array[], tag: string) {
  let length = 0;
  for (const part of payloadParts) length += part.length;
  parts.push(encoder.encode(`${length}:`));
  for (const part of payloadParts) parts.push(part);
  parts.push(encoder.encode(tag));
}

function encodeInto(value: TNetValue | Uint8Array, parts: Uint8Array[]): void {
  if (value instanceof Uint8Array) {
    frame(parts, [value], ",");
  } else if (typeof value === "string") {
    frame(parts, [encodeByteString(value)], ",");
  } else if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new RangeError(
        `Cannot encode tnetstring number: ${value} is not finite`,
      );
    }
    // String(1e21) is "1e+21": only safe integers are written as digits.
    const tag = Number.isSafeInteger(value) ? "#" : "^";
    frame(parts, [encoder.encode(String(value))], tag);
  } else if (typeof value === "boolean") {
    frame(parts, [encoder.encode(String(value))], "!");
  } else if (value === null) {
    parts.push(encoder.encode("0:~"));
  } else if (Array.isArray(value)) {
    const inner: Uint8Array[] = [];
    for (const item of value) encodeInto(item, inner);
    frame(parts, inner, "]");
  } else if (typeof value === "object") {
    const inner: Uint8Array[] = [];
    for (const [key, item] of Object.entries(value)) {
      encodeInto(key, inner);
      encodeInto(item, inner);
    }
    frame(parts, inner, "}");
  } else {
    throw new TypeError(
      `Cannot encode tnetstring: unsupported value of type ${typeof value}`,
    );
  }
}
