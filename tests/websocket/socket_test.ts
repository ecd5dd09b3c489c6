/**
 * Unit tests of the mongrel2 WebSocket object, `upgradeWebSocket()` and
 * `broadcast()`, without sockets: the test reads the socket's frame stream
 * the way the connection writer does (one frame per read, each read a
 * receipt for the frames before it).
 *
 * @module
 */

import assert from "node:assert/strict";
import { broadcast } from "../../runtime/websocket/broadcast.ts";
import {
  createWebSocket,
  type Mongrel2WebSocket,
  type SocketControl,
  socketControl,
  type SocketRoute,
} from "../../runtime/websocket/socket.ts";
import {
  acceptedSocket,
  DEFAULT_MAX_MESSAGE_SIZE,
  framesResponse,
  markHandshake,
  routeDenoUpgradeWebSocket,
  upgradeWebSocket,
} from "../../runtime/websocket/upgrade.ts";
import { MemoryTransport } from "../../runtime/transport/memory.ts";
import {
  type DecodedFrame,
  decodeServerFrame,
  pattern,
} from "./frame_helpers.ts";
import { within } from "../subprocess.ts";

const utf8 = new TextEncoder();
const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/** A socket plus the writer's side of it. */
interface Harness {
  socket: Mongrel2WebSocket;
  control: SocketControl;
  events: string[];
  /** Reads the next frame (handing over the previous one). */
  read(): Promise<DecodedFrame | null>;
  /** The connection went away. */
  cancel(): Promise<void>;
}

type HarnessSettings = Partial<
  { maxMessageSize: number; idleTimeout: number; closeTimeout: number }
>;

function harness(settings: HarnessSettings = {}): Harness {
  const { socket, control } = createWebSocket({
    protocol: "",
    maxMessageSize: settings.maxMessageSize ?? 1024,
    idleTimeout: settings.idleTimeout ?? 0,
    closeTimeout: settings.closeTimeout,
  });
  const events: string[] = [];
  socket.addEventListener("open", () => events.push("open"));
  socket.addEventListener("message", (event) => {
    const data = (event as MessageEvent).data;
    events.push(
      typeof data === "string"
        ? `text ${data}`
        : `${data.constructor.name} ${data.byteLength ?? data.size}`,
    );
  });
  socket.addEventListener("error", (event) => {
    events.push(`error ${(event as ErrorEvent).message}`);
  });
  socket.addEventListener("close", (event) => {
    const { code, reason, wasClean } = event as CloseEvent;
    events.push(`close ${code} ${reason} ${wasClean}`);
  });
  const reader = control.frames.getReader();
  return {
    socket,
    control,
    events,
    async read() {
      const result = await reader.read();
      return result.done ? null : decodeServerFrame(result.value);
    },
    cancel: () => reader.cancel(new Error("gone")),
  };
}

/** Opens a harness socket: the first read means the 101 is out. */
async function opened(
  settings?: HarnessSettings,
): Promise<{ h: Harness; next: Promise<DecodedFrame | null> }> {
  const h = harness(settings);
  const next = h.read();
  await Promise.resolve();
  assert.equal(h.socket.readyState, 1);
  return { h, next };
}

function closePayload(frame: DecodedFrame | null): [number, string] {
  assert.equal(frame?.opcode, 8);
  const { payload } = frame!;
  return [
    (payload[0] << 8) | payload[1],
    new TextDecoder().decode(payload.subarray(2)),
  ];
}

Deno.test("a socket opens at the first read, not before", async () => {
  const h = harness();
  assert.equal(h.socket.readyState, h.socket.CONNECTING);
  assert.throws(() => h.socket.send("early"), { name: "InvalidStateError" });
  const first = h.read();
  await Promise.resolve();
  assert.deepEqual(h.events, ["open"]);
  h.socket.send("hi");
  const frame = await first;
  assert.equal(frame?.opcode, 1);
  assert.equal(new TextDecoder().decode(frame?.payload), "hi");
  await h.cancel();
});

