import assert from "node:assert/strict";
import {
  classifyMessage,
  computeAcceptKey,
  decodeText,
  encodeCloseFrame,
  encodeFrame,
  encodeFrameHeader,
  OPCODE,
  parseClosePayload,
  parseFlags,
  type WebSocketOpcode,
  WebSocketProtocolError,
} from "../../runtime/websocket/frame.ts";
import {
  decodeServerFrame,
  encodeMaskedFrame,
  hex,
  mongrel2Deliver,
  pattern,
} from "./frame_helpers.ts";

const encoder = new TextEncoder();
const MiB = 1024 * 1024;

/** Asserts that `fn` throws a WebSocketProtocolError with `closeCode`. */
function assertProtocolError(fn: () => unknown, closeCode: number): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(
      error instanceof WebSocketProtocolError,
      `expected WebSocketProtocolError, got ${error}`,
    );
    assert.equal(error.closeCode, closeCode, error.message);
    assert.equal(error.name, "WebSocketProtocolError");
    assert.match(error.message, /^[A-Z]/);
    return true;
  });
}

function closePayload(code: number, reason: Uint8Array = new Uint8Array(0)) {
  const bytes = new Uint8Array(2 + reason.byteLength);
  bytes[0] = code >>> 8;
  bytes[1] = code & 0xff;
  bytes.set(reason, 2);
  return bytes;
}

// --- OPCODE --------------------------------------------------------------

Deno.test("OPCODE has the RFC 6455 values", () => {
  assert.deepEqual({ ...OPCODE }, {
    continuation: 0,
    text: 1,
    binary: 2,
    close: 8,
    ping: 9,
    pong: 10,
  });
  const opcode: WebSocketOpcode = OPCODE.pong;
  assert.equal(opcode, 10);
});

// --- RFC 6455 §5.7 examples ----------------------------------------------

Deno.test("encodeFrame: RFC 6455 §5.7 unmasked text 'Hello'", () => {
  assert.deepEqual(
    encodeFrame(OPCODE.text, encoder.encode("Hello")),
    hex("81 05 48 65 6c 6c 6f"),
  );
});

Deno.test("encodeFrame: RFC 6455 §5.7 fragmented unmasked text", () => {
  assert.deepEqual(
    encodeFrame(OPCODE.text, encoder.encode("Hel"), { fin: false }),
    hex("01 03 48 65 6c"),
  );
  assert.deepEqual(
    encodeFrame(OPCODE.continuation, encoder.encode("lo")),
    hex("80 02 6c 6f"),
  );
});

Deno.test("encodeFrame: RFC 6455 §5.7 unmasked ping 'Hello'", () => {
  assert.deepEqual(
    encodeFrame(OPCODE.ping, encoder.encode("Hello")),
    hex("89 05 48 65 6c 6c 6f"),
  );
  assert.deepEqual(
    encodeFrame(OPCODE.pong, encoder.encode("Hello")),
    hex("8a 05 48 65 6c 6c 6f"),
  );
});

Deno.test("encodeFrame: RFC 6455 §5.7 256-byte binary", () => {
  const payload = pattern(256);
  const frame = encodeFrame(OPCODE.binary, payload);
  assert.deepEqual(frame.subarray(0, 4), hex("82 7E 01 00"));
  assert.equal(frame.byteLength, 4 + 256);
  assert.deepEqual(frame.subarray(4), payload);
});

Deno.test("encodeFrame: RFC 6455 §5.7 64 KiB binary", () => {
  const payload = pattern(65536);
  const frame = encodeFrame(OPCODE.binary, payload);
  assert.deepEqual(
    frame.subarray(0, 10),
    hex("82 7F 00 00 00 00 00 01 00 00"),
  );
  assert.equal(frame.byteLength, 10 + 65536);
  assert.deepEqual(frame.subarray(10), payload);
});

Deno.test("encodeMaskedFrame helper: RFC 6455 §5.7 masked 'Hello'", () => {
  assert.deepEqual(
    encodeMaskedFrame(OPCODE.text, encoder.encode("Hello"), [
      0x37,
      0xfa,
      0x21,
      0x3d,
    ]),
    hex("81 85 37 fa 21 3d 7f 9f 4d 51 58"),
  );
});

