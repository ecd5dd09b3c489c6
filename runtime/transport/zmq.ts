/**
 * The ZeroMQ transport: m2fetch's end of mongrel2's handler sockets, a PULL
 * connected to its `send_spec` and a PUB connected to its `recv_spec`,
 * speaking ZMTP (see `zmtp.ts`) over Deno's own sockets. No native library
 * and no thread of its own: the bytes are read and written on the
 * JavaScript thread by the runtime's event loop, so a request wakes no
 * other thread on its way in or out.
 *
 * Several mongrel2 servers can share one m2fetch: the PULL socket connects
 * to every `send_spec` (requests are fair-queued), and one XPUB socket per
 * `recv_spec` publishes every reply. Each server's Handler has its own
 * `send_ident` and `recv_ident = send_ident`, so a server subscribes only to
 * replies that start with its own ident: the others' replies never reach it.
 *
 * Each subscription is read as it arrives, so a reply is published only
 * once the mongrel2 it is meant for listens (no "slow joiner" guesswork),
 * and is held while that mongrel2 is away. Like libzmq, the transport
 * reconnects on its own when mongrel2 restarts.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import type { Transport } from "./transport.ts";
import { Fifo } from "../fifo.ts";
import { bytesAt, encodeByteString } from "../protocol/bytes.ts";
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
  type ZmtpSocketType,
} from "./zmtp.ts";

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
   * Called with a line worth a warning: once when a `recv_spec` is still
   * unsubscribed after `stillWaitingMs` (default 10 000), as something is
   * likely wrong (mongrel2 not running, another spec, a socket m2fetch may
   * not write to); and when a mongrel2 is dropped for taking no replies
   * (`stalledReplyMs`).
   */
  onWarning?: (message: string) => void;
  /** See {@linkcode ZmqTransportOptions.onWarning}. */
  stillWaitingMs?: number;
  /**
   * How long a subscribed mongrel2 may take none of the replies written to
   * it before m2fetch takes it for hung (stopped, or deadlocked) and drops
   * the connection as if it had left: `onPeerLeft` cuts its clients' requests
   * and the replies waiting for it are freed, so memory stays bounded; m2fetch
   * then connects again (ms). Default 30 000.
   */
  stalledReplyMs?: number;
}

const ENDPOINT = /^(tcp|ipc):\/\/.+/;

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
 * @throws {TypeError} When the endpoint is not `tcp://HOST:PORT` or `ipc://PATH`.
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
      `Cannot use ${name} "${spec}": expected tcp://HOST:PORT or ipc://PATH${
        spec.startsWith("inproc://")
          ? " (inproc:// reaches only sockets in the same process, and mongrel2 runs in its own)"
          : ""
      }`,
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

/** How long to wait before connecting again (libzmq's `ZMQ_RECONNECT_IVL`). */
const RECONNECT_MS = 100;
/** How long to wait before connecting again after a protocol error. */
const RECONNECT_AFTER_ERROR_MS = 1000;
/** How long mongrel2 has to answer the greeting and handshake. */
const HANDSHAKE_TIMEOUT_MS = 5000;
/** Once receiving stops, how long a quiet link is read before it closes. */
const FINAL_DRAIN_IDLE_MS = 20;
/** Most messages taken from a link once receiving stops. */
const FINAL_DRAIN_MESSAGES = 1024;
/** Most messages taken before the replies they caused are sent. */
const BATCH_MESSAGES = 64;
/**
 * Messages (and bytes) taken from mongrel2 but not yet from
 * {@linkcode ZmqTransport.messages}, beyond which the links stop reading,
 * as libzmq's receive high-water mark (1,000 messages) did.
 */