Deno.test("frames that came with the handshake are delivered after open, as Deno does", async () => {
  const h = harness();
  h.control.receive("0x81", utf8.encode("sent with the handshake"));
  h.control.receive("0x89", utf8.encode("p"));
  assert.deepEqual(h.events, []);
  const first = h.read();
  await Promise.resolve();
  assert.deepEqual(h.events, ["open", "text sent with the handshake"]);
  // The early ping is answered too.
  const pong = await first;
  assert.equal(pong?.opcode, 0xa);
  // A client that keeps sending before the 101 is failed once it opens:
  // dropping frames from the middle would corrupt its messages.
  const late = harness();
  for (let i = 0; i < 100; i++) late.control.receive("0x81", utf8.encode("x"));
  late.read();
  await Promise.resolve();
  assert.equal(late.events.length, 1 + 64 + 1);
  assert.equal(late.events.at(-1), "error More than 64 frames before open");
  assert.equal(late.socket.readyState, late.socket.CLOSING);
  await h.cancel();
  await late.cancel();
});

Deno.test("readyState constants match WebSocket's", () => {
  const { socket } = harness();
  assert.deepEqual(
    [socket.CONNECTING, socket.OPEN, socket.CLOSING, socket.CLOSED],
    [WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED],
  );
  const ctor = socket.constructor as typeof WebSocket;
  assert.deepEqual(
    [ctor.CONNECTING, ctor.OPEN, ctor.CLOSING, ctor.CLOSED],
    [0, 1, 2, 3],
  );
  assert.equal(socket.binaryType, "arraybuffer");
  assert.equal(socket.extensions, "");
  assert.equal(socket.url, "");
});

Deno.test("bufferedAmount counts payload bytes until handed over", async () => {
  const { h, next } = await opened();
  h.socket.send("abc");
  h.socket.send(new Uint8Array(10));
  h.socket.send(new Blob([new Uint8Array(5)]));
  assert.equal(h.socket.bufferedAmount, 18);
  await next; // "abc" taken by the writer, not yet handed over
  assert.equal(h.socket.bufferedAmount, 18);
  const second = await h.read(); // "abc" handed over
  assert.equal(second?.payload.length, 10);
  assert.equal(h.socket.bufferedAmount, 15);
  const third = await h.read();
  assert.equal(third?.opcode, 2);
  assert.deepEqual(third?.payload, new Uint8Array(5));
  const fourth = h.read();
  await Promise.resolve();
  assert.equal(h.socket.bufferedAmount, 0);
  h.socket.close();
  assert.equal((await fourth)?.opcode, 8);
  await h.cancel();
});

Deno.test("a long queue of messages is handed over whole and in order, while it is added to", async () => {
  // The queue drops the slots it has handed over in blocks (taking the
  // oldest from an array moved all the others, 40 times as slow for
  // 100,000 messages): numbered messages check nothing is lost, repeated
  // or reordered when that happens between sends.
  const { h, next } = await opened();
  const message = (n: number) => new Uint32Array([n]);
  let sent = 0;
  for (; sent < 3000; sent++) h.socket.send(message(sent));
  const received: number[] = [];
  const take = async (frame: Promise<DecodedFrame | null>) => {
    const { payload } = (await frame)!;
    received.push(
      new DataView(payload.buffer, payload.byteOffset).getUint32(0, true),
    );
  };
  await take(next);
  while (received.length < 10_000) {
    // One in, two out while the backlog lasts: the queue drops its
    // handed-over slots (with 2,000, 1,333, 821 and 309 messages still in
    // it) between sends, not only once all are sent.
    if (sent < 10_000) h.socket.send(message(sent++));
    await take(h.read());
    if (received.length < sent) await take(h.read());
  }
  assert.deepEqual(received, Array.from({ length: 10_000 }, (_, i) => i));
  await h.cancel();
});

Deno.test("send() snapshots buffers and takes every BufferSource", async () => {
  const { h, next } = await opened();
  const bytes = new Uint8Array([1, 2, 3]);
  h.socket.send(bytes);
  bytes[0] = 9;
  h.socket.send(new DataView(new Uint8Array([4, 5, 6, 7]).buffer, 1, 2));
  h.socket.send(new Uint16Array([0x0201]).buffer);
  const frames = [await next, await h.read(), await h.read()];
  assert.deepEqual(
    frames.map((frame) => [...frame!.payload]),
    [[1, 2, 3], [5, 6], [1, 2]],
  );
  await h.cancel();
});