// --- Boundary sizes and round trips --------------------------------------

const SIZES: [number, number, 7 | 16 | 64][] = [
  // [payload length, header length, length form]
  [0, 2, 7],
  [1, 2, 7],
  [125, 2, 7],
  [126, 4, 16],
  [127, 4, 16],
  [65535, 4, 16],
  [65536, 10, 64],
  [4 * MiB, 10, 64],
];

for (const [size, headerLength, lengthForm] of SIZES) {
  Deno.test(`encodeFrame: ${size}-byte payload round trips`, () => {
    const payload = pattern(size);
    for (const opcode of [OPCODE.binary, OPCODE.text, OPCODE.continuation]) {
      for (const fin of [true, false]) {
        const frame = encodeFrame(opcode, payload, { fin });
        assert.equal(frame.byteLength, headerLength + size);
        const decoded = decodeServerFrame(frame);
        assert.equal(decoded.fin, fin);
        assert.equal(decoded.rsv, 0);
        assert.equal(decoded.opcode, opcode);
        assert.equal(decoded.mask, undefined);
        assert.equal(decoded.lengthForm, lengthForm);
        assert.equal(decoded.headerLength, headerLength);
        assert.deepEqual(decoded.payload, payload);
        assert.deepEqual(
          encodeFrameHeader(opcode, size, fin),
          frame.subarray(0, headerLength),
        );
      }
    }
  });
}

Deno.test("encodeFrame: exact header bytes at the length-form boundaries", () => {
  assert.deepEqual(encodeFrameHeader(OPCODE.binary, 0), hex("82 00"));
  assert.deepEqual(encodeFrameHeader(OPCODE.binary, 125), hex("82 7d"));
  assert.deepEqual(encodeFrameHeader(OPCODE.binary, 126), hex("82 7e 00 7e"));
  assert.deepEqual(
    encodeFrameHeader(OPCODE.binary, 65535),
    hex("82 7e ff ff"),
  );
  assert.deepEqual(
    encodeFrameHeader(OPCODE.binary, 65536),
    hex("82 7f 00 00 00 00 00 01 00 00"),
  );
  assert.deepEqual(
    encodeFrameHeader(OPCODE.binary, 4 * MiB),
    hex("82 7f 00 00 00 00 00 40 00 00"),
  );
  assert.deepEqual(
    encodeFrameHeader(OPCODE.binary, 0x1_2345_6789),
    hex("82 7f 00 00 00 01 23 45 67 89"),
  );
  assert.deepEqual(
    encodeFrameHeader(OPCODE.binary, Number.MAX_SAFE_INTEGER),
    hex("82 7f 00 1f ff ff ff ff ff ff"),
  );
  assert.deepEqual(encodeFrameHeader(OPCODE.text, 5, false), hex("01 05"));
});

Deno.test("encodeFrame: copies a payload that is a view into a larger buffer", () => {
  const backing = pattern(300);
  const view = backing.subarray(10, 140); // 130 bytes at offset 10
  const frame = encodeFrame(OPCODE.binary, view);
  const decoded = decodeServerFrame(frame);
  assert.deepEqual(decoded.payload, backing.slice(10, 140));
  assert.equal(frame.buffer.byteLength, frame.byteLength);
  backing[10] = 0xff;
  assert.equal(frame[4], 10);
});

Deno.test("encodeFrame: control frames up to 125 bytes round trip", () => {
  for (const opcode of [OPCODE.ping, OPCODE.pong, OPCODE.close]) {
    for (const size of [0, 125]) {
      const decoded = decodeServerFrame(encodeFrame(opcode, pattern(size)));
      assert.equal(decoded.opcode, opcode);
      assert.equal(decoded.payload.byteLength, size);
    }
  }
});

