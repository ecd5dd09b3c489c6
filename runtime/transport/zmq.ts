/**
 * The ZeroMQ transport: a PULL socket connected to mongrel2's `send_spec`
 * and a PUB socket connected to its `recv_spec`. This is the only module
 * that imports `npm:zeromq`.
 *
 * Several mongrel2 servers can share one m2fetch: the PULL socket connects
 * to every `send_spec` (requests are fair-queued), and one PUB socket per
 * `recv_spec` publishes every reply. Each server's Handler has its own
 * `send_ident` and `recv_ident = send_ident`, so a server subscribes only to
 * replies that start with its own ident: the others' replies never reach it.
 *
 * @module
 */

import * as zmq from "zeromq";
import type { Transport } from "./transport.ts";

/** Where to reach mongrel2. */
export interface ZmqTransportOptions {
  /**
   * mongrel2's `send_spec`, or one per mongrel2 server (m2fetch connects
   * one PULL socket to all of them).
   */
  sendSpec: string | readonly string[];
  /**
   * mongrel2's `recv_spec`, or one per mongrel2 server (m2fetch connects a
   * PUB socket to each).
   */
  recvSpec: string | readonly string[];
  /**
   * How long to hold replies after a PUB socket connects, so that
   * mongrel2's SUB subscription has reached it (the "slow joiner"): replies
   * published earlier would be dropped. Default 200 ms.
   */
  joinDelayMs?: number;
  /**
   * Most replies held for one `recv_spec` whose mongrel2 is not subscribed
   * (yet, or any more); the oldest are dropped beyond it. Default 10 000.
   */
  maxHeldReplies?: number;
  /**
   * How long a `recv_spec` may stay unsubscribed before `onStatus` reports
   * that its replies are held (ms). Default 1000.
   */
  waitingNoticeMs?: number;
  /** Called for transport problems that are worth a log line. */
  onError?: (error: Error) => void;
  /**
   * Called with a line worth logging when a mongrel2 subscribes, leaves, or
   * is still awaited (replies for it are held meanwhile).
   */
  onStatus?: (message: string) => void;
}

const ENDPOINT = /^(tcp|ipc|inproc):\/\/.+/;

/**
 * Checks that a ZeroMQ endpoint is one m2fetch can connect to.
 *
 * @param name The option name, for the message.
 * @param spec The endpoint.
 * @throws {TypeError} When the endpoint is not `tcp://`, `ipc://` or `inproc://`.
 *
 * @example Usage
 * ```ts
 * import { checkEndpoint } from "./zmq.ts";
 * checkEndpoint("--send-spec", "tcp://127.0.0.1:9997");
 * ```
 */
export function checkEndpoint(name: string, spec: string): void {
  if (!ENDPOINT.test(spec)) {
    throw new TypeError(
      `Cannot use ${name} "${spec}": expected tcp://HOST:PORT, ipc://PATH or inproc://NAME`,
    );
  }
  if (spec.startsWith("tcp://") && !/:\d+$/.test(spec)) {
    throw new TypeError(
      `Cannot use ${name} "${spec}": a tcp endpoint needs a port`,
    );
  }
}

/**
 * A {@linkcode Transport} over ZeroMQ.
 *
 * Replies are queued in memory, per `recv_spec`, while its mongrel2 is not
 * subscribed (at start-up, and while it restarts), so none is published
 * before the mongrel2 it is meant for has joined. One mongrel2 that is down
 * never holds up the replies to the others.
 *
 * @example Usage
 * ```ts ignore
 * import { ZmqTransport } from "./zmq.ts";
 * const transport = new ZmqTransport({
 *   sendSpec: "tcp://127.0.0.1:9997",
 *   recvSpec: "tcp://127.0.0.1:9996",
 * });
 * for await (const message of transport.messages()) console.log(message.length);
 * ```
 */
export class ZmqTransport implements Transport {
  readonly #pull: zmq.Pull;
  readonly #peers: ReplyPeer[];
  readonly #onError: (error: Error) => void;
  readonly #onStatus: (message: string) => void;
  readonly #waitingTimer: ReturnType<typeof setTimeout>;
  #receiving = true;