Deno.test("incoming text and binary respect binaryType", async () => {
  const { h } = await opened();
  h.control.receive("0x81", utf8.encode("héllo"));
  h.control.receive("0x82", new Uint8Array([1, 2, 3]));
  h.socket.binaryType = "blob";
  h.control.receive("0x82", new Uint8Array(4));
  h.socket.binaryType = "bogus" as BinaryType;
  assert.equal(h.socket.binaryType, "blob");
  assert.deepEqual(h.events, [
    "open",
    "text héllo",
    "ArrayBuffer 3",
    "Blob 4",
  ]);
  await h.cancel();
});

Deno.test("a binary message is a copy, not a view of the whole message", async () => {
  const { h } = await opened();
  let received: ArrayBuffer | undefined;
  h.socket.onmessage = (event) => received = event.data;
  const message = new Uint8Array([9, 9, 1, 2, 9]);
  h.control.receive("0x82", message.subarray(2, 4));
  assert.deepEqual(new Uint8Array(received!), new Uint8Array([1, 2]));
  await h.cancel();
});

Deno.test("on* handler properties fire with the socket as this", async () => {
  const h = harness();
  const seen: string[] = [];
  h.socket.onopen = function (this: WebSocket) {
    seen.push(`open ${this === h.socket}`);
  };
  h.socket.onmessage = (event) => seen.push(`first ${event.data}`);
  h.socket.onmessage = (event) => seen.push(`second ${event.data}`);
  assert.equal(typeof h.socket.onmessage, "function");
  const next = h.read();
  await Promise.resolve();
  h.control.receive("0x81", utf8.encode("x"));
  h.socket.onmessage = null;
  h.control.receive("0x81", utf8.encode("y"));
  assert.deepEqual(seen, ["open true", "second x"]);
  h.socket.close();
  await next;
  await h.cancel();
});

Deno.test("a ping is answered with a pong of the same payload", async () => {
  const { h, next } = await opened();
  h.control.receive("0x89", utf8.encode("p1"));
  h.control.receive("0x8A", utf8.encode("ignored"));
  const pong = await next;
  assert.equal(pong?.opcode, 0xa);
  assert.deepEqual(pong?.payload, utf8.encode("p1"));
  assert.equal(h.socket.bufferedAmount, 0);
  assert.deepEqual(h.events, ["open"]);
  await h.cancel();
});

Deno.test("a client close is echoed, then close fires clean", async () => {
  const { h, next } = await opened();
  h.control.receive("0x88", new Uint8Array([0x0f, 0xa1, 0x62, 0x79, 0x65]));
  assert.equal(h.socket.readyState, h.socket.CLOSING);
  assert.deepEqual(closePayload(await next), [4001, "bye"]);
  assert.equal(await h.read(), null);
  assert.equal(h.socket.readyState, h.socket.CLOSED);
  assert.deepEqual(h.events, ["open", "close 4001 bye true"]);
});

Deno.test("a client close without a code is echoed empty (1005)", async () => {
  const { h, next } = await opened();
  h.control.receive("0x88", new Uint8Array(0));
  assert.equal((await next)?.payload.length, 0);
  assert.equal(await h.read(), null);
  assert.deepEqual(h.events, ["open", "close 1005  true"]);
});

Deno.test("close() sends a close frame and waits for the client's", async () => {
  const { h, next } = await opened();
  h.socket.close(4002, "done");
  assert.deepEqual(closePayload(await next), [4002, "done"]);
  assert.equal(h.socket.readyState, h.socket.CLOSING);
  // Data after our close is dropped, pings are not answered.
  h.control.receive("0x81", utf8.encode("late"));
  h.control.receive("0x89", new Uint8Array(0));
  h.control.receive("0x88", new Uint8Array([0x0f, 0xa2, 0x64]));
  assert.equal(await h.read(), null);
  assert.deepEqual(h.events, ["open", "close 4002 d true"]);
  h.socket.close(); // a no-op once closed
});