Deno.test("encodeFrame and encodeFrameHeader reject invalid frames", () => {
  for (const opcode of [3, 7, 11, 15, 16, -1, 1.5, NaN]) {
    assert.throws(() => encodeFrame(opcode, new Uint8Array(1)), RangeError);
    assert.throws(() => encodeFrameHeader(opcode, 1), RangeError);
  }
  for (const opcode of [OPCODE.ping, OPCODE.pong, OPCODE.close]) {
    assert.throws(() => encodeFrame(opcode, pattern(126)), RangeError);
    assert.throws(() => encodeFrameHeader(opcode, 126), RangeError);
    assert.throws(
      () => encodeFrame(opcode, pattern(1), { fin: false }),
      RangeError,
    );
  }
  for (const length of [-1, 1.5, NaN, Infinity, Number.MAX_SAFE_INTEGER + 1]) {
    assert.throws(() => encodeFrameHeader(OPCODE.binary, length), RangeError);
  }
});

// --- Close frames ---------------------------------------------------------

Deno.test("encodeCloseFrame: byte-exact frames", () => {
  assert.deepEqual(encodeCloseFrame(), hex("88 00"));
  assert.deepEqual(encodeCloseFrame(1000), hex("88 02 03 e8"));
  assert.deepEqual(
    encodeCloseFrame(1000, "bye"),
    hex("88 05 03 e8 62 79 65"),
  );
  assert.deepEqual(encodeCloseFrame(4999, ""), hex("88 02 13 87"));
});

const SENDABLE_CODES = [
  1000,
  1001,
  1002,
  1003,
  1007,
  1008,
  1009,
  1010,
  1011,
  1012,
  1013,
  1014,
  3000,
  3999,
  4000,
  4999,
];
const INVALID_CODES = [
  0,
  1,
  999,
  1004,
  1005,
  1006,
  1015,
  1016,
  1100,
  2000,
  2999,
  5000,
  65535,
];

Deno.test("encodeCloseFrame and parseClosePayload round trip", () => {
  const reasons = ["", "bye", "κόσμε 🚀", "\u{feff}bom", "x".repeat(123)];
  for (const code of SENDABLE_CODES) {
    for (const reason of reasons) {
      const decoded = decodeServerFrame(encodeCloseFrame(code, reason));
      assert.equal(decoded.opcode, OPCODE.close);
      assert.equal(decoded.fin, true);
      assert.deepEqual(parseClosePayload(decoded.payload), { code, reason });
      assert.deepEqual(
        classifyMessage("0x88", decoded.payload, 125),
        { type: "close", code, reason },
      );
    }
  }
});

Deno.test("encodeCloseFrame: reason limit is 123 UTF-8 bytes", () => {
  // "é" is 2 bytes: 61 of them plus "x" make 123 bytes.
  const max = "é".repeat(61) + "x";
  assert.equal(encodeCloseFrame(1000, max).byteLength, 2 + 125);
  assert.throws(() => encodeCloseFrame(1000, "x".repeat(124)), RangeError);
  assert.throws(() => encodeCloseFrame(1000, "é".repeat(62)), RangeError);
  // A 4-byte character straddling the limit.
  assert.throws(
    () => encodeCloseFrame(1000, "x".repeat(120) + "🚀"),
    RangeError,
  );
});

Deno.test("encodeCloseFrame rejects codes that must not be sent", () => {
  for (const code of [...INVALID_CODES, 1000.5, NaN, -1000]) {
    assert.throws(() => encodeCloseFrame(code), RangeError, `code ${code}`);
  }
  assert.throws(() => encodeCloseFrame(undefined, "why"), TypeError);
});

Deno.test("parseClosePayload: empty payload means 1005", () => {
  assert.deepEqual(parseClosePayload(new Uint8Array(0)), {
    code: 1005,
    reason: "",
  });
  assert.deepEqual(classifyMessage("0x88", new Uint8Array(0), 0), {
    type: "close",
    code: 1005,
    reason: "",
  });
});

Deno.test("parseClosePayload: observed mongrel2 body \\x03\\xe8bye", () => {
  assert.deepEqual(parseClosePayload(hex("03 e8 62 79 65")), {
    code: 1000,
    reason: "bye",
  });
});

