/**
 * A JSON parser that works on bytes and tolerates what mongrel2 really sends.
 *
 * mongrel2 1.12 escapes only `"` and `\` when it renders headers as JSON, so
 * a header value may hold a raw TAB or bytes that are not UTF-8, which
 * `JSON.parse` rejects. This parser accepts any raw byte inside a string and
 * returns strings as byte strings (one code unit per byte), the same form
 * the tnetstring codec and `Deno.serve` use for header values. Escapes are
 * decoded as JSON defines them.
 *
 * @module
 */

import { decodeByteString } from "./bytes.ts";
import { ProtocolError } from "./errors.ts";
import { defineEntry, type TNetValue } from "./tnetstring.ts";

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MAX_DEPTH = 32;

/**
 * Parses the JSON text in `bytes[start, end)`.
 *
 * @param bytes The input.
 * @param start First byte (default 0).
 * @param end Last byte, exclusive (default `bytes.length`).
 * @returns The decoded value.
 * @throws {ProtocolError} When the bytes are not JSON (raw bytes inside strings excepted).
 *
 * @example Usage
 * ```ts
 * import { parseJsonBytes } from "./json_bytes.ts";
 * const value = parseJsonBytes(new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0x09, 0x22, 0x7d]));
 * console.assert((value as Record<string, string>).a === "\t");
 * ```
 */
export function parseJsonBytes(
  bytes: Uint8Array,
  start = 0,
  end = bytes.length,
): TNetValue {
  const parser = new Parser(bytes, start, end);
  parser.skipSpace();
  const value = parser.value(0);
  parser.skipSpace();
  if (parser.at !== end) {
    throw new ProtocolError(
      "Cannot parse JSON: unexpected bytes after the value",
      parser.at,
    );
  }
  return value;
}

class Parser {
  at: number;
  readonly #bytes: Uint8Array;
  readonly #end: number;
  /** The input decoded once; strings are slices of it. */
  readonly #text: string;
  readonly #start: number;

  constructor(bytes: Uint8Array, start: number, end: number) {
    this.#bytes = bytes;
    this.at = start;
    this.#end = end;
    this.#start = start;
    this.#text = decodeByteString(bytes, start, end);
  }

  #slice(from: number, to: number): string {
    return this.#text.slice(from - this.#start, to - this.#start);
  }

  skipSpace(): void {
    const bytes = this.#bytes;
    while (this.at < this.#end) {
      const byte = bytes[this.at];
      if (byte !== 0x20 && byte !== 0x0a && byte !== 0x0d && byte !== 0x09) {
        return;
      }
      this.at++;
    }
  }

  peek(): number {
    return this.at < this.#end ? this.#bytes[this.at] : -1;
  }

  fail(what: string): never {
    throw new ProtocolError(`Cannot parse JSON: ${what}`, this.at);
  }

  value(depth: number): TNetValue {
    const byte = this.peek();
    if (byte < 0) this.fail("input ends where a value is due");
    if (byte === QUOTE) return this.string();
    if (byte === 0x7b) return this.object(depth + 1);
    if (byte === 0x5b) return this.array(depth + 1);
    if (byte === 0x74) return this.literal("true", true);
    if (byte === 0x66) return this.literal("false", false);
    if (byte === 0x6e) return this.literal("null", null);
    return this.number();
  }

  literal(word: string, value: TNetValue): TNetValue {
    for (let i = 0; i < word.length; i++) {
      if (
        this.at + i >= this.#end ||
        this.#bytes[this.at + i] !== word.charCodeAt(i)
      ) {
        this.fail(`expected "${word}"`);
      }
    }
    this.at += word.length;
    return value;
  }

  number(): number {
    const start = this.at;
    while (this.at < this.#end) {
      const byte = this.#bytes[this.at];
      // digits, sign, exponent, decimal point
      if (
        (byte >= 0x30 && byte <= 0x39) || byte === 0x2d || byte === 0x2b ||
        byte === 0x2e || byte === 0x65 || byte === 0x45
      ) {
        this.at++;
      } else {
        break;
      }
    }
    const text = this.#slice(start, this.at);
    if (!/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(text)) {
      this.at = start;
      this.fail("unexpected byte where a value is due");
    }
    return Number(text);
  }

  string(): string {
    const bytes = this.#bytes;
    const start = ++this.at;
    // Fast path: no escapes, one slice.
    let i = start;
    while (i < this.#end && bytes[i] !== QUOTE && bytes[i] !== BACKSLASH) i++;
    if (i < this.#end && bytes[i] === QUOTE) {
      this.at = i + 1;
      return this.#slice(start, i);
    }
    let out = this.#slice(start, i);
    while (i < this.#end) {
      const byte = bytes[i];
      if (byte === QUOTE) {
        this.at = i + 1;
        return out;
      }
      if (byte === BACKSLASH) {
        if (i + 1 >= this.#end) break;
        const escape = bytes[i + 1];
        i += 2;
        switch (escape) {
          case 0x22:
            out += '"';
            break;
          case 0x5c:
            out += "\\";
            break;
          case 0x2f:
            out += "/";
            break;
          case 0x62:
            out += "\b";
            break;
          case 0x66:
            out += "\f";
            break;
          case 0x6e:
            out += "\n";
            break;
          case 0x72:
            out += "\r";
            break;
          case 0x74:
            out += "\t";
            break;
          case 0x75: {
            const hex = this.#slice(i, Math.min(i + 4, this.#end));
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
              this.at = i;
              this.fail("bad \\u escape");
            }
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            this.at = i - 1;
            this.fail("unknown escape in a string");
        }
        continue;
      }
      let run = i;
      while (
        run < this.#end && bytes[run] !== QUOTE && bytes[run] !== BACKSLASH
      ) run++;
      out += this.#slice(i, run);
      i = run;
    }
    this.at = this.#end;
    this.fail("string is not terminated");
  }

  object(depth: number): { [key: string]: TNetValue } {
    if (depth > MAX_DEPTH) this.fail("nesting is deeper than 32 levels");
    this.at++;
    const result: { [key: string]: TNetValue } = {};
    this.skipSpace();
    if (this.peek() === 0x7d) {
      this.at++;
      return result;
    }
    while (true) {
      this.skipSpace();
      if (this.peek() !== QUOTE) this.fail("object key is not a string");
      const key = this.string();
      this.skipSpace();
      if (this.peek() !== 0x3a) this.fail("expected ':' after a key");
      this.at++;
      this.skipSpace();
      defineEntry(result, key, this.value(depth));
      this.skipSpace();
      const next = this.peek();
      this.at++;
      if (next === 0x7d) return result;
      if (next !== 0x2c) {
        this.at--;
        this.fail("expected ',' or '}' in an object");
      }
    }
  }

  array(depth: number): TNetValue[] {
    if (depth > MAX_DEPTH) this.fail("nesting is deeper than 32 levels");
    this.at++;
    const result: TNetValue[] = [];
    this.skipSpace();
    if (this.peek() === 0x5d) {
      this.at++;
      return result;
    }
    while (true) {
      this.skipSpace();
      result.push(this.value(depth));
      this.skipSpace();
      const next = this.peek();
      this.at++;
      if (next === 0x5d) return result;
      if (next !== 0x2c) {
        this.at--;
        this.fail("expected ',' or ']' in an array");
      }
    }
  }
}
