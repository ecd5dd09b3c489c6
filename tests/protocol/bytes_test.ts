/**
 * Byte strings: every byte maps to the code point of the same value, on the
 * ASCII fast path, the short path and the chunked path alike.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  decodeByteString,
  encodeByteString,
} from "../../runtime/protocol/bytes.ts";

function reference(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

Deno.test("decodeByteString maps each byte to one code unit at every length", () => {
  for (const length of [0, 1, 31, 32, 33, 400, 8192, 8193, 20_000]) {
    const ascii = new Uint8Array(length).map((_, i) => 0x20 + (i % 95));
    assert.equal(decodeByteString(ascii, 0, length), reference(ascii));
    // One high byte anywhere takes it off the ASCII path: no UTF-8 decoding
    // (0xC3 0xA9 stays two characters) and no replacement characters.
    const mixed = ascii.slice();
    if (length > 1) mixed.set([0xc3, 0xa9], length - 2);
    if (length > 0) mixed[0] = 0xff;
    assert.equal(decodeByteString(mixed, 0, length), reference(mixed));
  }
});

Deno.test("decodeByteString reads only the range asked for", () => {
  const bytes = encodeByteString("head:" + "v".repeat(40) + "\u00e9:tail");
  assert.equal(decodeByteString(bytes, 5, 45), "v".repeat(40));
  assert.equal(decodeByteString(bytes, 5, 46), "v".repeat(40) + "\u00e9");
});