Deno.test("parseClosePayload: a 1-byte payload is a protocol error", () => {
  assertProtocolError(() => parseClosePayload(hex("03")), 1002);
  assertProtocolError(() => classifyMessage("0x88", hex("03"), 125), 1002);
});

Deno.test("parseClosePayload: invalid codes are protocol errors", () => {
  for (const code of INVALID_CODES) {
    assertProtocolError(() => parseClosePayload(closePayload(code)), 1002);
    assertProtocolError(
      () =>
        classifyMessage("0x88", closePayload(code, encoder.encode("x")), 125),
      1002,
    );
  }
});

Deno.test("parseClosePayload: invalid UTF-8 reasons are 1007", () => {
  for (const reason of ["ff", "ce", "ed a0 80", "c0 80", "f4 90 80 80"]) {
    assertProtocolError(
      () => parseClosePayload(closePayload(1000, hex(reason))),
      1007,
    );
  }
});

Deno.test("parseClosePayload: over 125 bytes is a protocol error", () => {
  const payload = closePayload(1000, encoder.encode("x".repeat(124)));
  assertProtocolError(() => parseClosePayload(payload), 1002);
});

Deno.test("parseClosePayload: works on a view into a larger buffer", () => {
  const backing = hex("ff ff 0f a0 6f 6b ff");
  assert.deepEqual(parseClosePayload(backing.subarray(2, 6)), {
    code: 4000,
    reason: "ok",
  });
});

// --- FLAGS ----------------------------------------------------------------

Deno.test("parseFlags: every observed mongrel2 value", () => {
  const observed: [string, number][] = [
    ["0x81", OPCODE.text],
    ["0x82", OPCODE.binary],
    ["0x88", OPCODE.close],
    ["0x89", OPCODE.ping],
    ["0x8A", OPCODE.pong],
  ];
  for (const [flags, opcode] of observed) {
    assert.deepEqual(parseFlags(flags), { fin: true, rsv: 0, opcode });
  }
});

Deno.test("parseFlags: accepts either case and one or two digits", () => {
  const pong = { fin: true, rsv: 0, opcode: 10 };
  assert.deepEqual(parseFlags("0x8a"), pong);
  assert.deepEqual(parseFlags("0X8A"), pong);
  assert.deepEqual(parseFlags("0X8a"), pong);
  assert.deepEqual(parseFlags("0x1"), { fin: false, rsv: 0, opcode: 1 });
  assert.deepEqual(parseFlags("0x00"), { fin: false, rsv: 0, opcode: 0 });
  assert.deepEqual(parseFlags("0xFF"), { fin: true, rsv: 7, opcode: 15 });
  assert.deepEqual(parseFlags("0xC1"), { fin: true, rsv: 4, opcode: 1 });
  assert.deepEqual(parseFlags("0xA1"), { fin: true, rsv: 2, opcode: 1 });
  assert.deepEqual(parseFlags("0x91"), { fin: true, rsv: 1, opcode: 1 });
});

Deno.test("parseFlags: rejects garbage with 1002", () => {
  const garbage = [
    "",
    "0x",
    "81",
    "0x181",
    "0x8G",
    " 0x81",
    "0x81 ",
    "0x-1",
    "0b1",
    "x81",
    "0x8 1",
    "0x81\n",
    "129",
  ];
  for (const flags of garbage) {
    assertProtocolError(() => parseFlags(flags), 1002);
  }
  // Callers from plain JavaScript may pass a missing header.
  assertProtocolError(() => parseFlags(undefined as unknown as string), 1002);
});

// --- UTF-8 ----------------------------------------------------------------

Deno.test("decodeText: valid UTF-8, including a kept BOM", () => {
  assert.equal(decodeText(new Uint8Array(0)), "");
  // Autobahn's "κόσμε", whose second letter is U+1F79 (omicron with oxia).
  assert.equal(
    decodeText(hex("ce ba e1 bd b9 cf 83 ce bc ce b5")),
    "\u03ba\u1f79\u03c3\u03bc\u03b5",
  );
  assert.equal(decodeText(hex("f0 9f 9a 80")), "🚀");
  assert.equal(decodeText(hex("ef bb bf 61")), "\u{feff}a");
  assert.equal(decodeText(hex("f4 8f bf bf")), "\u{10ffff}");
});