  /**
   * Connects the sockets. Connection is asynchronous: ZeroMQ retries until
   * mongrel2 is up, and reconnects after it restarts.
   *
   * @param options Endpoints and tuning.
   * @throws {TypeError} On an invalid, missing or repeated endpoint.
   */
  constructor(options: ZmqTransportOptions) {
    const sendSpecs = endpointList("send spec", options.sendSpec);
    const recvSpecs = endpointList("recv spec", options.recvSpec);
    this.#onError = options.onError ?? (() => {});
    this.#onStatus = options.onStatus ?? (() => {});
    const joinDelayMs = options.joinDelayMs ?? 200;
    const maxHeld = options.maxHeldReplies ?? 10_000;
    this.#peers = recvSpecs.map((spec) =>
      new ReplyPeer(spec, joinDelayMs, maxHeld, this.#onError, this.#onStatus)
    );
    // Only documented options: a constructor that throws crashes Deno later.
    this.#pull = new zmq.Pull({ linger: 0 });
    for (const spec of sendSpecs) this.#pull.connect(spec);
    this.#waitingTimer = setTimeout(() => {
      const waiting = this.#peers.filter((peer) => !peer.ready);
      if (waiting.length === 0) return;
      this.#onStatus(
        `Waiting for mongrel2 to subscribe at ${
          waiting.map((peer) => peer.endpoint).join(", ")
        } (${
          this.#peers.length - waiting.length
        } of ${this.#peers.length} joined); replies for ${
          waiting.length === 1 ? "it" : "them"
        } are held until then`,
      );
    }, options.waitingNoticeMs ?? 1000);
    Deno.unrefTimer(this.#waitingTimer as unknown as number);
  }

  /** Whether every configured mongrel2 is subscribed and replies flow. */
  get ready(): boolean {
    return this.#peers.every((peer) => peer.ready);
  }

  /** Messages from mongrel2, until {@linkcode stopReceiving} or {@linkcode close}. */
  async *messages(): AsyncIterable<Uint8Array> {
    while (this.#receiving) {
      let frames: Uint8Array[];
      try {
        frames = await this.#pull.receive();
      } catch (error) {
        if (!this.#receiving || this.#pull.closed) return;
        this.#onError(error as Error);
        continue;
      }
      for (const frame of frames) yield frame;
    }
  }

  /**
   * Queues a reply for every `recv_spec`; see {@linkcode Transport.send}.
   * Each mongrel2 keeps only the replies that start with its `recv_ident`.
   */
  send(message: Uint8Array): void {
    for (const peer of this.#peers) peer.send(message);
  }

  /** Replies queued and not yet handed to ZeroMQ (the longest queue). */
  get queuedReplies(): number {
    return Math.max(0, ...this.#peers.map((peer) => peer.queued));
  }

  /** Stops receiving; see {@linkcode Transport.stopReceiving}. */
  stopReceiving(): Promise<void> {
    this.#receiving = false;
    if (!this.#pull.closed) this.#pull.close();
    return Promise.resolve();
  }

  /** Flushes queued replies (to each mongrel2 that listens) and closes. */
  async close(): Promise<void> {
    await this.stopReceiving();
    clearTimeout(this.#waitingTimer);
    const deadline = Date.now() + 2000;
    while (
      this.#peers.some((peer) => peer.queued > 0 && peer.ready) &&
      Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    for (const peer of this.#peers) peer.close();
    // A closed PUB socket still writes what it holds (linger), but only
    // while the process lives: m2fetch exits right after, and Deno's exit
    // does not wait for ZeroMQ. Without this pause the last replies of a
    // shutdown under load were lost now and then (tests/lifecycle).
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function endpointList(
  name: string,
  specs: string | readonly string[],
): string[] {
  const list = typeof specs === "string" ? [specs] : [...specs];
  if (list.length === 0) {
    throw new TypeError(`Cannot connect to mongrel2: no ${name} given`);
  }
  for (const spec of list) checkEndpoint(name, spec);
  const repeated = list.find((spec, index) => list.indexOf(spec) !== index);
  if (repeated !== undefined) {
    throw new TypeError(
      `Cannot use ${name} "${repeated}" twice: give each mongrel2 endpoint once`,
    );
  }
  return list;
}

/**
 * One PUB socket connected to one mongrel2's `recv_spec`, with the replies
 * held until that mongrel2's subscription has arrived.
 */
class ReplyPeer {
  readonly endpoint: string;
  readonly #pub: zmq.Publisher;
  readonly #joinDelayMs: number;
  readonly #maxHeld: number;
  readonly #onError: (error: Error) => void;
  readonly #onStatus: (message: string) => void;
  #queue: Uint8Array[] = [];
  #head = 0;
  #draining = false;
  #connections = 0;
  #joinTimer: ReturnType<typeof setTimeout> | undefined;
  #ready = false;
  #joinedBefore = false;
  #dropped = 0;
  #wakeSender: (() => void) | null = null;
  #closed = false;

  constructor(
    endpoint: string,
    joinDelayMs: number,
    maxHeld: number,
    onError: (error: Error) => void,
    onStatus: (message: string) => void,
  ) {
    this.endpoint = endpoint;
    this.#joinDelayMs = joinDelayMs;
    this.#maxHeld = maxHeld;
    this.#onError = onError;
    this.#onStatus = onStatus;
    this.#pub = new zmq.Publisher({ sendHighWaterMark: 0, linger: 2000 });
    this.#watch();
    this.#pub.connect(endpoint);
  }

  /**
   * Follows the socket's connection events. zeromq's own `events.on()`
   * reads them in a loop whose rejection nobody catches, and closing the
   * socket can reject that read ("Socket operation on non-socket"): an
   * unhandled rejection that ends the process. This loop catches it.
   */
  async #watch(): Promise<void> {
    const events = this.#pub.events;
    while (!this.#closed && !events.closed) {
      let event: zmq.Event;
      try {
        event = await events.receive();
      } catch (error) {
        if (this.#closed || events.closed) return;
        this.#onError(error as Error);
        return;
      }
      if (event.type === "handshake") this.#joined();
      else if (event.type === "disconnect") this.#left();
      else if (event.type === "end") return;
    }
  }

  get ready(): boolean {
    return this.#ready;
  }

  get queued(): number {
    return this.#queue.length - this.#head;
  }

  #joined(): void {
    this.#connections++;
    clearTimeout(this.#joinTimer);
    this.#joinTimer = setTimeout(() => {
      if (this.#connections === 0 || this.#closed) return;
      this.#ready = true;
      if (this.#joinedBefore || this.#dropped > 0) {
        this.#onStatus(
          `mongrel2 at ${this.endpoint} subscribed again; sending its replies${
            this.#dropped > 0
              ? ` (dropped the ${this.#dropped} oldest held while it was away)`
              : ""
          }`,
        );
      }
      this.#joinedBefore = true;
      this.#dropped = 0;
      this.#wakeSender?.();
    }, this.#joinDelayMs);
  }

  #left(): void {
    this.#connections = Math.max(0, this.#connections - 1);
    if (this.#connections > 0) return;
    clearTimeout(this.#joinTimer);
    if (this.#ready && !this.#closed) {
      this.#onStatus(
        `mongrel2 at ${this.endpoint} went away; holding replies for it until it subscribes again`,
      );
    }
    this.#ready = false;
  }

  send(message: Uint8Array): void {
    if (this.#closed) return;
    this.#queue.push(message);
    if (!this.#ready && this.queued > this.#maxHeld) {
      this.#queue[this.#head++] = EMPTY;
      this.#dropped++;
      this.#compact();
    }
    if (!this.#draining) this.#drain();
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#head < this.#queue.length) {
        if (!this.#ready) {
          await new Promise<void>((resolve) => this.#wakeSender = resolve);
          this.#wakeSender = null;
          if (this.#closed && !this.#ready) break;
          continue;
        }
        const message = this.#queue[this.#head];
        this.#queue[this.#head++] = EMPTY;
        this.#compact();
        try {
          await this.#pub.send(message);
        } catch (error) {
          this.#onError(error as Error);
        }
      }
    } finally {
      this.#draining = false;
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#joinTimer);
    this.#wakeSender?.();
    this.#pub.close();
  }
}

const EMPTY = new Uint8Array(0);
