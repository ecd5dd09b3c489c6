/**
 * The WebSocket assertions shared by both servers of `ws_app.ts`: m2fetch
 * behind a real mongrel2, and `deno serve`. Each case runs unchanged against
 * both; where Deno 2.9 behaves differently on purpose-neutral details, the
 * case says so and asserts each side's behaviour:
 *
 * - server-side `close` event after a client vanished: m2fetch 1006 (RFC
 *   6455 §7.1.5); Deno fires `error` ("Unexpected EOF") and a `close` event
 *   with code 0;
 * - invalid UTF-8: m2fetch sends a 1007 close frame; Deno closes the TCP
 *   connection without one (the client sees 1006);
 * - `maxMessageSize` is m2fetch's option; `Deno.upgradeWebSocket` ignores it;
 * - a server-side socket's `protocol`: the selected subprotocol in m2fetch,
 *   `""` in Deno (the client sees the selection in both);
 * - a refused handshake: mongrel2 has already switched the connection to
 *   WebSocket mode, so m2fetch closes it after the response; Deno keeps the
 *   HTTP/1.1 connection open.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeMaskedFrame, pattern } from "./frame_helpers.ts";
import { RawWsClient } from "./raw_ws_client.ts";
import { withDeadline } from "../subprocess.ts";

/** A running server of `ws_app.ts`. */
export interface Target {
  /** Which server. */
  kind: "m2fetch" | "deno";
  /** Its HTTP port on 127.0.0.1. */
  port: number;
  /** Reads the app's `GET path` as JSON. */
  get(path: string): Promise<unknown>;
  /** m2fetch only: the id counts of the multi-id replies sent so far. */
  multiIdReplies?: () => number[];
}

/** One shared assertion. */
export interface WsCase {
  /** The test step's name. */
  name: string;
  /** Runs the case against a target. */
  run(target: Target): Promise<void>;
}

const MASK = [0x37, 0xfa, 0x21, 0x3d];
const utf8 = new TextEncoder();
const TIMEOUT_MS = 15_000;

function deadline<T>(promise: Promise<T>, what: string): Promise<T> {
  return withDeadline(
    promise,
    TIMEOUT_MS,
    () => `Timed out waiting for ${what}`,
  );
}

/** A Deno `WebSocket` with its messages queued and its close awaited. */
class Client {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;
  readonly #messages: unknown[] = [];
  #waiter: (() => void) | null = null;

  constructor(url: string, protocols?: string[]) {
    this.ws = new WebSocket(url, protocols);
    this.ws.binaryType = "arraybuffer";
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error(`Cannot open ${url}`));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => this.ws.onclose = resolve);
    this.ws.onmessage = (event) => {
      this.#messages.push(event.data);
      this.#waiter?.();
    };
  }

  get received(): number {
    return this.#messages.length;
  }

  async next(): Promise<unknown> {
    while (this.#messages.length === 0) {
      await deadline(
        new Promise<void>((resolve) => this.#waiter = resolve),
        "a message",
      );
    }
    return this.#messages.shift();
  }
}

async function open(
  target: Target,
  path: string,
  protocols?: string[],
): Promise<Client> {
  const client = new Client(`ws://127.0.0.1:${target.port}${path}`, protocols);
  await deadline(client.opened, `the socket ${path} to open`);
  return client;
}