Deno.test("decodeText: invalid UTF-8 is 1007", () => {
  const invalid = [
    // Autobahn 6.x: "κόσμε" + U+D800 encoded + "edited".
    "ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 65 64 69 74 65 64",
    // Truncated multi-byte sequences.
    "ce",
    "e1 bd",
    "f0 9f 9a",
    "ce ba e1 bd",
    // Lone continuation byte, overlong forms, above U+10FFFF, bad bytes.
    "80",
    "c0 80",
    "e0 80 af",
    "f4 90 80 80",
    "fe",
    "ff",
  ];
  for (const bytes of invalid) {
    assertProtocolError(() => decodeText(hex(bytes)), 1007);
    assertProtocolError(() => classifyMessage("0x81", hex(bytes), 1024), 1007);
  }
});

// --- classifyMessage --------------------------------------------------------

Deno.test("classifyMessage: each message type", () => {
  const bytes = pattern(10);
  assert.deepEqual(classifyMessage("0x81", encoder.encode("hi"), 1024), {
    type: "text",
    data: "hi",
  });
  assert.deepEqual(classifyMessage("0x81", new Uint8Array(0), 0), {
    type: "text",
    data: "",
  });
  for (
    const [flags, type] of [
      ["0x82", "binary"],
      ["0x89", "ping"],
      ["0x8A", "pong"],
      ["0x8a", "pong"],
    ] as const
  ) {
    const message = classifyMessage(flags, bytes, 1024);
    assert.equal(message.type, type);
    assert.ok("data" in message);
    // Binary data is the payload itself, not a copy.
    assert.equal(message.data, bytes);
  }
});

Deno.test("classifyMessage: a 512-byte binary message (observed)", () => {
  const payload = pattern(512);
  assert.deepEqual(classifyMessage("0x82", payload, 512), {
    type: "binary",
    data: payload,
  });
});

Deno.test("classifyMessage: fragmented text reassembled by mongrel2", () => {
  const mask = [0xde, 0xad, 0xbe, 0xef];
  const frames = [
    encodeMaskedFrame(OPCODE.text, encoder.encode("frag1-"), mask, {
      fin: false,
    }),
    // A ping in the middle of the fragmented message is forwarded at once.
    encodeMaskedFrame(OPCODE.ping, encoder.encode("p"), mask),
    encodeMaskedFrame(OPCODE.continuation, encoder.encode("frag2"), mask),
  ];
  const delivered = mongrel2Deliver(frames);
  assert.deepEqual(delivered.map((message) => message.flags), [
    "0x89",
    "0x81",
  ]);
  assert.deepEqual(
    delivered.map((message) =>
      classifyMessage(message.flags, message.body, 64)
    ),
    [
      { type: "ping", data: encoder.encode("p") },
      { type: "text", data: "frag1-frag2" },
    ],
  );
  // And directly, as observed on the wire.
  assert.deepEqual(
    classifyMessage("0x81", encoder.encode("frag1-frag2"), 11),
    { type: "text", data: "frag1-frag2" },
  );
});

Deno.test("classifyMessage: text split inside a UTF-8 sequence is whole after reassembly", () => {
  const bytes = encoder.encode("κόσμε");
  const mask = [1, 2, 3, 4];
  const delivered = mongrel2Deliver([
    encodeMaskedFrame(OPCODE.text, bytes.subarray(0, 1), mask, { fin: false }),
    encodeMaskedFrame(OPCODE.continuation, bytes.subarray(1), mask),
  ]);
  assert.equal(delivered.length, 1);
  assert.deepEqual(classifyMessage(delivered[0].flags, delivered[0].body, 64), {
    type: "text",
    data: "κόσμε",
  });
});

