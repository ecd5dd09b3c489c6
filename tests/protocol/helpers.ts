/**
 * Shared helpers for the protocol and HTTP unit tests: the captured
 * mongrel2 1.12.2 fixtures, byte-string conversion and error assertions.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ProtocolError } from "../../runtime/protocol/errors.ts";

/** The two header encodings mongrel2 can use. */
export type Mode = "json" | "tnet";

/** Both header encodings, in capture order. */
export const MODES: readonly Mode[] = ["json", "tnet"];

/** The handler `send_ident` of each capture route (tests/fixtures/README.md). */
export const SENDERS: Readonly<Record<Mode, string>> = {
  json: "34f9ceee-cd52-4b7f-b197-88bf2f0ec378",
  tnet: "53f9f1d1-1116-4751-b6ff-4fbe3e43d142",
};

/** Every fixture captured in both modes. */
export const FIXTURE_NAMES = [
  "get_query",
  "duplicate_headers",
  "post_inline",
  "post_binary",
  "raw_tab",
  "head",
  "http10",
  "connection_close",
  "credits",
  "disconnect",
  "upload_start",
  "upload_done",
  "websocket_handshake",
  "websocket_text",
  "websocket_binary",
  "websocket_ping",
  "websocket_close",
] as const;

/** The name of one fixture. */
export type FixtureName = typeof FIXTURE_NAMES[number];

/**
 * Reads `tests/fixtures/<mode>/<name>.bin`.
 *
 * @param mode The header encoding.
 * @param name The scenario.
 * @returns The message bytes exactly as mongrel2 sent them.
 */
export function fixture(mode: Mode, name: FixtureName): Uint8Array {
  return Deno.readFileSync(
    new URL(`../fixtures/${mode}/${name}.bin`, import.meta.url),
  );
}

/**
 * Converts a byte string (code units 0x00–0xFF) to bytes, so test inputs can
 * be written as JavaScript string escapes like the fixture README does.
 *
 * @param text The byte string.
 * @returns One byte per code unit.
 */
export function bytes(text: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff) throw new Error(`Test input has U+${code.toString(16)}`);
    out[i] = code;
  }
  return out;
}

/**
 * Converts bytes to a byte string (one code unit per byte).
 *
 * @param data The bytes.
 * @returns The byte string.
 */
export function latin1(data: Uint8Array): string {
  let out = "";
  for (const byte of data) out += String.fromCharCode(byte);
  return out;
}

/** The 256 byte values 0x00, 0x01, …, 0xFF in order. */
export const ALL_BYTES: Uint8Array<ArrayBuffer> = Uint8Array.from(
  { length: 256 },
  (_, i) => i,
);

/**
 * Builds a mongrel2 message around a header payload, with correct byte
 * lengths: `sender id path LEN:headers<tag>LEN:body,`.
 *
 * @param headers The header payload (JSON text or tnetstring dict items).
 * @param tag `,` for a JSON netstring, `}` for a tnetstring dict.
 * @param body The body, as a byte string.
 * @returns The message bytes.
 */
export function message(
  headers: string,
  tag: "," | "}" = ",",
  body = "",
): Uint8Array<ArrayBuffer> {
  return bytes(
    `abc 1 /p ${headers.length}:${headers}${tag}${body.length}:${body},`,
  );
}

/**
 * Asserts that `fn` throws a `ProtocolError` (and nothing else) whose
 * message is a sentence: capital first letter, no full stop at the end.
 *
 * @param fn The code that must throw.
 * @param pattern An optional pattern the message must match.
 * @param input The input, to check that the offset lies inside it.
 * @returns The error.
 */
export function assertProtocolError(
  fn: () => unknown,
  pattern?: RegExp,
  input?: Uint8Array,
): ProtocolError {
  let caught: unknown = undefined;
  let threw = false;
  try {
    fn();
  } catch (error) {
    threw = true;
    caught = error;
  }
  assert.ok(threw, "expected a ProtocolError, nothing was thrown");
  assert.ok(
    caught instanceof ProtocolError,
    `expected a ProtocolError, got ${String(caught)}`,
  );
  assertSentence(caught.message);
  assert.equal(caught.name, "ProtocolError");
  assert.ok(caught instanceof SyntaxError);
  assert.ok(
    Number.isInteger(caught.offset) && caught.offset >= 0,
    `offset ${caught.offset}`,
  );
  if (input !== undefined) {
    assert.ok(
      caught.offset <= input.length,
      `offset ${caught.offset} past the input (${input.length} bytes)`,
    );
  }
  if (pattern !== undefined) assert.match(caught.message, pattern);
  return caught;
}

/**
 * Asserts that an error message is sentence case: it starts with a capital
 * letter and does not end with a full stop.
 *
 * @param text The message.
 */
export function assertSentence(text: string): void {
  assert.match(text, /^[A-Z][a-z]/, `not sentence case: ${text}`);
  assert.doesNotMatch(text, /\.$/, `ends with a full stop: ${text}`);
}