Deno.test("close() with a code no endpoint may send sends none, and does not throw, as Deno's server sockets do not", async () => {
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000]) {
    const { h, next } = await opened();
    h.socket.close(code, "passed on from upstream");
    // An empty close frame: the client sees 1005, no status.
    const frame = await next;
    assert.equal(frame?.opcode, 8, String(code));
    assert.equal(frame?.payload.length, 0, String(code));
    assert.equal(h.socket.readyState, h.socket.CLOSING);
    await h.cancel();
  }
});

Deno.test("close() waits for the client's answer from when its close frame goes out, not from close()", async () => {
  const { h, next } = await opened({ closeTimeout: 50 });
  h.socket.send("one");
  h.socket.send("two");
  h.socket.close(1000, "done");
  // The client reads slowly: the frames before the close take longer than
  // the timeout to go out.
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal((await next)?.opcode, 1);
  assert.equal((await h.read())?.opcode, 1);
  assert.deepEqual(closePayload(await h.read()), [1000, "done"]);
  h.control.receive("0x88", new Uint8Array([0x03, 0xe8]));
  assert.equal(await h.read(), null);
  assert.deepEqual(h.events, ["open", "close 1000  true"]);
});

Deno.test("send() with no argument throws a TypeError, as Deno's does", async () => {
  const { h } = await opened();
  assert.throws(() => (h.socket.send as () => void)(), TypeError);
  await h.cancel();
});

Deno.test("close() refuses a reason over 123 bytes", async () => {
  const { h, next } = await opened();
  assert.throws(() => h.socket.close(1000, "x".repeat(124)), {
    name: "SyntaxError",
  });
  assert.throws(() => h.socket.close(1000, "é".repeat(62)), {
    name: "SyntaxError",
  });
  assert.equal(h.socket.readyState, h.socket.OPEN);
  h.socket.close(undefined, "reason only");
  assert.deepEqual(closePayload(await next), [1000, "reason only"]);
  await h.cancel();
  // 123 bytes is still a reason.
  const longest = await opened();
  longest.h.socket.close(1000, "x".repeat(123));
  assert.deepEqual(closePayload(await longest.next), [1000, "x".repeat(123)]);
  await longest.h.cancel();
});

Deno.test("close() takes its code as WebIDL's [Clamp] unsigned short, rounding half to even", async () => {
  for (const [code, sent] of [[1000.5, 1000], [1001.5, 1002], [3000.4, 3000]]) {
    const { h, next } = await opened();
    h.socket.close(code, "why");
    assert.deepEqual(closePayload(await next), [sent, "why"], String(code));
    await h.cancel();
  }
});

Deno.test("close() gives up on a client that never answers its close frame, with 1006", async () => {
  const { h, next } = await opened({ closeTimeout: 50 });
  h.socket.close(1000, "done");
  assert.deepEqual(closePayload(await next), [1000, "done"]);
  const end = await within(h.read(), 2000, "still open");
  assert.equal(end, null);
  assert.deepEqual(h.events, ["open", "close 1006  false"]);
});

Deno.test("a client that leaves right after its close frame closed cleanly", async () => {
  const { h } = await opened();
  h.control.receive("0x88", new Uint8Array([0x0f, 0xa0]));
  await h.cancel();
  assert.deepEqual(h.events, ["open", "close 4000  true"]);
});

Deno.test("close() with no code sends an empty close frame", async () => {
  const { h, next } = await opened();
  h.socket.close();
  assert.equal((await next)?.payload.length, 0);
  await h.cancel();
});

Deno.test("close() while connecting closes right after the 101", async () => {
  const h = harness();
  h.socket.close(3000, "later");
  assert.equal(h.socket.readyState, h.socket.CLOSING);
  assert.deepEqual(closePayload(await h.read()), [3000, "later"]);
  assert.deepEqual(h.events, []);
  await h.cancel();
  assert.deepEqual(h.events, ["close 1006  false"]);
});