Deno.test("classifyMessage: client frames of every boundary size", () => {
  for (const [size] of SIZES) {
    const payload = pattern(size);
    const [message] = mongrel2Deliver([
      encodeMaskedFrame(OPCODE.binary, payload, [9, 8, 7, 6]),
    ]);
    assert.equal(message.flags, "0x82");
    const classified = classifyMessage(message.flags, message.body, 4 * MiB);
    assert.equal(classified.type, "binary");
    assert.deepEqual(classified.type === "binary" && classified.data, payload);
  }
});

Deno.test("classifyMessage: 1009 when over the maximum size", () => {
  const payload = pattern(4 * MiB);
  assert.equal(classifyMessage("0x82", payload, 4 * MiB).type, "binary");
  assertProtocolError(
    () => classifyMessage("0x82", payload, 4 * MiB - 1),
    1009,
  );
  assertProtocolError(
    () => classifyMessage("0x81", encoder.encode("ab"), 1),
    1009,
  );
  assertProtocolError(() => classifyMessage("0x89", pattern(10), 9), 1009);
  assertProtocolError(
    () => classifyMessage("0x81", encoder.encode("a"), 0),
    1009,
  );
  // The size check comes before UTF-8 validation.
  assertProtocolError(() => classifyMessage("0x81", hex("ff ff"), 1), 1009);
  assert.equal(classifyMessage("0x82", payload, Infinity).type, "binary");
});

Deno.test("classifyMessage: rejects an invalid maximum size", () => {
  for (const max of [-1, NaN]) {
    assert.throws(() => classifyMessage("0x82", pattern(1), max), RangeError);
  }
});

Deno.test("classifyMessage: 1002 for unknown opcodes", () => {
  for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    const flags = "0x" + (0x80 | opcode).toString(16).toUpperCase();
    assertProtocolError(() => classifyMessage(flags, pattern(1), 1024), 1002);
  }
});

Deno.test("classifyMessage: 1002 for a continuation or non-final message", () => {
  assertProtocolError(() => classifyMessage("0x80", pattern(1), 1024), 1002);
  assertProtocolError(() => classifyMessage("0x01", pattern(1), 1024), 1002);
  assertProtocolError(() => classifyMessage("0x2", pattern(1), 1024), 1002);
});

Deno.test("classifyMessage: 1002 for RSV bits", () => {
  for (const flags of ["0xC1", "0xA1", "0x91", "0xF2", "0xC9", "0xB8"]) {
    assertProtocolError(() => classifyMessage(flags, pattern(1), 1024), 1002);
  }
  // RSV bits on the first fragment survive mongrel2's reassembly.
  const [message] = mongrel2Deliver([
    encodeMaskedFrame(OPCODE.text, encoder.encode("a"), [0, 0, 0, 0], {
      rsv: 4,
    }),
  ]);
  assert.equal(message.flags, "0xC1");
  assertProtocolError(
    () => classifyMessage(message.flags, message.body, 8),
    1002,
  );
});

Deno.test("classifyMessage: 1002 for control payloads over 125 bytes", () => {
  for (const flags of ["0x88", "0x89", "0x8A"]) {
    assert.doesNotThrow(() =>
      classifyMessage(flags, closePayload(1000, pattern(123).fill(0x61)), 125)
    );
    assertProtocolError(
      () =>
        classifyMessage(
          flags,
          closePayload(1000, pattern(124).fill(0x61)),
          1024,
        ),
      1002,
    );
  }
});

Deno.test("classifyMessage: 1002 for garbage FLAGS", () => {
  for (const flags of ["", "text", "0x", "0x181"]) {
    assertProtocolError(() => classifyMessage(flags, pattern(1), 1024), 1002);
  }
});

// --- Handshake --------------------------------------------------------------

Deno.test("computeAcceptKey: RFC 6455 §1.3 example", async () => {
  assert.equal(
    await computeAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="),
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  );
});

Deno.test("computeAcceptKey: value observed from mongrel2", async () => {
  const accept = await computeAcceptKey("/+0FgXaVWxZ8OzOWpvAviw==");
  assert.equal(accept, "Mw/w/ykkKC8pJWfVtwumw7buTtM=");
  assert.equal(accept.length, 28);
});
