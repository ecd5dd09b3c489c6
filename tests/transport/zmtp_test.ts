import assert from "node:assert/strict";
import fc from "fast-check";
import {
  commandFrame,
  frameHeaderLength,
  greeting,
  parseCommand,
  readyCommand,
  readyProperties,
  subscriptionOf,
  writeFrameHeader,
  ZmtpDecoder,
  ZmtpError,
  type ZmtpFrame,
} from "../../runtime/transport/zmtp.ts";
import { ZmqContext, type ZmqSocketType } from "../libzmq.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function frameOf(body: Uint8Array, flags = 0): Uint8Array {
  const frame = new Uint8Array(frameHeaderLength(body.length) + body.length);
  frame.set(body, writeFrameHeader(frame, 0, body.length, flags));
  return frame;
}

function framesOf(decoder: ZmtpDecoder): ZmtpFrame[] {
  const frames: ZmtpFrame[] = [];
  let frame: ZmtpFrame | null;
  while ((frame = decoder.next()) !== null) frames.push(frame);
  return frames;
}

Deno.test("greeting() is ZMTP 3.0 with the NULL mechanism, byte for byte", () => {
  const expected = new Uint8Array(64);
  expected.set([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0]);
  expected.set(encoder.encode("NULL"), 12);
  assert.deepEqual(greeting(), expected);
});

Deno.test("readyCommand() names the socket type as RFC 23 frames it", () => {
  assert.deepEqual(
    readyCommand("PULL"),
    new Uint8Array([
      0x04,
      26,
      5,
      ...encoder.encode("READY"),
      11,
      ...encoder.encode("Socket-Type"),
      0,
      0,
      0,
      4,
      ...encoder.encode("PULL"),
    ]),
  );
});

Deno.test("ZmtpDecoder takes a greeting and frames fed a byte at a time, short and long", () => {
  const long = new Uint8Array(70_000).map((_, i) => i % 251);
  const stream = [
    greeting(),
    readyCommand("PUSH"),
    frameOf(encoder.encode("a"), 1),
    frameOf(new Uint8Array()),
    frameOf(long),
  ];
  const bytes = new Uint8Array(stream.reduce((sum, b) => sum + b.length, 0));
  let at = 0;
  for (const part of stream) {
    bytes.set(part, at);
    at += part.length;
  }
  const zmtp = new ZmtpDecoder();
  const frames: ZmtpFrame[] = [];
  for (const byte of bytes) {
    zmtp.write(new Uint8Array([byte]));
    frames.push(...framesOf(zmtp));
  }
  assert.equal(zmtp.peerVersion, "3.0");
  assert.equal(frames.length, 4);
  assert.deepEqual(
    frames.map((f) => [f.command, f.more, f.body.length]),
    [[true, false, 26], [false, true, 1], [false, false, 0], [
      false,
      false,
      70_000,
    ]],
  );
  assert.deepEqual(frames[3].body, long);
  const { name, data } = parseCommand(frames[0].body);
  assert.equal(name, "READY");
  assert.equal(readyProperties(data).get("socket-type"), "PUSH");
});

Deno.test("ZmtpDecoder frames stay intact after the buffer is reused", () => {
  const zmtp = new ZmtpDecoder({ greeted: true });
  zmtp.write(frameOf(encoder.encode("first")));
  const [first] = framesOf(zmtp);
  for (let i = 0; i < 20; i++) zmtp.write(frameOf(new Uint8Array(10_000)));
  assert.equal(framesOf(zmtp).length, 20);
  assert.equal(decoder.decode(first.body), "first");
});