Deno.test("protocol errors fire error, then close with their code", async (t) => {
  const cases: [string, string, Uint8Array, number, string][] = [
    [
      "invalid UTF-8",
      "0x81",
      new Uint8Array([0xff]),
      1007,
      "Invalid payload data",
    ],
    ["too big", "0x82", new Uint8Array(1025), 1009, "Message too big"],
    ["RSV bits", "0xC1", new Uint8Array(0), 1002, "Protocol error"],
    ["bad flags", "", new Uint8Array(0), 1002, "Protocol error"],
    [
      "bad close code",
      "0x88",
      new Uint8Array([0x03, 0xed]),
      1002,
      "Protocol error",
    ],
  ];
  for (const [name, flags, payload, code, reason] of cases) {
    await t.step(name, async () => {
      const { h, next } = await opened();
      h.control.receive(flags, payload);
      assert.match(h.events[1], /^error /);
      assert.deepEqual(closePayload(await next), [code, reason]);
      assert.equal(await h.read(), null);
      assert.equal(h.events[2], `close ${code} ${reason} false`);
      h.control.receive("0x81", utf8.encode("ignored"));
      assert.equal(h.events.length, 3);
    });
  }
});

Deno.test("the message size limit is inclusive", async () => {
  const { h } = await opened({ maxMessageSize: 4 });
  h.control.receive("0x82", new Uint8Array(4));
  assert.deepEqual(h.events, ["open", "ArrayBuffer 4"]);
  await h.cancel();
});

Deno.test("a lost connection fires close 1006 once", async () => {
  const { h } = await opened();
  await h.cancel();
  assert.equal(h.socket.readyState, h.socket.CLOSED);
  assert.deepEqual(h.events, ["open", "close 1006  false"]);
  // Dropped, as the standard says: a broadcast loop must not die of it.
  h.socket.send("x");
  assert.equal(h.socket.bufferedAmount, 0);
});

for (const code of [1001, 1008, 1011]) {
  Deno.test(`close(${code}) sends it, as Deno's server sockets do`, async () => {
    const { h, next } = await opened();
    h.socket.close(code, "why");
    assert.deepEqual(closePayload(await next), [code, "why"]);
    // Closing: a send is dropped, not thrown.
    h.socket.send("late");
    h.control.receive("0x88", new Uint8Array([code >> 8, code & 0xff]));
    assert.equal(await h.read(), null);
    assert.deepEqual(h.events, ["open", `close ${code}  true`]);
  });
}

Deno.test("pings from a client that does not read are answered by one pong, the latest", async () => {
  const { h, next } = await opened();
  for (let i = 0; i < 10_000; i++) {
    h.control.receive("0x89", utf8.encode(`ping ${i}`));
  }
  const pong = await next;
  assert.equal(pong?.opcode, 0xa);
  assert.equal(new TextDecoder().decode(pong?.payload), "ping 9999");
  h.socket.close(1000);
  // Nothing queued between the pong and the close.
  assert.deepEqual(closePayload(await h.read()), [1000, ""]);
  await h.cancel();
});

Deno.test("goAway() closes with 1001 without waiting", async () => {
  const { h, next } = await opened();
  h.socket.send("last");
  h.control.goAway();
  assert.equal((await next)?.opcode, 1);
  assert.deepEqual(closePayload(await h.read()), [
    1001,
    "Server shutting down",
  ]);
  assert.equal(await h.read(), null);
  assert.deepEqual(h.events, ["open", "close 1001 Server shutting down false"]);
});

Deno.test("a silent client is pinged, then dropped with 1001", async () => {
  const { h, next } = await opened({ idleTimeout: 0.1 });
  assert.equal((await next)?.opcode, 9);
  h.control.receive("0x8A", new Uint8Array(0)); // the pong resets the timer
  assert.equal((await h.read())?.opcode, 9);
  assert.deepEqual(closePayload(await h.read()), [
    1001,
    "No response from ping frame",
  ]);
  assert.equal(await h.read(), null);
  assert.deepEqual(h.events, [
    "open",
    "error No response from ping frame",
    "close 1001 No response from ping frame false",
  ]);
});

Deno.test("once closing, a client's frames do not start idle pings", async () => {
  const { h, next } = await opened({ idleTimeout: 0.1 });
  h.socket.close(4000);
  assert.deepEqual(closePayload(await next), [4000, ""]);
  h.control.receive("0x81", utf8.encode("still talking"));
  // Past the idle timeout: no ping was queued after the close frame.
  await new Promise((resolve) => setTimeout(resolve, 150));
  h.control.receive("0x88", new Uint8Array([0x0f, 0xa0]));
  assert.equal(await h.read(), null);
  assert.deepEqual(h.events, ["open", "close 4000  true"]);
});