/** Polls the server-side events of socket `id` until one starts with `prefix`. */
async function serverEvent(
  target: Target,
  id: string,
  prefix: string,
): Promise<string[]> {
  const end = performance.now() + TIMEOUT_MS;
  while (true) {
    const events = await target.get(`/events?id=${id}`) as string[];
    if (events.some((line) => line.startsWith(prefix))) return events;
    if (performance.now() > end) {
      throw new Error(
        `Timed out waiting for server event "${prefix}" of ${id}: ${events}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Text of exactly `bytes` UTF-8 bytes, with 1-, 2- and 3-byte characters. */
function textOfBytes(bytes: number): string {
  return "aé€".repeat(Math.floor(bytes / 6)) + "x".repeat(bytes % 6);
}

function assertBytes(actual: unknown, expected: Uint8Array): void {
  assert.ok(actual instanceof ArrayBuffer, `expected an ArrayBuffer`);
  const bytes = new Uint8Array(actual);
  assert.equal(bytes.length, expected.length);
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== expected[i]) {
      assert.fail(`byte ${i} is ${bytes[i]}, expected ${expected[i]}`);
    }
  }
}

function closeCode(payload: Uint8Array): number {
  return (payload[0] << 8) | payload[1];
}

let counter = 0;
function uniqueId(prefix: string): string {
  return `${prefix}${++counter}`;
}

/** The shared cases, in the order they run. */
export const WS_CASES: WsCase[] = [
  {
    name: "echoes text and binary of 0 B, 125 B, 126 B, 64 KiB and 4 MiB",
    async run(target) {
      const client = await open(target, "/echo");
      for (const size of [0, 125, 126, 64 * 1024, 4 * 1024 * 1024]) {
        const text = textOfBytes(size);
        assert.equal(utf8.encode(text).length, size);
        client.ws.send(text);
        assert.equal(await client.next(), text, `text of ${size} bytes`);
        const bytes = pattern(size);
        client.ws.send(bytes);
        assertBytes(await client.next(), bytes);
      }
      client.ws.close();
      await deadline(client.closed, "close");
    },
  },
  {
    name: "send(Blob) keeps message order",
    async run(target) {
      const client = await open(target, "/echo-blob");
      const big = pattern(70_000);
      client.ws.send(big);
      client.ws.send("after");
      client.ws.send(new Uint8Array(0));
      assertBytes(await client.next(), big);
      assert.equal(await client.next(), "after");
      assertBytes(await client.next(), new Uint8Array(0));
      client.ws.close();
      await deadline(client.closed, "close");
    },
  },
  {
    name: "a ping from a raw client gets a pong with the same payload",
    async run(target) {
      const raw = await RawWsClient.connect(target.port, "/echo");
      assert.equal(raw.status, 101);
      const payload = utf8.encode("are you there?");
      await raw.write(encodeMaskedFrame(0x9, payload, MASK));
      const pong = await deadline(raw.readFrame(), "a pong");
      assert.equal(pong?.opcode, 0xa);
      assert.deepEqual(pong?.payload, payload);
      await raw.write(encodeMaskedFrame(0x8, new Uint8Array([3, 232]), MASK));
      const frames = await deadline(raw.readUntilEnd(), "the close");
      assert.equal(frames.length, 1);
      assert.equal(frames[0].opcode, 0x8);
      assert.equal(closeCode(frames[0].payload), 1000);
      raw.abort();
    },
  },
  {
    name: "a fragmented message arrives as one, a ping between fragments too",
    async run(target) {
      const raw = await RawWsClient.connect(target.port, "/echo");
      await raw.write(
        encodeMaskedFrame(0x1, utf8.encode("frag1-"), MASK, { fin: false }),
      );
      await raw.write(encodeMaskedFrame(0x9, utf8.encode("mid"), MASK));
      await raw.write(encodeMaskedFrame(0x0, utf8.encode("frag2"), MASK));
      const frames = [
        await deadline(raw.readFrame(), "a frame"),
        await deadline(raw.readFrame(), "a frame"),
      ];
      const pong = frames.find((frame) => frame?.opcode === 0xa);
      const text = frames.find((frame) => frame?.opcode === 0x1);
      assert.equal(new TextDecoder().decode(pong?.payload), "mid");
      assert.equal(new TextDecoder().decode(text?.payload), "frag1-frag2");
      assert.equal(text?.fin, true);
      raw.abort();
    },
  },
  {
    name: "the client closes with 4001 bye: both sides see it",
    async run(target) {
      const id = uniqueId("c");
      const client = await open(target, `/close?id=${id}`);
      client.ws.close(4001, "bye");
      const event = await deadline(client.closed, "close");
      assert.deepEqual(
        [event.code, event.reason, event.wasClean],
        [4001, "bye", true],
      );
      const events = await serverEvent(target, id, "close");
      assert.equal(events.at(-1), "close 4001 bye true");
    },
  },
  {
    name: "the server closes with 4002 done: both sides see it",
    async run(target) {
      const id = uniqueId("s");
      const client = await open(target, `/close?id=${id}`);
      client.ws.send("close");
      const event = await deadline(client.closed, "close");
      assert.deepEqual(
        [event.code, event.reason, event.wasClean],
        [4002, "done", true],
      );
      const events = await serverEvent(target, id, "close");
      assert.equal(events.at(-1), "close 4002 done true");
    },
  },
  {
    name: "a client vanishing without a close frame fires close on the server",
    async run(target) {
      const id = uniqueId("v");
      const raw = await RawWsClient.connect(target.port, `/echo?id=${id}`);
      assert.equal(raw.status, 101);
      await serverEvent(target, id, "open");
      raw.abort();
      const events = await serverEvent(target, id, "close");
      assert.equal(
        events.at(-1),
        target.kind === "m2fetch" ? "close 1006  false" : "close 0  false",
      );
    },
  },
  {
    name: "a refused handshake gets the handler's 403",
    async run(target) {
      const raw = await RawWsClient.connect(target.port, "/refuse");
      assert.equal(raw.status, 403);
      if (target.kind === "m2fetch") {
        assert.match(raw.head, /\r\nconnection: close\r\n/);
        const body = await deadline(raw.readRest(), "the connection to close");
        assert.equal(new TextDecoder().decode(body), "Forbidden");
      }
      raw.abort();
      const client = new Client(`ws://127.0.0.1:${target.port}/refuse`);
      await assert.rejects(client.opened);
      // Deno's client reports a failed handshake as close code 0.
      assert.equal((await deadline(client.closed, "close")).wasClean, false);
    },
  },
  {
    name: "invalid UTF-8 text closes the connection (1007 from m2fetch)",
    async run(target) {
      const id = uniqueId("u");
      const raw = await RawWsClient.connect(target.port, `/echo?id=${id}`);
      await raw.write(
        encodeMaskedFrame(0x1, new Uint8Array([0x68, 0xff, 0xfe]), MASK),
      );
      const frames = await deadline(raw.readUntilEnd(), "the close");
      const events = await serverEvent(target, id, "close");
      if (target.kind === "m2fetch") {
        assert.equal(frames.length, 1);
        assert.equal(closeCode(frames[0].payload), 1007);
        assert.equal(events.at(-1), "close 1007 Invalid payload data false");
      } else {
        assert.equal(frames.length, 0);
        assert.equal(events.at(-1), "close 0  false");
      }
      assert.match(events.at(-2)!, /^error .*UTF-8/);
      raw.abort();
    },
  },
  {
    name: "a message over maxMessageSize closes with 1009 (m2fetch only)",
    async run(target) {
      const id = uniqueId("l");
      const client = await open(target, `/limit?id=${id}`);
      client.ws.send(pattern(1024));
      assertBytes(await client.next(), pattern(1024));
      client.ws.send(pattern(1025));
      if (target.kind === "deno") {
        // Deno.upgradeWebSocket has no such option; it echoes.
        assertBytes(await client.next(), pattern(1025));
        client.ws.close();
        await deadline(client.closed, "close");
        return;
      }
      const event = await deadline(client.closed, "close");
      assert.equal(event.code, 1009);
      const events = await serverEvent(target, id, "close");
      assert.equal(events.at(-1), "close 1009 Message too big false");
    },
  },
  {
    name: "the subprotocol the handler selects reaches the client",
    async run(target) {
      const id = uniqueId("p");
      const client = await open(target, `/chat?id=${id}`, ["x", "chat"]);
      assert.equal(client.ws.protocol, "chat");
      const events = await serverEvent(target, id, "open");
      assert.equal(
        events[0],
        target.kind === "m2fetch" ? "open chat" : "open ",
      );
      client.ws.close();
      await deadline(client.closed, "close");
      // Not offered: upgradeWebSocket throws, the handler fails, no socket.
      const refused = new Client(`ws://127.0.0.1:${target.port}/chat`, ["x"]);
      await assert.rejects(refused.opened);
      await deadline(refused.closed, "close");
    },
  },
  {
    name: "broadcast reaches 200 concurrent sockets once each",
    async run(target) {
      const clients: Client[] = [];
      for (let i = 0; i < 200; i++) {
        clients.push(new Client(`ws://127.0.0.1:${target.port}/room?id=r${i}`));
      }
      await deadline(Promise.all(clients.map((c) => c.opened)), "200 opens");
      const end = performance.now() + TIMEOUT_MS;
      while (await target.get("/room/size") !== 200) {
        if (performance.now() > end) throw new Error("The room never filled");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const before = target.multiIdReplies?.().length ?? 0;
      clients[0].ws.send("go");
      for (const client of clients) {
        assert.equal(await client.next(), "hello");
      }
      const events = await serverEvent(target, "r0", "broadcast");
      assert.ok(events.includes("broadcast 200"));
      if (target.multiIdReplies !== undefined) {
        // Every socket was idle with credits: two replies, 128 + 72 ids.
        assert.deepEqual(target.multiIdReplies().slice(before), [128, 72]);
      }
      for (const client of clients) client.ws.close();
      await deadline(Promise.all(clients.map((c) => c.closed)), "200 closes");
      assert.ok(clients.every((client) => client.received === 0));
    },
  },
];