Deno.test("ZmtpDecoder refuses what is not ZMTP 3 with NULL, saying what the peer is", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "an HTTP server",
      encoder.encode("HTTP/1.1 400 Bad Request\r\n"),
      /^The peer is not a ZeroMQ socket \(its first byte is not a ZMTP signature\)$/,
    ],
    [
      "a greeting whose signature does not end in 0x7f",
      new Uint8Array([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7e]),
      /^The peer is not a ZeroMQ socket \(its greeting is not a ZMTP signature\)$/,
    ],
    [
      // As much as libzmq 3 sends before it waits for m2fetch's greeting.
      "libzmq 3, from its 11th byte",
      new Uint8Array([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 1]),
      /^The peer speaks ZMTP 2\.0 \(libzmq 3\.x\)/,
    ],
    [
      "libzmq 3",
      new Uint8Array([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 1, 5]),
      /^The peer speaks ZMTP 2\.0 \(libzmq 3\.x\); m2fetch needs ZMTP 3 \(libzmq 4 or later\)$/,
    ],
    [
      "CURVE",
      (() => {
        const bytes = greeting();
        bytes.fill(0, 12, 32);
        bytes.set(encoder.encode("CURVE"), 12);
        return bytes;
      })(),
      /^The peer asks for the CURVE security mechanism; m2fetch speaks only NULL$/,
    ],
  ];
  for (const [what, bytes, message] of cases) {
    const zmtp = new ZmtpDecoder();
    zmtp.write(bytes);
    assert.throws(() => zmtp.next(), (error: unknown) => {
      assert.ok(error instanceof ZmtpError, what);
      assert.match(error.message, message, what);
      return true;
    });
  }
});

Deno.test("ZmtpDecoder reports the peer's minor version too", () => {
  const zmtp = new ZmtpDecoder();
  const bytes = greeting();
  bytes[11] = 1;
  zmtp.write(bytes);
  assert.equal(zmtp.next(), null);
  assert.equal(zmtp.peerVersion, "3.1");
});

Deno.test("frames of 255 bytes are short and of 256 long, commands too", () => {
  for (const [size, header] of [[255, 2], [256, 9]]) {
    assert.equal(frameHeaderLength(size), header);
    for (const flags of [0, 4]) {
      const frame = frameOf(new Uint8Array(size).fill(7), flags);
      assert.equal(frame.length, header + size);
      assert.deepEqual(
        [...frame.subarray(0, header)],
        header === 2 ? [flags, 255] : [flags | 2, 0, 0, 0, 0, 0, 0, 1, 0],
      );
      const zmtp = new ZmtpDecoder({ greeted: true });
      zmtp.write(frame);
      assert.deepEqual(framesOf(zmtp), [{
        command: flags === 4,
        more: false,
        body: new Uint8Array(size).fill(7),
      }]);
    }
  }
});

Deno.test("a long frame's size takes all eight bytes of its header", () => {
  const header = new Uint8Array(9);
  assert.equal(writeFrameHeader(header, 0, 2 ** 40 + 3), 9);
  assert.deepEqual([...header], [2, 0, 0, 1, 0, 0, 0, 0, 3]);
  const zmtp = new ZmtpDecoder({ greeted: true });
  zmtp.write(header);
  assert.throws(
    () => zmtp.next(),
    /^ZmtpError: The peer sent a frame of 1099511627779 bytes, more than the 1073741824 m2fetch takes$/,
  );
});

Deno.test("ZmtpDecoder takes a frame of exactly maxFrameBytes, once its whole header is in", () => {
  const zmtp = new ZmtpDecoder({ greeted: true, maxFrameBytes: 1000 });
  // Leaves 0xff where the next header's last byte will go.
  zmtp.write(frameOf(new Uint8Array(20).fill(0xff)));
  assert.equal(framesOf(zmtp).length, 1);
  const frame = frameOf(new Uint8Array(1000).fill(1));
  // Eight of its nine header bytes: what follows them is not yet its size.
  zmtp.write(frame.subarray(0, 8));
  assert.equal(zmtp.next(), null);
  zmtp.write(frame.subarray(8));
  assert.deepEqual(framesOf(zmtp).map((f) => f.body.length), [1000]);
});

Deno.test("ZmtpDecoder makes room for a large frame once its header is in, and gives it back once it is taken", () => {
  const zmtp = new ZmtpDecoder({ greeted: true });
  const frame = frameOf(new Uint8Array(1 << 20).fill(5));
  zmtp.write(frame.subarray(0, 9));
  assert.equal(zmtp.next(), null);
  // The rest can be read in place, in one read.
  assert.ok(zmtp.space().length >= 1 << 20);
  zmtp.write(frame.subarray(9));
  assert.equal(framesOf(zmtp).length, 1);
  assert.ok(zmtp.space().length <= 64 * 1024);
});