function handshakeRequest(headers: Record<string, string> = {}): Request {
  return new Request("http://localhost/ws", {
    headers: {
      upgrade: "websocket",
      connection: "keep-alive, Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
      ...headers,
    },
  });
}

Deno.test("upgradeWebSocket() answers a marked handshake with a 101", async () => {
  const request = handshakeRequest({ "sec-websocket-protocol": "a, chat" });
  const handshake = markHandshake(request, ACCEPT);
  const { socket, response } = upgradeWebSocket(request, { protocol: "chat" });
  assert.equal(response.status, 101);
  assert.equal(response.ok, false);
  assert.deepEqual([...response.headers], [
    ["connection", "Upgrade"],
    ["sec-websocket-accept", ACCEPT],
    ["sec-websocket-protocol", "chat"],
    ["upgrade", "websocket"],
  ]);
  assert.equal(socket.protocol, "chat");
  assert.equal(response.body, null);
  assert.equal(acceptedSocket(response, handshake), socketControl(socket));
  // Middleware that rebuilds the response (Hono's c.header() after next())
  // keeps the socket: it belongs to the request, not to the object.
  const rebuilt = new Response(response.body, response);
  rebuilt.headers.set("x-added", "1");
  const control = acceptedSocket(rebuilt, handshake)!;
  assert.equal(control, socketControl(socket));
  const sent = framesResponse(rebuilt, control);
  assert.equal(sent.status, 101);
  assert.equal(sent.headers.get("x-added"), "1");
  assert.equal(sent.body, control.frames);
  await sent.body?.cancel();
  // A 101 for a request that opened no socket is the handler's error.
  assert.throws(
    () => acceptedSocket(new Response(null, { status: 101 }), undefined),
    /a 101 response must follow upgradeWebSocket\(\)/,
  );
  assert.equal(acceptedSocket(new Response("x"), handshake), undefined);
});

