/**
 * The ZeroMQ transport: a PULL socket connected to mongrel2's `send_spec`
 * and an XPUB socket connected to its `recv_spec`, over the system's libzmq
 * (see `libzmq.ts`).
 *
 * Several mongrel2 servers can share one m2fetch: the PULL socket connects
 * to every `send_spec` (requests are fair-queued), and one XPUB socket per
 * `recv_spec` publishes every reply. Each server's Handler has its own
 * `send_ident` and `recv_ident = send_ident`, so a server subscribes only to
 * replies that start with its own ident: the others' replies never reach it.
 *
 * An XPUB socket reports each subscription as it arrives, so a reply is
 * published only once the mongrel2 it is meant for listens (no "slow
 * joiner" guesswork), and is held while that mongrel2 is away.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { ZmqContext, type ZmqSocket } from "./libzmq.ts";
import type { Transport } from "./transport.ts";
import { Fifo } from "../fifo.ts";

export type { Transport } from "./transport.ts";

/** Where to reach mongrel2. */
export interface ZmqTransportOptions {
  /**
   * mongrel2's `send_spec`, or one per mongrel2 server (m2fetch connects
   * one PULL socket to all of them).
   */
  sendSpec: string | readonly string[];
  /**
   * mongrel2's `recv_spec`, or one per mongrel2 server (m2fetch connects a
   * XPUB socket to each).
   */
  recvSpec: string | readonly string[];
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
  /**
   * Called once when a `recv_spec` is still unsubscribed after
   * `stillWaitingMs` (default 10 000): something is likely wrong (mongrel2
   * not running, another spec, a socket m2fetch may not write to).
   */
  onWarning?: (message: string) => void;
  /** See {@linkcode ZmqTransportOptions.onWarning}. */
  stillWaitingMs?: number;
}

const ENDPOINT = /^(tcp|ipc|inproc):\/\/.+/;

/**
 * For an `ipc://` endpoint: what its socket file says about why nothing
 * connected (missing, or whose it is).
 */