Deno.test("ZmtpDecoder refuses a frame over maxFrameBytes before buffering it", () => {
  const zmtp = new ZmtpDecoder({ greeted: true, maxFrameBytes: 1000 });
  const header = new Uint8Array(9);
  writeFrameHeader(header, 0, 1001);
  zmtp.write(header);
  assert.throws(
    () => zmtp.next(),
    /^ZmtpError: The peer sent a frame of 1001 bytes, more than the 1000 m2fetch takes$/,
  );
});

Deno.test("a READY command cut short is a ZmtpError", () => {
  const ready = readyCommand("SUB");
  const { data } = parseCommand(ready.subarray(2));
  assert.throws(
    () => readyProperties(data.subarray(0, data.length - 1)),
    /^ZmtpError: The peer sent a READY command that ends mid-property$/,
  );
});

Deno.test("parseCommand() refuses an empty command and a name that runs past it", () => {
  for (const body of [[], [5, ...encoder.encode("PING")]]) {
    assert.throws(
      () => parseCommand(new Uint8Array(body)),
      /^ZmtpError: The peer sent a command with a malformed name$/,
    );
  }
});

Deno.test("readyProperties() reads an empty value last, and refuses a READY cut anywhere", () => {
  const identity = [8, ...encoder.encode("Identity"), 0, 0, 0, 0];
  const { data } = parseCommand(readyCommand("SUB").subarray(2));
  const both = new Uint8Array([...data, ...identity]);
  assert.deepEqual(
    readyProperties(both),
    new Map([["socket-type", "SUB"], ["identity", ""]]),
  );
  // In a name, in a value's length and in a value.
  for (let end = data.length + 1; end < both.length; end++) {
    assert.throws(
      () => readyProperties(both.subarray(0, end)),
      /^ZmtpError: The peer sent a READY command that ends mid-property$/,
      `cut at ${end}`,
    );
  }
  for (let end = 1; end < data.length; end++) {
    assert.throws(
      () => readyProperties(data.subarray(0, end)),
      /^ZmtpError: The peer sent a READY command that ends mid-property$/,
      `cut at ${end}`,
    );
  }
});

Deno.test("subscriptionOf() reads ZMTP 3.0 messages and 3.1 commands, and nothing else", () => {
  const message = (bytes: number[]) => ({
    command: false,
    more: false,
    body: new Uint8Array(bytes),
  });
  const command = (name: string, topic: string) => ({
    command: true,
    more: false,
    body: commandFrame(name, encoder.encode(topic)).subarray(2),
  });
  assert.deepEqual(subscriptionOf(message([1, 0x61, 0x62])), {
    subscribe: true,
    topic: "ab",
  });
  assert.deepEqual(subscriptionOf(message([0])), {
    subscribe: false,
    topic: "",
  });
  assert.deepEqual(subscriptionOf(command("SUBSCRIBE", "x")), {
    subscribe: true,
    topic: "x",
  });
  assert.deepEqual(subscriptionOf(command("CANCEL", "x")), {
    subscribe: false,
    topic: "x",
  });
  // Any byte, 0x80-0x9F too (which TextDecoder's "latin1", really
  // windows-1252, would turn into other characters).
  assert.deepEqual(subscriptionOf(message([1, 0x80, 0x9f, 0xff])), {
    subscribe: true,
    topic: "\x80\x9f\xff",
  });
  assert.equal(subscriptionOf(message([2, 0x61])), null);
  assert.equal(subscriptionOf(message([])), null);
  assert.equal(subscriptionOf(command("PING", "")), null);
});

/**
 * What a real libzmq socket of `type` sends when it connects to a unix
 * socket m2fetch's decoder reads, after `act` ran on it.
 */