const INBOX_MESSAGES = 1000;
const INBOX_BYTES = 16 * 1024 * 1024;
/** How long `close()` waits for a mongrel2 to take the last replies (libzmq's linger). */
const LINGER_MS = 2000;

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
  readonly #links: RequestLink[];
  readonly #peers: ReplyPeer[];
  readonly #onError: (error: Error) => void;
  readonly #onStatus: (message: string) => void;
  readonly #waitingTimer: ReturnType<typeof setTimeout>;
  readonly #stillWaitingTimer: ReturnType<typeof setTimeout>;
  /** Messages taken from mongrel2 and not yet yielded. */
  readonly #inbox = new Fifo<Uint8Array>();
  #inboxBytes = 0;
  /** Wakes `messages()` when the inbox gets a message or a link stops. */
  #wakeReader: (() => void) | undefined;
  /** Wakes the links when the inbox has room again. */
  #room: PromiseWithResolvers<void> | undefined;
  /** Messages yielded since the last flush of the outbox. */
  #batch = 0;
  #outbox: Uint8Array[] = [];
  #flushScheduled = false;
  /** Settles when the receive loop has ended (at once if none runs). */
  #loopEnded: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #peerLeft: ((idents: readonly string[]) => void) | undefined;

  /**
   * Starts connecting. Connection is asynchronous: the transport retries
   * until mongrel2 is up, and reconnects after it restarts.
   *
   * @param options Endpoints and tuning.
   * @throws {TypeError} On an invalid, missing or repeated endpoint.
   * @throws {Deno.errors.NotCapable} When m2fetch may not reach an endpoint
   * (`--allow-net=unix:PATH`, `--allow-read` and `--allow-write` for an
   * `ipc://` path; `--allow-net=HOST:PORT` for a `tcp://` address).
   */
  constructor(options: ZmqTransportOptions) {
    const sendSpecs = endpointList("send spec", options.sendSpec);
    const recvSpecs = endpointList("recv spec", options.recvSpec);
    for (const spec of [...sendSpecs, ...recvSpecs]) checkPermission(spec);
    this.#onError = options.onError ?? (() => {});
    this.#onStatus = options.onStatus ?? (() => {});
    const maxHeld = options.maxHeldReplies ?? 10_000;
    this.#peers = recvSpecs.map((spec) =>
      new ReplyPeer(
        spec,
        maxHeld,
        options.stalledReplyMs ?? 30_000,
        this.#onError,
        options.onWarning ?? (() => {}),
        this.#onStatus,
        (idents) => this.#peerLeft?.(idents),
      )
    );
    this.#links = sendSpecs.map((spec) =>
      new RequestLink(spec, this.#onError, {
        deliver: (message) => this.#deliver(message),
        room: () => this.#waitForRoom(),
        stopped: () => this.#wakeReader?.(),
      })
    );
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
            peer.lastError === "" ? "" : ` (connecting: ${peer.lastError})`
          }${ipcSocketHint(peer.endpoint)}`,
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

  #deliver(message: Uint8Array): void {
    this.#inbox.push(message);
    this.#inboxBytes += message.length;
    this.#wakeReader?.();
  }

  /** Null while the inbox has room; otherwise settles once it has. */
  #waitForRoom(): Promise<void> | null {
    if (
      this.#inbox.length < INBOX_MESSAGES && this.#inboxBytes < INBOX_BYTES
    ) {
      return null;
    }
    this.#room ??= Promise.withResolvers<void>();
    return this.#room.promise;
  }

  /**
   * Messages from mongrel2, until {@linkcode stopReceiving} or
   * {@linkcode close}. Every message that has arrived is taken in one go
   * before the replies it caused are sent.
   */
  async *messages(): AsyncIterable<Uint8Array> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#loopEnded = promise;
    try {
      while (true) {
        if (this.#inbox.length === 0) {
          this.#flush();
          if (this.#links.every((link) => link.stopped)) return;
          const woken = Promise.withResolvers<void>();
          this.#wakeReader = woken.resolve;
          await woken.promise;
          this.#wakeReader = undefined;
          continue;
        }
        if (this.#batch >= BATCH_MESSAGES) this.#flush();
        const message = this.#inbox.shift();
        this.#inboxBytes -= message.length;
        if (
          this.#room !== undefined && this.#inbox.length < INBOX_MESSAGES / 2 &&
          this.#inboxBytes < INBOX_BYTES / 2
        ) {
          this.#room.resolve();
          this.#room = undefined;
        }
        this.#batch++;
        yield message;
      }
    } finally {
      this.#flush();
      resolve();
    }
  }

  /**
   * Queues a reply for every `recv_spec`; see {@linkcode Transport.send}.
   * Each mongrel2 gets only the replies that start with its `recv_ident`.
   *
   * Replies go out together: those made while a batch of requests is
   * being handled when the batch ends, others (from workers, streams and
   * sockets) once the event loop has run the callbacks that are ready;
   * each mongrel2 gets them in one write.
   */
  send(message: Uint8Array): void {
    this.#outbox.push(message);
    // Also within a batch: the batch's end sends them first, unless the
    // consumer stops taking messages mid-batch (the server waiting for a
    // worker to catch up), when nothing else would.
    if (!this.#flushScheduled) {
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
    for (const peer of this.#peers) {
      for (const message of outbox) peer.send(message);
      peer.write();
    }
  }

  /** Replies held for a mongrel2 that is not subscribed (the longest queue). */
  get queuedReplies(): number {
    return Math.max(0, ...this.#peers.map((peer) => peer.queued));
  }

  /**
   * Stops receiving; see {@linkcode Transport.stopReceiving}. What mongrel2
   * has already written to m2fetch's sockets is still read and yielded;
   * resolves once every link has been quiet for a moment and is closed,
   * and the messages taken from them have been yielded.
   */
  stopReceiving(): Promise<void> {
    return this.#stopping ??= this.#stopReceiving();
  }

  async #stopReceiving(): Promise<void> {
    this.#room?.resolve();
    await Promise.all(this.#links.map((link) => link.stop()));
    this.#wakeReader?.();
    await this.#loopEnded;
  }

  /**
   * Sends queued replies (to each mongrel2 that listens), closes the
   * sockets, and resolves once the replies are written (or after two
   * seconds for a mongrel2 that does not read).
   */
  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    await this.stopReceiving();
    clearTimeout(this.#waitingTimer);
    clearTimeout(this.#stillWaitingTimer);
    this.#sendOutbox();
    await Promise.all(this.#peers.map((peer) => peer.close()));
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

/** Where a checked endpoint leads. */
type Address =
  | { transport: "unix"; path: string }
  | { transport: "tcp"; hostname: string; port: number };

function addressOf(endpoint: string): Address {
  if (endpoint.startsWith("ipc://")) {
    return { transport: "unix", path: endpoint.slice("ipc://".length) };
  }
  const hostPort = endpoint.slice("tcp://".length);
  const colon = hostPort.lastIndexOf(":");
  const host = hostPort.slice(0, colon);
  return {
    transport: "tcp",
    hostname: host.startsWith("[") ? host.slice(1, -1) : host,
    port: Number(hostPort.slice(colon + 1)),
  };
}

/**
 * A tcp address as Deno's net permissions spell it: an IPv6 address in
 * brackets (`[::1]:9997`; Deno cannot parse `::1:9997`).
 */
function hostPort(address: { hostname: string; port: number }): string {
  const host = address.hostname.includes(":")
    ? `[${address.hostname}]`
    : address.hostname;
  return `${host}:${address.port}`;
}

/**
 * Refuses, up front, an endpoint the process may not connect to, rather
 * than failing on every reconnection.
 */
function checkPermission(endpoint: string): void {
  const address = addressOf(endpoint);
  const needed: [Deno.PermissionDescriptor, string][] =
    address.transport === "unix"
      ? [
        [
          { name: "net", host: `unix:${address.path}` },
          `--allow-net=unix:${address.path}`,
        ],
        [{ name: "read", path: address.path }, `--allow-read=${address.path}`],
        [
          { name: "write", path: address.path },
          `--allow-write=${address.path}`,
        ],
      ]
      : [[
        { name: "net", host: hostPort(address) },
        `--allow-net=${hostPort(address)}`,
      ]];
  const missing = needed.filter(([descriptor]) =>
    Deno.permissions.querySync(descriptor).state !== "granted"
  ).map(([, flag]) => flag);
  if (missing.length > 0) {
    throw new Deno.errors.NotCapable(
      `Cannot connect to ${endpoint}: m2fetch needs ${missing.join(" and ")}`,
    );
  }
}

/**
 * Connects to an endpoint. A TCP connect to a host that drops the SYN
 * takes minutes to fail, so closing the transport aborts it (connecting to
 * a unix socket never waits).
 */
async function dial(endpoint: string, signal: AbortSignal): Promise<Deno.Conn> {
  const address = addressOf(endpoint);
  if (address.transport === "unix") return await Deno.connect(address);
  const conn = await Deno.connect({ ...address, signal });
  conn.setNoDelay(true);
  return conn;
}

/** One ZMTP connection, after its handshake. */
interface Link {
  conn: Deno.Conn;
  decoder: ZmtpDecoder;
}

/**
 * Connects to `endpoint` and completes the ZMTP handshake as `ours`,
 * checking that the peer is one of `theirs`. `connected` gets the
 * connection before the handshake, so that closing can cut it short.
 */
async function openLink(
  endpoint: string,
  ours: ZmtpSocketType,
  theirs: readonly string[],
  connected: (conn: Deno.Conn) => void,
  signal: AbortSignal,
): Promise<Link> {
  const conn = await dial(endpoint, signal);
  connected(conn);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, HANDSHAKE_TIMEOUT_MS);
  try {
    // Our READY goes only after the peer's: a libzmq socket that finds our
    // type incompatible hangs up at once, before its own READY would have
    // told us what it is.
    await writeAll(conn, greeting());
    const decoder = new ZmtpDecoder();
    while (true) {
      const frame = decoder.next();
      if (frame === null) {
        const count = await conn.read(decoder.space());
        if (count === null) {
          throw new ZmtpError(
            "The peer closed the connection before the ZMTP handshake ended",
          );
        }
        decoder.commit(count);
        continue;
      }
      if (!frame.command) {
        throw new ZmtpError("The peer sent a message before its handshake");
      }
      const { name, data } = parseCommand(frame.body);
      if (name === "ERROR") {
        throw new ZmtpError(
          `The peer refused the handshake: ${
            new TextDecoder().decode(data.subarray(1, 1 + data[0]))
          }`,
        );
      }
      if (name !== "READY") continue;
      const type = (readyProperties(data).get("socket-type") ?? "")
        .toUpperCase();
      if (!theirs.includes(type)) {
        throw new ZmtpError(
          `The socket at ${endpoint} is a ${
            type || "untyped"
          } socket, where mongrel2's ${
            ours === "PULL" ? "send_spec is a PUSH" : "recv_spec is a SUB"
          }: ${
            type === "PUSH" || type === "SUB"
              ? "--send-spec and --recv-spec look swapped"
              : "is this mongrel2's handler endpoint?"
          }`,
        );
      }
      await writeAll(conn, readyCommand(ours));
      return { conn, decoder };
    }
  } catch (error) {
    if (timedOut) {
      throw new ZmtpError(
        `The peer did not complete the ZMTP handshake within ${
          HANDSHAKE_TIMEOUT_MS / 1000
        } s`,
      );
    }
    try {
      conn.close();
    } catch { /* already closed by a stop */ }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

async function writeAll(
  conn: Deno.Conn,
  bytes: Uint8Array,
  onProgress?: (unwritten: number) => void,
): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await conn.write(bytes.subarray(written));
    onProgress?.(bytes.length - written);
  }
}

/** A ZMTP 3.1 heartbeat: answered with its context, as libzmq does. */
function pongFor(frame: ZmtpFrame): Uint8Array | null {
  if (!frame.command) return null;
  const { name, data } = parseCommand(frame.body);
  return name === "PING" ? commandFrame("PONG", data.subarray(2)) : null;
}

/** Why a connection attempt failed, unless it is the usual "not up yet". */
function connectProblem(error: unknown): string {
  if (
    error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.ConnectionRefused
  ) {
    return "";
  }
  return (error as Error).message;
}

/**
 * How long to wait before connecting again after `error`: a peer that broke
 * the protocol will likely do so again, and each time is logged.
 */
function reconnectDelayAfter(error: unknown): number {
  return error instanceof ZmtpError ? RECONNECT_AFTER_ERROR_MS : RECONNECT_MS;
}

/**
 * The wait before a link connects again, which keeps the process alive
 * (nothing else may be pending while mongrel2 is down) and which closing
 * cuts short.
 */
class RetryWait {
  #cancel: (() => void) | undefined;

  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.cancel(), ms);
      this.#cancel = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  cancel(): void {
    const cancel = this.#cancel;
    this.#cancel = undefined;
    cancel?.();
  }
}

/**
 * Connects one link to its endpoint, again after each loss, as libzmq
 * reconnects: waits between attempts (longer after a protocol error), hands
 * every failure to `report`, and gives up at once when the link ends, when
 * a connect, handshake or wait under way is cut short.
 */
class Dialer {
  readonly #endpoint: string;
  readonly #ours: ZmtpSocketType;
  readonly #theirs: readonly string[];
  readonly #report: (error: unknown) => void;
  /** The connection while its handshake is under way. */
  #connecting: Deno.Conn | null = null;
  readonly #retry = new RetryWait();
  readonly #ending = new AbortController();

  constructor(
    endpoint: string,
    ours: ZmtpSocketType,
    theirs: readonly string[],
    report: (error: unknown) => void,
  ) {
    this.#endpoint = endpoint;
    this.#ours = ours;
    this.#theirs = theirs;
    this.#report = report;
  }

  /** Whether {@linkcode Dialer.end} was called. */
  get ended(): boolean {
    return this.#ending.signal.aborted;
  }

  /** The next link, after as many attempts as it takes; null once ended. */
  async connect(): Promise<Link | null> {
    while (!this.ended) {
      try {
        return await openLink(
          this.#endpoint,
          this.#ours,
          this.#theirs,
          (conn) => {
            if (this.ended) conn.close();
            else this.#connecting = conn;
          },
          this.#ending.signal,
        );
      } catch (error) {
        if (this.ended) break;
        this.#report(error);
        await this.pause(reconnectDelayAfter(error));
      } finally {
        this.#connecting = null;
      }
    }
    return null;
  }

  /** The wait before connecting again; none once ended. */
  async pause(ms: number): Promise<void> {
    if (!this.ended) await this.#retry.wait(ms);
  }

  /** Stops connecting; a handshake under way has taken nothing yet. */
  end(): void {
    this.#ending.abort();
    this.#retry.cancel();
    try {
      this.#connecting?.close();
    } catch { /* already closed */ }
  }
}

/** What a {@linkcode RequestLink} hands its transport. */
interface Inbox {
  deliver(message: Uint8Array): void;
  /** Null while there is room for more; otherwise settles once there is. */
  room(): Promise<void> | null;
  /** The link has stopped for good. */
  stopped(): void;
}

/**
 * m2fetch's PULL end of one mongrel2's `send_spec`: reads requests and
 * notices into the transport's inbox, reconnecting while the transport
 * receives.
 */
class RequestLink {
  readonly endpoint: string;
  readonly #onError: (error: Error) => void;
  readonly #inbox: Inbox;
  #conn: Deno.Conn | null = null;
  readonly #dialer: Dialer;
  #stopped = false;
  /** Reads completed, so that stop() cuts only a read that found nothing. */
  #reads = 0;
  /** The problem last reported, until a link carries a message again. */
  #reported = "";
  readonly #done: Promise<void>;

  constructor(endpoint: string, onError: (error: Error) => void, inbox: Inbox) {
    this.endpoint = endpoint;
    this.#onError = onError;
    this.#inbox = inbox;
    this.#dialer = new Dialer(
      endpoint,
      "PULL",
      ["PUSH"],
      (error) => this.#report(error),
    );
    this.#done = this.#run();
  }

  /** Once stopping, the link drains what has arrived and reconnects no more. */
  get #stopping(): boolean {
    return this.#dialer.ended;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  async #run(): Promise<void> {
    try {
      let link: Link | null;
      while ((link = await this.#dialer.connect()) !== null) {
        await this.#dialer.pause(await this.#read(link));
      }
    } finally {
      this.#stopped = true;
      this.#inbox.stopped();
    }
  }

  #report(error: unknown): void {
    const problem = connectProblem(error);
    if (problem === "" || problem === this.#reported) return;
    this.#reported = problem;
    this.#onError(
      new Error(`Cannot take requests from ${this.endpoint}: ${problem}`),
    );
  }

  /**
   * Reads the link until it ends.
   *
   * @returns How long to wait before connecting again: longer after a peer
   * broke the protocol, which it will likely do again.
   */
  async #read({ conn, decoder }: Link): Promise<number> {
    this.#conn = conn;
    let drained = 0;
    let delivered = false;
    try {
      // Frames that came with the handshake's last read come first.
      while (true) {
        let frame: ZmtpFrame | null;
        while ((frame = decoder.next()) !== null) {
          if (frame.command) {
            const pong = pongFor(frame);
            if (pong !== null) await writeAll(conn, pong);
            continue;
          }
          this.#inbox.deliver(frame.body);
          if (!delivered) {
            // It works again: a problem it has later is news.
            delivered = true;
            this.#reported = "";
          }
          if (this.#stopping && ++drained >= FINAL_DRAIN_MESSAGES) {
            return RECONNECT_MS;
          }
        }
        const room = this.#stopping ? null : this.#inbox.room();
        if (room !== null) await room;
        const count = await this.#readSome(conn, decoder.space());
        this.#reads++;
        if (count === null) return RECONNECT_MS;
        decoder.commit(count);
      }
    } catch (error) {
      if (!this.#stopping) this.#report(error);
      return reconnectDelayAfter(error);
    } finally {
      this.#conn = null;
      try {
        conn.close();
      } catch { /* already closed by stop() */ }
    }
  }

  /** A read; once stopping, one that finds nothing for a moment ends the link. */
  #readSome(conn: Deno.Conn, space: Uint8Array): Promise<number | null> {
    if (!this.#stopping) return conn.read(space);
    return this.#quietRead(conn, space);
  }

  async #quietRead(
    conn: Deno.Conn,
    space: Uint8Array,
  ): Promise<number | null> {
    const timer = setTimeout(() => conn.close(), FINAL_DRAIN_IDLE_MS);
    try {
      return await conn.read(space);
    } catch {
      // Closed by the timer: nothing more came.
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Reads what mongrel2 has already written, then closes and stops
   * reconnecting.
   */
  async stop(): Promise<void> {
    if (!this.#stopping) {
      this.#dialer.end();
      // A read already waiting gets the same quiet period as later ones.
      const conn = this.#conn;
      const reads = this.#reads;
      if (conn !== null) {
        const timer = setTimeout(() => {
          if (this.#conn === conn && this.#reads === reads) conn.close();
        }, FINAL_DRAIN_IDLE_MS);
        this.#done.finally(() => clearTimeout(timer));
      }
    }
    await this.#done;
  }
}

/**
 * m2fetch's PUB end of one mongrel2's `recv_spec`, with the replies held
 * until that mongrel2's subscription has arrived, and published only to a
 * subscription they match (as a libzmq PUB filters).
 */
class ReplyPeer {
  readonly endpoint: string;
  readonly #maxHeld: number;
  readonly #onError: (error: Error) => void;
  readonly #onStatus: (message: string) => void;
  readonly #onLeave: (idents: string[]) => void;
  /** Subscribed prefixes (mongrel2's `recv_ident`), as byte strings and bytes. */
  readonly #topics = new Map<string, Uint8Array>();
  /** Replies held while nobody listens. */
  readonly #queue = new Fifo<Uint8Array>();
  /** Replies to write with the next write, framed as they are copied. */
  #pending: Uint8Array[] = [];
  /** Command frames (answers to heartbeats) for the next write. */
  #pendingCommands: Uint8Array[] = [];
  /** What the next write takes, frame headers included. */
  #pendingBytes = 0;
  #writing: Promise<void> | null = null;
  #conn: Deno.Conn | null = null;
  readonly #dialer: Dialer;
  #joinedBefore = false;
  #dropped = 0;
  readonly #done: Promise<void>;
  /** Writes completed, which the stall watch compares between its checks. */
  #writes = 0;
  /** What the write under way has yet to write. */
  #unwritten = 0;
  /** The stall watch closed the connection: its end is no news. */
  #dropping = false;
  readonly #stallWatch: ReturnType<typeof setInterval>;
  /**
   * The last connection problem, for the "still waiting" warning and to
   * report each only once, until mongrel2 subscribes again.
   */
  lastError = "";

  constructor(
    endpoint: string,
    maxHeld: number,
    stalledMs: number,
    onError: (error: Error) => void,
    onWarning: (message: string) => void,
    onStatus: (message: string) => void,
    onLeave: (idents: string[]) => void,
  ) {
    this.endpoint = endpoint;
    this.#maxHeld = maxHeld;
    this.#onError = onError;
    this.#onStatus = onStatus;
    this.#onLeave = onLeave;
    this.#dialer = new Dialer(
      endpoint,
      "PUB",
      ["SUB", "XSUB"],
      (error) => this.#report(error),
    );
    this.#done = this.#run();
    this.#stallWatch = this.#watchForStalls(stalledMs, onWarning);
  }

  /**
   * Checks, a few times per `stalledMs`, that a write under way progresses:
   * a mongrel2 that takes no reply for that long is dropped, so that what
   * waits for it does not grow without bound.
   */
  #watchForStalls(
    stalledMs: number,
    onWarning: (message: string) => void,
  ): ReturnType<typeof setInterval> {
    let seen = -1;
    let since = 0;
    const timer = setInterval(() => {
      const conn = this.#conn;
      if (this.#writing === null || conn === null) {
        seen = -1;
        return;
      }
      if (this.#writes !== seen) {
        seen = this.#writes;
        since = performance.now();
        return;
      }
      if (performance.now() - since < stalledMs) return;
      onWarning(
        `mongrel2 at ${this.endpoint} took none of the replies for ${
          stalledMs / 1000
        } s (${
          ((this.#unwritten + this.#pendingBytes) / 2 ** 20).toFixed(1)
        } MiB wait): taking it for hung and dropping the connection and its clients' requests`,
      );
      seen = -1;
      this.#dropping = true;
      try {
        conn.close();
      } catch { /* already closed */ }
    }, Math.max(10, stalledMs / 4));
    Deno.unrefTimer(timer as unknown as number);
    return timer;
  }

  get #closed(): boolean {
    return this.#dialer.ended;
  }

  get ready(): boolean {
    return this.#topics.size > 0;
  }

  get queued(): number {
    return this.#queue.length;
  }

  async #run(): Promise<void> {
    let link: Link | null;
    while ((link = await this.#dialer.connect()) !== null) {
      await this.#dialer.pause(await this.#follow(link));
    }
  }

  #report(error: unknown): void {
    const problem = connectProblem(error);
    if (problem !== "" && problem !== this.lastError) {
      this.#onError(
        new Error(`Cannot send replies to ${this.endpoint}: ${problem}`),
      );
    }
    this.lastError = problem;
  }

  /**
   * Applies mongrel2's (un)subscriptions until the connection ends.
   *
   * @returns How long to wait before connecting again.
   */
  async #follow({ conn, decoder }: Link): Promise<number> {
    this.#conn = conn;
    let delay = RECONNECT_MS;
    try {
      while (true) {
        let frame: ZmtpFrame | null;
        const wasReady = this.ready;
        const left: string[] = [];
        while ((frame = decoder.next()) !== null) {
          const pong = pongFor(frame);
          if (pong !== null) {
            this.#pendingCommands.push(pong);
            this.#pendingBytes += pong.length;
          }
          const change = subscriptionOf(frame);
          if (change === null) continue;
          if (change.subscribe) {
            this.#topics.set(change.topic, encodeByteString(change.topic));
          } else if (this.#topics.delete(change.topic)) {
            left.push(change.topic);
          }
        }
        // Reported even when it subscribed again within the same read (a
        // fast restart): its clients are gone either way.
        if (left.length > 0) this.#onLeave(left);
        if (this.ready && !wasReady) this.#joined();
        else if (!this.ready && wasReady) this.#left();
        this.write();
        const count = await conn.read(decoder.space());
        if (count === null) break;
        decoder.commit(count);
      }
    } catch (error) {
      delay = reconnectDelayAfter(error);
      if (error instanceof ZmtpError) {
        if (!this.#closed) this.#report(error);
      } else if (
        !this.#closed && !this.#dropping &&
        !(error instanceof Deno.errors.BadResource)
      ) {
        this.#onError(
          new Error(
            `Lost the connection to ${this.endpoint}: ${
              (error as Error).message
            }`,
          ),
        );
      }
    } finally {
      this.#conn = null;
      this.#dropping = false;
      try {
        conn.close();
      } catch { /* already closed */ }
    }
    // The mongrel2 is gone: so are its subscriptions and its clients.
    if (this.ready && !this.#closed) {
      const left = [...this.#topics.keys()];
      this.#topics.clear();
      this.#onLeave(left);
      this.#left();
    }
    return delay;
  }

  #joined(): void {
    this.lastError = "";
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
    while (this.queued > 0) this.#publish(this.#queue.shift());
  }

  #left(): void {
    // Replies held or not yet written were for the clients of the mongrel2
    // that left; a new one numbers its connections from 1 again, so they
    // must not reach it.
    const dropped = this.queued + this.#pending.length;
    this.#queue.clear();
    this.#pending = [];
    this.#pendingCommands = [];
    this.#pendingBytes = 0;
    if (this.#closed) return;
    this.#onStatus(
      `mongrel2 at ${this.endpoint} went away; holding new replies for it until it subscribes again${
        dropped > 0 ? ` (dropped ${dropped} for its gone clients)` : ""
      }`,
    );
  }

  /**
   * Queues a reply for the next {@linkcode ReplyPeer.write}, or holds it.
   * Replies are held only while nobody is subscribed: the subscription
   * that ends the wait publishes every held reply at once (`#joined()`).
   */
  send(message: Uint8Array): void {
    if (this.#closed) return;
    if (this.ready) {
      this.#publish(message);
      return;
    }
    this.#queue.push(message);
    if (this.queued > this.#maxHeld) {
      this.#queue.shift();
      this.#dropped++;
    }
  }

  /** Frames a reply for a subscription it matches; drops it otherwise. */
  #publish(message: Uint8Array): void {
    for (const topic of this.#topics.values()) {
      if (bytesAt(message, 0, topic)) {
        this.#pending.push(message);
        this.#pendingBytes += frameHeaderLength(message.length) +
          message.length;
        return;
      }
    }
  }

  /** Writes what is pending, in one write while none is under way. */
  write(): void {
    if (this.#writing === null && this.#pendingBytes > 0) {
      this.#writing = this.#writePending().finally(() => this.#writing = null);
    }
  }

  async #writePending(): Promise<void> {
    while (this.#pendingBytes > 0 && this.#conn !== null) {
      const conn = this.#conn;
      // One buffer, so that one write takes every reply.
      const bytes = new Uint8Array(this.#pendingBytes);
      let at = 0;
      for (const frame of this.#pendingCommands) {
        bytes.set(frame, at);
        at += frame.length;
      }
      for (const message of this.#pending) {
        at = writeFrameHeader(bytes, at, message.length);
        bytes.set(message, at);
        at += message.length;
      }
      this.#pending = [];
      this.#pendingCommands = [];
      this.#pendingBytes = 0;
      try {
        this.#unwritten = bytes.length;
        await writeAll(conn, bytes, this.#countWrite);
      } catch {
        // The reading side notices the connection ending and reports it.
        try {
          conn.close();
        } catch { /* already closed */ }
      }
    }
  }

  readonly #countWrite = (unwritten: number) => {
    this.#writes++;
    this.#unwritten = unwritten;
  };

  /** Writes what it holds (to a mongrel2 that listens), then closes. */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#stallWatch);
    this.write();
    const linger = Promise.withResolvers<void>();
    const timer = setTimeout(linger.resolve, LINGER_MS);
    await Promise.race([this.#writing ?? Promise.resolve(), linger.promise]);
    clearTimeout(timer);
    this.#dialer.end();
    try {
      this.#conn?.close();
    } catch { /* already closed */ }
    await this.#done;
  }
}