function ipcSocketHint(endpoint: string): string {
  if (!endpoint.startsWith("ipc://")) return "";
  const path = endpoint.slice("ipc://".length);
  try {
    const info = Deno.statSync(path);
    // Whose the socket is, not whether m2fetch may write to it: knowing
    // its own uid would take --allow-sys, which m2fetch runs without.
    return ` (the socket ${path} is owned by uid ${info.uid}, gid ${info.gid}, mode ${
      ((info.mode ?? 0) & 0o777).toString(8)
    }: if m2fetch's user may not write to it, run mongrel2 and m2fetch as the same user or share a group; if it may, the file may be a stopped mongrel2's)`;
  } catch (error) {
    return error instanceof Deno.errors.NotFound
      ? ` (there is no socket file at ${path}: mongrel2 has not bound it)`
      : "";
  }
}

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
  if (spec.startsWith("tcp://")) {
    const port = /:(\d+)$/.exec(spec)?.[1];
    if (port === undefined) {
      throw new TypeError(
        `Cannot use ${name} "${spec}": a tcp endpoint needs a port`,
      );
    }
    if (Number(port) < 1 || Number(port) > 65535) {
      throw new TypeError(
        `Cannot use ${name} "${spec}": expected a port from 1 to 65535`,
      );
    }
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
  readonly #context: ZmqContext;
  readonly #pull: ZmqSocket;
  readonly #peers: ReplyPeer[];
  readonly #onError: (error: Error) => void;
  readonly #onStatus: (message: string) => void;
  readonly #waitingTimer: ReturnType<typeof setTimeout>;
  readonly #stillWaitingTimer: ReturnType<typeof setTimeout>;
  #receiving = true;
  /** Messages taken since the last flush of the outbox. */
  #batch = 0;
  #outbox: Uint8Array[] = [];
  #flushScheduled = false;
  /** Settles when the receive loop has ended (at once if none runs). */
  #loopEnded: Promise<void> = Promise.resolve();
  #closing: Promise<void> | null = null;
  #peerLeft: ((idents: readonly string[]) => void) | undefined;

  /**
   * Connects the sockets. Connection is asynchronous: ZeroMQ retries until
   * mongrel2 is up, and reconnects after it restarts.
   *
   * @param options Endpoints and tuning.
   * @throws {TypeError} On an invalid, missing or repeated endpoint.
   * @throws {Error} When libzmq cannot be loaded.
   */
  constructor(options: ZmqTransportOptions) {
    const sendSpecs = endpointList("send spec", options.sendSpec);
    const recvSpecs = endpointList("recv spec", options.recvSpec);
    this.#onError = options.onError ?? (() => {});
    this.#onStatus = options.onStatus ?? (() => {});
    const maxHeld = options.maxHeldReplies ?? 10_000;
    this.#context = new ZmqContext();
    this.#peers = recvSpecs.map((spec) =>
      new ReplyPeer(
        this.#context,
        spec,
        maxHeld,
        this.#onError,
        this.#onStatus,
        (idents) => this.#peerLeft?.(idents),
      )
    );
    this.#pull = this.#context.socket("pull", { linger: 0 });
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
    const onWarning = options.onWarning ?? (() => {});
    const stillWaitingMs = options.stillWaitingMs ?? 10_000;
    this.#stillWaitingTimer = setTimeout(() => {
      for (const peer of this.#peers) {
        if (peer.ready) continue;
        onWarning(
          `mongrel2 has not subscribed at ${peer.endpoint} after ${
            stillWaitingMs / 1000
          } s, so no reply can reach it: check that mongrel2 is running and that its Handler's recv_spec (not its send_spec: --send-spec and --recv-spec are easily swapped) is this endpoint${
            ipcSocketHint(peer.endpoint)
          }`,
        );
      }
    }, stillWaitingMs);
    Deno.unrefTimer(this.#stillWaitingTimer as unknown as number);
  }

  /** See {@linkcode Transport.onPeerLeft}. */
  onPeerLeft(listener: (idents: readonly string[]) => void): void {
    this.#peerLeft = listener;
  }

  /** Whether every configured mongrel2 is subscribed and replies flow. */
  get ready(): boolean {
    return this.#peers.every((peer) => peer.ready);
  }

  /**
   * Messages from mongrel2, until {@linkcode stopReceiving} or
   * {@linkcode close}. Every message that is ready is taken in one go; the
   * wait for more runs on a blocking thread.
   */
  async *messages(): AsyncIterable<Uint8Array> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#loopEnded = promise;
    try {
      while (this.#receiving) {
        let message: Uint8Array | null;
        try {
          // A mongrel2 that left is noticed before any request of the one
          // that replaced it is taken: those must not count as its.
          if (this.#batch === 0) {
            for (const peer of this.#peers) peer.follow();
          }
          message = this.#batch < BATCH_MESSAGES ? this.#pull.receive() : null;
          if (message === null) {
            this.#flush();
            await this.#pull.waitReadable(POLL_SLICE_MS);
            continue;
          }
        } catch (error) {
          this.#flush();
          if (!this.#receiving) return;
          this.#onError(error as Error);
          await new Promise((resolve) => setTimeout(resolve, 100));
          continue;
        }
        this.#batch++;
        yield message;
      }
      // Stopping: what mongrel2 has already pushed into the socket's queue
      // is taken too (it would be lost with the socket), up to a bound for
      // a mongrel2 that keeps pushing.
      for (let taken = 0; taken < FINAL_DRAIN_MESSAGES; taken++) {
        const message = this.#pull.receive();
        if (message === null) break;
        yield message;
      }
    } finally {
      this.#flush();
      resolve();
    }
  }

  /**
   * Queues a reply for every `recv_spec`; see {@linkcode Transport.send}.
   * Each mongrel2 keeps only the replies that start with its `recv_ident`.
   *
   * Replies go out together: those made while a batch of requests is
   * being handled when the batch ends, others (from workers, streams and
   * sockets) once the event loop has run the callbacks that are ready.
   * libzmq wakes its I/O thread (a system call, and often a context
   * switch) only for the first message of a burst.
   */
  send(message: Uint8Array): void {
    this.#outbox.push(message);
    if (this.#batch === 0 && !this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#scheduledFlush);
    }
  }

  readonly #scheduledFlush = () => {
    this.#flushScheduled = false;
    this.#sendOutbox();
  };

  #flush(): void {
    this.#batch = 0;
    this.#sendOutbox();
  }

  #sendOutbox(): void {
    const outbox = this.#outbox;
    if (outbox.length === 0) return;
    this.#outbox = [];
    for (const message of outbox) {
      for (const peer of this.#peers) peer.send(message);
    }
  }

  /** Replies queued and not yet handed to ZeroMQ (the longest queue). */
  get queuedReplies(): number {
    return Math.max(0, ...this.#peers.map((peer) => peer.queued));
  }

  /**
   * Stops receiving; see {@linkcode Transport.stopReceiving}. Resolves once
   * the messages already queued in the socket have been yielded (the loop
   * notices within one poll slice) and the socket is closed.
   */
  async stopReceiving(): Promise<void> {
    this.#receiving = false;
    await this.#loopEnded;
    this.#pull.close();
    await this.#pull.closed();
  }

  /**
   * Sends queued replies (to each mongrel2 that listens), closes the
   * sockets, and resolves once libzmq has written what it holds (or after
   * two seconds for a mongrel2 that does not read).
   */
  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    await this.stopReceiving();
    clearTimeout(this.#waitingTimer);
    clearTimeout(this.#stillWaitingTimer);
    this.#sendOutbox();
    for (const peer of this.#peers) peer.close();
    await this.#context.terminate();
  }
}

/** The longest wait on a blocking thread before the loop checks for stop. */
const POLL_SLICE_MS = 100;
/** Most messages taken from the queue once receiving stops. */
const FINAL_DRAIN_MESSAGES = 1024;
/** Most messages taken before the replies they caused are sent. */
const BATCH_MESSAGES = 64;

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
 * One XPUB socket connected to one mongrel2's `recv_spec`, with the replies
 * held until that mongrel2's subscription has arrived.
 */
class ReplyPeer {
  readonly endpoint: string;
  readonly #socket: ZmqSocket;
  readonly #maxHeld: number;
  readonly #onError: (error: Error) => void;
  readonly #onStatus: (message: string) => void;
  readonly #onLeave: (idents: string[]) => void;
  /** Subscribed prefixes (mongrel2's `recv_ident`), as latin1 keys. */
  readonly #topics = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #queue = new Fifo<Uint8Array>();
  #joinedBefore = false;
  #dropped = 0;
  #closed = false;

  constructor(
    context: ZmqContext,
    endpoint: string,
    maxHeld: number,
    onError: (error: Error) => void,
    onStatus: (message: string) => void,
    onLeave: (idents: string[]) => void,
  ) {
    this.endpoint = endpoint;
    this.#maxHeld = maxHeld;
    this.#onError = onError;
    this.#onStatus = onStatus;
    this.#onLeave = onLeave;
    // immediate: a mongrel2 that disconnects drops its pipe, so its
    // unsubscription is reported and replies are held, not queued blind.
    this.#socket = context.socket("xpub", {
      linger: 2000,
      sendHighWaterMark: 0,
      immediate: true,
    });
    this.#socket.connect(endpoint);
    this.#check();
  }

  /**
   * Subscriptions are read on the JavaScript thread (sends use the same
   * socket): often while nobody listens, so held replies go out soon after
   * mongrel2 subscribes, and rarely once it does, to notice it leaving.
   */
  #check(): void {
    this.follow();
    if (this.#closed) return;
    this.#timer = setTimeout(
      () => this.#check(),
      this.ready ? LEAVE_CHECK_MS : JOIN_CHECK_MS,
    );
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  get ready(): boolean {
    return this.#topics.size > 0;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Applies the (un)subscriptions that have arrived. */
  follow(): void {
    if (this.#closed) return;
    const wasReady = this.ready;
    const left: string[] = [];
    try {
      let message: Uint8Array | null;
      while ((message = this.#socket.receive()) !== null) {
        if (message.length === 0) continue;
        const topic = String.fromCharCode(...message.subarray(1));
        if (message[0] === 1) this.#topics.add(topic);
        else if (message[0] === 0 && this.#topics.delete(topic)) {
          left.push(topic);
        }
      }
    } catch (error) {
      this.#onError(error as Error);
      return;
    }
    // Reported even when it subscribed again within the same batch (a
    // fast restart): its clients are gone either way.
    if (left.length > 0) this.#onLeave(left);
    if (this.ready && !wasReady) this.#joined();
    else if (!this.ready && wasReady) this.#left();
  }

  #joined(): void {
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
    this.#flush();
  }

  #left(): void {
    // Replies already held were for the clients of the mongrel2 that left;
    // a new one numbers its connections from 1 again, so they must not
    // reach it.
    const dropped = this.queued;
    this.#queue.clear();
    this.#onStatus(
      `mongrel2 at ${this.endpoint} went away; holding new replies for it until it subscribes again${
        dropped > 0 ? ` (dropped ${dropped} for its gone clients)` : ""
      }`,
    );
  }

  send(message: Uint8Array): void {
    if (this.#closed) return;
    if (!this.ready) this.follow();
    if (this.ready && this.queued === 0) {
      this.#publish(message);
      return;
    }
    this.#queue.push(message);
    if (!this.ready && this.queued > this.#maxHeld) {
      this.#queue.shift();
      this.#dropped++;
    }
  }

  #publish(message: Uint8Array): void {
    try {
      // With no high-water mark an XPUB never refuses a message.
      this.#socket.send(message);
    } catch (error) {
      this.#onError(error as Error);
    }
  }

  #flush(): void {
    while (this.ready && this.queued > 0) this.#publish(this.#queue.shift());
  }

  close(): void {
    if (this.#closed) return;
    this.follow();
    this.#flush();
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#socket.close();
  }
}

/** How often a reply socket looks for its mongrel2's subscription. */
const JOIN_CHECK_MS = 5;
/** How often a subscribed reply socket looks for its mongrel2 leaving. */
const LEAVE_CHECK_MS = 100;