async function fromLibzmq(
  type: ZmqSocketType,
  act: (send: (text: string) => boolean) => void,
  frames: number,
): Promise<{ zmtp: ZmtpDecoder; frames: ZmtpFrame[] }> {
  const dir = await Deno.makeTempDir({ prefix: "m2zmtp-" });
  const listener = Deno.listen({ transport: "unix", path: `${dir}/s` });
  const context = new ZmqContext();
  const socket = context.socket(type, { linger: 0 });
  if (type === "sub") socket.subscribe("");
  try {
    socket.connect(`ipc://${dir}/s`);
    const conn = await listener.accept();
    try {
      const peerType = type === "push" ? "PULL" : "PUB";
      await conn.write(greeting());
      await conn.write(readyCommand(peerType));
      const zmtp = new ZmtpDecoder();
      const got: ZmtpFrame[] = [];
      let acted = false;
      while (got.length < frames) {
        const count = await conn.read(zmtp.space());
        assert.notEqual(count, null, "libzmq closed the connection");
        zmtp.commit(count!);
        got.push(...framesOf(zmtp));
        if (!acted && got.length > 0) {
          acted = true;
          // Give libzmq's I/O thread the handshake before sending.
          await new Promise((resolve) => setTimeout(resolve, 50));
          act((text) => socket.send(encoder.encode(text)));
        }
      }
      return { zmtp, frames: got };
    } finally {
      conn.close();
    }
  } finally {
    socket.close();
    await context.terminate();
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ZmtpDecoder reads a real libzmq PUSH: its greeting, READY and messages", async () => {
  const { zmtp, frames } = await fromLibzmq("push", (send) => {
    assert.ok(send("hello"));
    assert.ok(send("x".repeat(300)));
  }, 3);
  assert.match(zmtp.peerVersion, /^3\.[01]$/);
  const { name, data } = parseCommand(frames[0].body);
  assert.equal(name, "READY");
  assert.equal(readyProperties(data).get("socket-type"), "PUSH");
  assert.deepEqual(
    frames.slice(1).map((f) => [f.command, decoder.decode(f.body)]),
    [[false, "hello"], [false, "x".repeat(300)]],
  );
});

Deno.test("a real libzmq SUB subscribes with a ZMTP 3.0 message once it knows m2fetch speaks 3.0", async () => {
  const { frames } = await fromLibzmq("sub", () => {}, 2);
  assert.equal(
    readyProperties(parseCommand(frames[0].body).data).get("socket-type"),
    "SUB",
  );
  // The stand-in subscribes to every sender ("").
  assert.deepEqual(subscriptionOf(frames[1]), { subscribe: true, topic: "" });
});

Deno.test("ZmtpDecoder: any frames, cut anywhere, come back whole and in order", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          more: fc.boolean(),
          command: fc.boolean(),
          // Across the short/long boundary at 256 bytes.
          body: fc.uint8Array({ maxLength: 600 }),
        }),
        { maxLength: 20 },
      ),
      fc.array(fc.nat({ max: 700 }), { maxLength: 10 }),
      (frames, cuts) => {
        const encoded = frames.map(({ more, command, body }) =>
          frameOf(body, (more ? 1 : 0) | (command ? 4 : 0))
        );
        const bytes = new Uint8Array(
          encoded.reduce((sum, frame) => sum + frame.length, 0),
        );
        let at = 0;
        for (const frame of encoded) {
          bytes.set(frame, at);
          at += frame.length;
        }
        const zmtp = new ZmtpDecoder({ greeted: true });
        const decoded: ZmtpFrame[] = [];
        let from = 0;
        for (
          const cut of [
            ...cuts.map((c) => c % (bytes.length + 1)),
            bytes.length,
          ].sort((a, b) => a - b)
        ) {
          zmtp.write(bytes.subarray(from, Math.max(from, cut)));
          from = Math.max(from, cut);
          decoded.push(...framesOf(zmtp));
        }
        assert.deepEqual(decoded, frames.map((frame) => ({ ...frame })));
      },
    ),
  );
});

Deno.test("ZmtpDecoder: arbitrary bytes give frames or a ZmtpError, nothing else", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
      const zmtp = new ZmtpDecoder({ maxFrameBytes: 1024 });
      try {
        zmtp.write(bytes);
        framesOf(zmtp);
      } catch (error) {
        assert.ok(error instanceof ZmtpError, String(error));
      }
    }),
  );
});