Deno.test("routeDenoUpgradeWebSocket() makes Deno.upgradeWebSocket() take mongrel2's handshakes too", async () => {
  const original = Deno.upgradeWebSocket;
  try {
    routeDenoUpgradeWebSocket();
    const request = handshakeRequest();
    const handshake = markHandshake(request, ACCEPT);
    const { socket, response } = Deno.upgradeWebSocket(request);
    assert.equal(acceptedSocket(response, handshake), socketControl(socket));
    await socketControl(socket)!.frames.cancel();
    // Any other request is still Deno's own.
    const plain = Deno.upgradeWebSocket(handshakeRequest());
    assert.equal(socketControl(plain.socket), undefined);
  } finally {
    Object.defineProperty(Deno, "upgradeWebSocket", {
      value: original,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
});

Deno.test("upgradeWebSocket() rejects what Deno rejects", async (t) => {
  const cases: [string, Record<string, string>, string][] = [
    ["no upgrade header", { upgrade: "" }, "'upgrade' header"],
    ["no connection upgrade", { connection: "close" }, "'connection' header"],
    ["no key", { "sec-websocket-key": "" }, "'sec-websocket-key'"],
  ];
  for (const [name, headers, message] of cases) {
    await t.step(name, () => {
      const request = handshakeRequest(headers);
      if (headers["sec-websocket-key"] === "") {
        // Headers cannot hold a missing value; build it without the key.
        request.headers.delete("sec-websocket-key");
      }
      markHandshake(request, ACCEPT);
      assert.throws(() => upgradeWebSocket(request), {
        name: "TypeError",
        message: new RegExp(message),
      });
    });
  }
  await t.step("a protocol the client did not offer", () => {
    const request = handshakeRequest({ "sec-websocket-protocol": "a" });
    markHandshake(request, ACCEPT);
    assert.throws(() => upgradeWebSocket(request, { protocol: "chat" }), {
      name: "TypeError",
      message: /offered only 'a'/,
    });
  });
  await t.step("a negative maxMessageSize", () => {
    const request = handshakeRequest();
    markHandshake(request, ACCEPT);
    assert.throws(() => upgradeWebSocket(request, { maxMessageSize: -1 }), {
      name: "RangeError",
    });
  });
});

Deno.test("upgradeWebSocket() is Deno.upgradeWebSocket() off mongrel2", () => {
  const { socket, response } = upgradeWebSocket(handshakeRequest());
  assert.equal(response.status, 101);
  assert.equal(socketControl(socket), undefined);
  assert.throws(() => upgradeWebSocket(new Request("http://localhost/")), {
    name: "TypeError",
  });
});

Deno.test("the default message size limit is 64 MiB, as Deno's", () => {
  assert.equal(DEFAULT_MAX_MESSAGE_SIZE, 64 * 1024 * 1024);
});

/** A route that records what broadcast() takes, with `credits` to spend. */
function route(
  id: string,
  send: SocketRoute["send"],
  credits: number,
): SocketRoute {
  return {
    sender: "abc",
    id,
    send,
    takeCredits(bytes) {
      if (credits < bytes) return false;
      credits -= bytes;
      return true;
    },
  };
}

Deno.test("broadcast() shares one reply among idle sockets with credits", async () => {
  const transport = new MemoryTransport();
  const send = (reply: Uint8Array) => transport.send(reply);
  const sockets: Harness[] = [];
  const pending: Promise<DecodedFrame | null>[] = [];
  for (const [id, credits] of [["1", 100], ["2", 100], ["3", 2], ["4", 100]]) {
    const { h, next } = await opened();
    h.control.attach(route(id as string, send, credits as number));
    sockets.push(h);
    pending.push(next);
  }
  sockets[3].socket.send("busy"); // socket 4 has its own frame queued
  const closed = harness(); // never opened: skipped
  const count = broadcast(
    [...sockets.map((h) => h.socket), closed.socket, sockets[0].socket],
    "hey",
  );
  assert.equal(count, 4);
  assert.deepEqual(
    transport.replies.map((reply) => String.fromCharCode(...reply)),
    ["abc 3:1 2, \x81\x03hey"],
  );
  // Sockets 3 (no credits) and 4 (busy) got it in their own queue.
  const text = (frame: DecodedFrame | null) =>
    new TextDecoder().decode(frame?.payload);
  assert.equal(text(await pending[2]), "hey");
  assert.equal(text(await pending[3]), "busy");
  assert.equal(text(await sockets[3].read()), "hey");
  for (const h of sockets) await h.cancel();
});

Deno.test("broadcast() splits at 128 ids and sends bytes as binary", async () => {
  const transport = new MemoryTransport();
  const send = (reply: Uint8Array) => transport.send(reply);
  const sent = transport.replies;
  const sockets: Harness[] = [];
  for (let i = 1; i <= 130; i++) {
    const { h } = await opened();
    h.control.attach(route(`${i}`, send, 1000));
    sockets.push(h);
  }
  assert.equal(broadcast(sockets.map((h) => h.socket), pattern(3)), 130);
  assert.equal(sent.length, 2);
  const tail = String.fromCharCode(...sent[1]);
  assert.ok(tail.startsWith("abc 7:129 130, \x82\x03"));
  for (const h of sockets) await h.cancel();
});

Deno.test("broadcast() uses send() for other sockets and refuses a Blob", () => {
  const sent: unknown[] = [];
  const foreign = {
    readyState: WebSocket.OPEN,
    send: (data: unknown) => sent.push(data),
  } as unknown as WebSocket;
  assert.equal(broadcast([foreign], "x"), 1);
  assert.deepEqual(sent, ["x"]);
  assert.throws(
    () => broadcast([foreign], new Blob(["x"]) as unknown as string),
    { name: "TypeError" },
  );
});

Deno.test("the socket is a WebSocket to instanceof and toString, and inspects like one, as Deno's server sockets", () => {
  const { socket } = harness();
  assert.ok(socket instanceof WebSocket);
  assert.equal(Object.prototype.toString.call(socket), "[object WebSocket]");
  assert.equal(socket.url, "");
  assert.equal(socket.extensions, "");
  assert.match(
    Deno.inspect(socket),
    /readyState: 0,[^]*binaryType: "arraybuffer"/,
  );
});
