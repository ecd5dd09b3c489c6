/**
 * The ZeroMQ transport: a PULL socket connected to mongrel2's `send_spec`
 * and a PUB socket connected to its `recv_spec`. This is the only module
 * that imports `npm:zeromq`.
 *
 * @module
 */

import * as zmq from "zeromq";
import type { Transport } from "./transport.ts";

/** Where to reach mongrel2. */
export interface ZmqTransportOptions {
  /** mongrel2's `send_spec` (m2fetch connects a PULL socket there). */
  sendSpec: string;
  /** mongrel2's `recv_spec` (m2fetch connects a PUB socket there). */
  recvSpec: string;
  /**
   * How long to hold replies after the PUB socket connects, so that
   * mongrel2's SUB subscription has reached it (the "slow joiner"): replies
   * published earlier would be dropped. Default 200 ms.
   */
  joinDelayMs?: number;
  /** Called for transport problems that are worth a log line. */
  onError?: (error: Error) => void;
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
 * Replies are queued in memory while no mongrel2 is subscribed (at start-up,
 * and while mongrel2 restarts), so none is published into the void.
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
  readonly #pub: zmq.Publisher;
  readonly #onError: (error: Error) => void;
  readonly #joinDelayMs: number;
  #queue: Uint8Array[] = [];
  #head = 0;
  #draining = false;
  #peers = 0;
  #joinTimer: ReturnType<typeof setTimeout> | undefined;
  #ready = false;
  #wakeSender: (() => void) | null = null;
  #closed = false;
  #receiving = true;

  /**
   * Connects both sockets. Connection is asynchronous: ZeroMQ retries until
   * mongrel2 is up, and reconnects after it restarts.
   *
   * @param options Endpoints and tuning.
   * @throws {TypeError} On an invalid endpoint.
   */
  constructor(options: ZmqTransportOptions) {
    checkEndpoint("send spec", options.sendSpec);
    checkEndpoint("recv spec", options.recvSpec);
    this.#onError = options.onError ?? (() => {});
    this.#joinDelayMs = options.joinDelayMs ?? 200;
    // Only documented options: a constructor that throws crashes Deno later.
    this.#pub = new zmq.Publisher({ sendHighWaterMark: 0, linger: 2000 });
    this.#pull = new zmq.Pull({ linger: 0 });
    this.#pub.events.on("handshake", () => this.#peerJoined());
    this.#pub.events.on("disconnect", () => this.#peerLeft());
    this.#pub.connect(options.recvSpec);
    this.#pull.connect(options.sendSpec);
  }

  /** Whether a mongrel2 is subscribed and replies flow. */
  get ready(): boolean {
    return this.#ready;
  }

  #peerJoined(): void {
    this.#peers++;
    clearTimeout(this.#joinTimer);
    this.#joinTimer = setTimeout(() => {
      this.#ready = this.#peers > 0;
      this.#wakeSender?.();
    }, this.#joinDelayMs);
  }

  #peerLeft(): void {
    this.#peers = Math.max(0, this.#peers - 1);
    if (this.#peers === 0) {
      clearTimeout(this.#joinTimer);
      this.#ready = false;
    }
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

  /** Queues a reply; see {@linkcode Transport.send}. */
  send(message: Uint8Array): void {
    if (this.#closed) return;
    this.#queue.push(message);
    if (!this.#draining) this.#drain();
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
        if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
          this.#queue = this.#queue.slice(this.#head);
          this.#head = 0;
        }
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

  /** Replies queued and not yet handed to ZeroMQ. */
  get queuedReplies(): number {
    return this.#queue.length - this.#head;
  }

  /** Stops receiving; see {@linkcode Transport.stopReceiving}. */
  stopReceiving(): Promise<void> {
    this.#receiving = false;
    if (!this.#pull.closed) this.#pull.close();
    return Promise.resolve();
  }

  /** Flushes queued replies (while mongrel2 listens) and closes. */
  async close(): Promise<void> {
    await this.stopReceiving();
    const deadline = Date.now() + 2000;
    while (this.queuedReplies > 0 && this.#ready && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    this.#closed = true;
    clearTimeout(this.#joinTimer);
    this.#wakeSender?.();
    this.#pub.close();
  }
}

const EMPTY = new Uint8Array(0);
