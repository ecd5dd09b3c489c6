/**
 * Runs the handler module in Web Workers while the main thread keeps the
 * ZeroMQ sockets and every connection's state. The pool is itself a Fetch
 * handler for the server: it sends each request to the worker that holds
 * its connection, so every request of one connection meets the same
 * module instance.
 *
 * Web Workers rather than processes: request and response bodies cross as
 * transferred streams (no copies, back-pressure kept), and a worker that
 * crashes or hangs can be terminated and replaced without touching the
 * sockets or the other workers' requests.
 *
 * @module
 */

import { mongrel2Info, type Mongrel2RequestInfo } from "../info.ts";
import {
  type FetchHandler,
  loadedWithin,
  UnrepresentableRequestError,
  withFactsHandler,
} from "../handler.ts";
import { firstHeader } from "../protocol/message.ts";
import type { Logger } from "../log.ts";
import type { SocketControl } from "../websocket/socket.ts";
import {
  type Handshake,
  handshakeOf,
  upgradeResponse,
} from "../websocket/upgrade.ts";
import {
  type Completions,
  type FromWorker,
  MAX_FRAME_BYTES_BEHIND,
  MAX_FRAMES_BEHIND,
  SMALL_BODY_BYTES,
  type ToWorker,
} from "./messages.ts";
import { OPCODE, parseFlags } from "../websocket/frame.ts";
import { settleBody } from "../http/ready_body.ts";
import { MessageBatcher } from "./batch.ts";
import { checkDescriptorsFor } from "./descriptors.ts";
import { REQUEST_FINISHED } from "../abort_reasons.ts";

/**
 * Logged when a worker is replaced for answering no ping: terminating it
 * does not stop a thread stuck in a loop that never yields, in Deno 2.9.
 */
const HUNG_THREAD_WARNING =
  "A worker that answers no ping may still be running: Deno cannot stop a thread stuck in a loop that never yields (https://github.com/denoland/deno/pull/35657), and such a thread keeps a CPU busy until m2fetch exits. Restart m2fetch when convenient: SIGTERM finishes the requests in flight, and mongrel2 holds new ones until it is back";

function checkWorkerCount(action: string, workers: number): void {
  if (!Number.isInteger(workers) || workers < 1) {
    throw new RangeError(
      `Cannot ${action} ${workers} workers: expected a whole number of at least 1`,
    );
  }
}

/** An error described by a worker, with its stack, on this thread. */
function revive(described: { message: string; stack?: string }): Error {
  const error = new Error(described.message);
  error.stack = described.stack ?? described.message;
  return error;
}

/** Options for {@linkcode WorkerPool.start}. */
export interface WorkerPoolOptions {
  /** The handler module: a path (relative to the working directory) or URL. */
  module: string;
  /** How many workers. */
  workers: number;
  /** Where to log crashes, restarts and stray rejections. */
  logger: Logger;
  /** A worker that answers no ping for this long is replaced (ms, default 10 000). */
  unresponsiveTimeout?: number;
  /** The handler's `Deno.args` (default none). */
  args?: readonly string[];
}

/** What a worker needs of a request besides mongrel2's facts. */
interface WorkerCall {
  /** Behind the worker's `request.signal`. */
  signal: AbortSignal;
  /** The body, as the server has it (a stream, or bytes in the message). */
  body: ReadableStream<Uint8Array> | Uint8Array | null;
  /** Settles when the response is out (the worker's `info.completed`). */
  completed: Promise<void>;
  /** The handshake mark, for a WebSocket handshake. */
  handshake: Handshake | undefined;
}

interface Pending {
  resolve: (response: Response) => void;
  reject: (error: unknown) => void;
  responded: boolean;
  handshake: Handshake | undefined;
}

const BAD_GATEWAY = new TextEncoder().encode("Bad Gateway");

/** What every worker runs first, which loads the handler module. */
const WORKER_MAIN = new URL("./worker_main.ts", import.meta.url);

/**
 * Refuses to start workers that could not load {@linkcode WORKER_MAIN}:
 * without read access to it, each worker would die with Deno's
 * permission error, reported as the handler module failing to load.
 * (A terminal may grant it at the prompt.)
 *
 * @throws {WorkerLoadError} When read access to it is not granted.
 */
function checkWorkerMainReadable(): void {
  if (WORKER_MAIN.protocol !== "file:") return;
  const state = Deno.permissions.requestSync({
    name: "read",
    path: WORKER_MAIN,
  }).state;
  if (state === "granted") return;
  const path = decodeURIComponent(WORKER_MAIN.pathname);
  const runtime = decodeURIComponent(new URL("..", WORKER_MAIN).pathname);
  throw new WorkerLoadError(
    `Cannot start handler workers: they run m2fetch's ${path}, which this process may not read (grant read access to m2fetch's runtime/ directory, e.g. --allow-read=${
      runtime.replace(/\/$/, "")
    }, or run with --workers 0)`,
  );
}

/**
 * Longest a worker waits to hear that a response ended when no request
 * comes to carry the news (`info.completed` settles this much later at
 * worst).
 */
const COMPLETIONS_FLUSH_MS = 10;

/** A worker failed to load the handler module. */
export class WorkerLoadError extends Error {
  /**
   * Creates the error.
   *
   * @param message What failed and why.
   */
  constructor(message: string) {
    super(message);
    this.name = "WorkerLoadError";
  }
}

class HandlerWorker {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  /** Response bodies still streaming from this worker. */
  readonly bodies = new Set<ReadableStreamDefaultController<Uint8Array>>();
  lastPong = performance.now();
  dead = false;
  /** The handler module has loaded: requests may go to this worker. */
  loaded = false;
  #nextId = 1;
  #completions: Completions = [];
  readonly #outbox = new MessageBatcher<ToWorker>(
    (messages, transfer) => {
      if (!this.dead) this.worker.postMessage(messages, transfer);
    },
    (message, error) => {
      this.#logger.error(
        `Cannot pass a ${message.type} message to a handler worker`,
        error,
      );
      if (message.type === "request") this.#fail(message.id, error);
    },
  );
  #completionsTimer: ReturnType<typeof setTimeout> | undefined;
  /** Client frames posted to the worker and not yet taken by its sockets. */
  #framesBehind = 0;
  /** Their payload bytes. */
  #frameBytesBehind = 0;
  /** Settles once a worker that fell too far behind has caught up. */
  #caughtUp: PromiseWithResolvers<void> | undefined;
  readonly #module: string;
  #ready: Promise<string>;
  #stopLoading: (message: string) => void;
  #onDeath: (worker: HandlerWorker, why: string, error?: Error) => void;
  #logger: Logger;

  constructor(
    moduleUrl: string,
    args: readonly string[],
    logger: Logger,
    onDeath: (worker: HandlerWorker, why: string, error?: Error) => void,
  ) {
    this.#module = moduleUrl;
    this.#logger = logger;
    this.#onDeath = onDeath;
    this.worker = new Worker(WORKER_MAIN, { type: "module" });
    let settleReady!: {
      resolve: (s: string) => void;
      reject: (e: Error) => void;
    };
    this.#stopLoading = (message) =>
      settleReady.reject(new WorkerLoadError(message));
    this.#ready = new Promise((resolve, reject) =>
      settleReady = { resolve, reject }
    );
    this.#ready.catch(() => {});
    this.worker.onmessage = (event: MessageEvent<FromWorker[]>) => {
      for (const message of event.data) {
        switch (message.type) {
          case "ready":
            this.loaded = true;
            settleReady.resolve(message.source);
            break;
          case "load-error":
            this.#stopLoading(message.message);
            break;
          case "response":
            this.#respond(message.id, message);
            break;
          case "error":
            this.#fail(
              message.id,
              message.unrepresentable
                ? new UnrepresentableRequestError(message.message)
                : revive(message),
            );
            break;
          case "pong":
            this.lastPong = performance.now();
            break;
          case "ws-cancelled":
            this.send({ type: "ws-lost", id: message.id });
            break;
          case "ws-taken":
            this.#framesTaken(message.frames, message.bytes);
            break;
          case "exit":
            this.#onDeath(this, `called Deno.exit(${message.code})`);
            break;
          case "crash":
            this.#onDeath(
              this,
              `threw an uncaught error (${message.message})`,
              revive(message),
            );
            break;
          case "log":
            if (message.level === "error") this.#logger.error(message.message);
            else this.#logger.warn(message.message);
            break;
        }
      }
    };
    this.worker.onerror = (event: ErrorEvent) => {
      // Not preventing it would take the whole process down.
      event.preventDefault();
      this.#onDeath(
        this,
        `threw an uncaught error (${event.message.replace(/^Uncaught /, "")})`,
      );
    };
    this.send({ type: "load", module: moduleUrl, args });
  }

  ready(): Promise<string> {
    return this.#ready;
  }

  send(message: ToWorker, transfer: Transferable[] = []): void {
    if (!this.dead) this.#outbox.add(message, transfer);
  }

  /** Asks for a sign of life. */
  ping(): void {
    this.send({ type: "ping" });
  }

  /** Rejects a request that has not been answered yet with `error`. */
  #fail(id: number, error: unknown): void {
    const pending = this.pending.get(id);
    if (pending === undefined || pending.responded) return;
    pending.responded = true;
    pending.reject(error);
  }

  #respond(
    id: number,
    message: Extract<FromWorker, { type: "response" }>,
  ): void {
    const pending = this.pending.get(id);
    if (pending === undefined || pending.responded) {
      if (message.body instanceof ReadableStream) message.body.cancel();
      return;
    }
    pending.responded = true;
    const { bodyError } = message;
    const body = bodyError !== undefined
      ? new ReadableStream<Uint8Array>({
        start: (controller) => controller.error(revive(bodyError)),
      })
      : message.body instanceof ReadableStream
      ? this.#follow(message.body)
      : message.body;
    try {
      if (message.upgrade && pending.handshake !== undefined) {
        // The handler's 101 as it returned it: the server then sends its
        // head with the socket's frames, as for a handler on this thread.
        const control = this.#socketProxy(
          id,
          body as ReadableStream<Uint8Array>,
        );
        pending.resolve(
          upgradeResponse(pending.handshake, control, message.headers),
        );
        return;
      }
      pending.resolve(
        new Response(body, {
          status: message.status,
          statusText: message.statusText,
          headers: message.headers,
        }),
      );
    } catch (error) {
      pending.reject(error);
    }
  }

  /**
   * The main thread's side of a socket living in this worker: the server
   * writes its frames and hands it the client's; the socket itself runs
   * in the worker.
   */
  #socketProxy(id: number, frames: ReadableStream<Uint8Array>): SocketControl {
    // The client's close frame ends the closing handshake whoever began it
    // (the socket in the worker answers one it did not start).
    let clientClosed = false;
    return {
      frames,
      attach: () => this.send({ type: "ws-attach", id }),
      receive: (flags, payload) => {
        try {
          if (parseFlags(flags).opcode === OPCODE.close) clientClosed = true;
        } catch {
          // Malformed: the socket in the worker fails it with 1002.
        }
        // A view into the whole ZeroMQ message: copy just the payload.
        const copy = payload.slice();
        this.send({ type: "ws-frame", id, flags, payload: copy }, [
          copy.buffer,
        ]);
        return this.#frameSent(copy.byteLength);
      },
      goAway: () => this.send({ type: "ws-go-away", id }),
      idleRoute: () => null,
      closedCleanly: () => clientClosed,
      queue: () => {
        throw new TypeError(
          "Cannot queue a frame on the main thread for a socket that lives in a worker",
        );
      },
    };
  }

  /**
   * Counts a client frame posted to the worker.
   *
   * @returns A promise, settled once the worker has caught up half-way (or
   * died), while it is too far behind.
   */
  #frameSent(bytes: number): Promise<void> | undefined {
    if (this.dead) return undefined;
    this.#framesBehind++;
    this.#frameBytesBehind += bytes;
    if (
      this.#framesBehind > MAX_FRAMES_BEHIND ||
      this.#frameBytesBehind > MAX_FRAME_BYTES_BEHIND
    ) {
      this.#caughtUp ??= Promise.withResolvers();
    }
    return this.#caughtUp?.promise;
  }

  /** The worker handed `frames` client frames to its sockets. */
  #framesTaken(frames: number, bytes: number): void {
    this.#framesBehind -= frames;
    this.#frameBytesBehind -= bytes;
    if (
      this.#framesBehind <= MAX_FRAMES_BEHIND / 2 &&
      this.#frameBytesBehind <= MAX_FRAME_BYTES_BEHIND / 2
    ) {
      this.#caughtUp?.resolve();
      this.#caughtUp = undefined;
    }
  }

  /**
   * Wraps a body transferred from the worker: if the worker dies, a
   * transferred stream just stops, so the wrapper errors it instead.
   */
  #follow(source: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const reader = source.getReader();
    let own: ReadableStreamDefaultController<Uint8Array>;
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        own = controller;
        this.bodies.add(controller);
      },
      pull: async (controller) => {
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (error) {
          // A body the handler's stream failed: no longer streaming.
          this.bodies.delete(own);
          throw error;
        }
        if (next.done) {
          this.bodies.delete(own);
          controller.close();
        } else {
          controller.enqueue(next.value);
        }
      },
      cancel: (reason) => {
        this.bodies.delete(own);
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }

  fetch(source: Mongrel2RequestInfo, call: WorkerCall): Promise<Response> {
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<Response>();
    const { signal, handshake } = call;
    this.pending.set(id, { resolve, reject, responded: false, handshake });
    // The abort and completion messages go after the request message,
    // which may wait a few microtasks while a small body is read.
    const posted = this.#post(id, source, call.body, handshake?.acceptKey)
      .catch(
        (error) => {
          this.pending.delete(id);
          reject(error);
        },
      );
    const onAbort = async () => {
      const reason = signal.reason;
      // The request is over: the worker learns it with the completion.
      if (reason === REQUEST_FINISHED) return;
      await posted;
      this.send({
        type: "abort",
        id,
        reason: reason instanceof Error ? reason.message : String(reason),
        // The worker's signal says why, like the main thread's: a
        // TimeoutError for --timeout, an AbortError for a client that left.
        name: reason instanceof Error ? reason.name : undefined,
      });
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const finish = async (ok: boolean) => {
      signal.removeEventListener("abort", onAbort);
      this.pending.delete(id);
      await posted;
      this.#complete(ok ? id : -id);
    };
    call.completed.then(() => finish(true), () => finish(false));
    return promise;
  }

  #complete(completion: number): void {
    // A request failed by close() or a death settles after terminate():
    // nobody is left to tell.
    if (this.dead) return;
    this.#completions.push(completion);
    if (this.#completionsTimer !== undefined) return;
    const timer = setTimeout(() => {
      this.#completionsTimer = undefined;
      if (this.#completions.length === 0) return;
      this.send({ type: "completed", completed: this.#takeCompletions() });
    }, COMPLETIONS_FLUSH_MS);
    Deno.unrefTimer(timer);
    this.#completionsTimer = timer;
  }

  #takeCompletions(): Completions {
    const taken = this.#completions;
    this.#completions = [];
    return taken;
  }

  async #post(
    id: number,
    source: Mongrel2RequestInfo,
    requestBody: WorkerCall["body"],
    handshake: string | undefined,
  ): Promise<void> {
    let body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null;
    if (requestBody instanceof Uint8Array) {
      // A view into the whole ZeroMQ message: copy just the body. Empty
      // bytes still go: the worker then builds the empty body stream that
      // every method but GET and HEAD has, as on this thread.
      body = requestBody.slice();
    } else {
      const length = Number(
        firstHeader(source.headers, "content-length") ?? NaN,
      );
      body = requestBody !== null && length <= SMALL_BODY_BYTES
        ? await settleBody(requestBody, SMALL_BODY_BYTES)
        : requestBody;
    }
    this.send({
      type: "request",
      id,
      source,
      body,
      handshake,
      completed: this.#takeCompletions(),
    }, body instanceof ReadableStream ? [body] : []);
  }

  /**
   * Fails every request this worker held: 502 if it had not answered, a
   * failed body if its response was still streaming.
   *
   * @param why What happened to the worker, completing "a worker that …".
   * @returns How many responses were cut: each counts once, though a
   * streaming one is both held and streaming.
   */
  failPending(why: string): number {
    let cut = 0;
    for (const pending of this.pending.values()) {
      if (pending.responded) continue;
      pending.responded = true;
      cut++;
      this.#logger.warn(
        `Answered 502 for a request held by a worker that ${why}`,
      );
      pending.resolve(new Response(BAD_GATEWAY, { status: 502 }));
    }
    this.pending.clear();
    for (const body of this.bodies) {
      cut++;
      body.error(new Error(`The worker streaming this response ${why}`));
    }
    this.bodies.clear();
    return cut;
  }

  /**
   * Stops the worker; whoever waits for its module learns why (a no-op
   * once loaded).
   *
   * @param why What ended it, completing "it …": "called Deno.exit(3)".
   */
  terminate(why = "was stopped"): void {
    this.dead = true;
    clearTimeout(this.#completionsTimer);
    this.#caughtUp?.resolve();
    this.#stopLoading(
      `Cannot load handler module ${this.#module}: it ${why} while loading`,
    );
    this.worker.terminate();
  }
}

/**
 * A fixed number of handler workers with supervision: a worker that
 * crashes or stops answering pings is replaced with backoff, and only the
 * requests it held fail (502).
 *
 * @example Usage
 * ```ts
 * import { WorkerPool } from "./pool.ts";
 * import { handlerCall } from "../handler.ts";
 * import { createLogger } from "../log.ts";
 * const pool = await WorkerPool.start({ module: "examples/hello.ts", workers: 2, logger: createLogger() });
 * // Settled once the response is out, as the server does.
 * const completed = Promise.withResolvers<void>();
 * // A request as the server builds it, with its mongrel2 facts.
 * const { request, info } = handlerCall({
 *   connectionId: "1", sender: "s", pattern: "/", path: "/",
 *   headers: { METHOD: "GET", URI: "/", host: "localhost", REMOTE_ADDR: "127.0.0.1" },
 * }, {
 *   signal: new AbortController().signal, body: null,
 *   completed: completed.promise, acceptKey: undefined,
 * });
 * const response = await pool.fetch(request, info);
 * console.log(await response.text()); // Hello from m2fetch
 * completed.resolve();
 * await pool.close();
 * ```
 */
export class WorkerPool {
  #module: string;
  readonly #args: readonly string[];
  readonly #logger: Logger;
  readonly #unresponsiveTimeout: number;
  readonly #slots: HandlerWorker[] = [];
  readonly #retired = new Set<HandlerWorker>();
  #backoff = 100;
  #stableTimer: ReturnType<typeof setTimeout> | undefined;
  /** Replacements waiting out their backoff: a closed pool starts none. */
  readonly #replacements = new Set<ReturnType<typeof setTimeout>>();
  /** Ends the waits of retiring workers' drains: a closed pool keeps no timer. */
  readonly #drainWaits = new Set<() => void>();
  #heartbeat: ReturnType<typeof setInterval>;
  /** Until every first worker has loaded: one that dies loading fails the start. */
  #starting = true;
  #closed = false;

  private constructor(options: WorkerPoolOptions) {
    this.#module = options.module;
    this.#args = options.args ?? [];
    this.#logger = options.logger;
    this.#unresponsiveTimeout = options.unresponsiveTimeout ?? 10_000;
    this.#heartbeat = setInterval(
      () => this.#checkHealth(),
      Math.max(50, Math.min(1000, this.#unresponsiveTimeout / 4)),
    );
    Deno.unrefTimer(this.#heartbeat as unknown as number);
  }

  /**
   * Starts the workers and waits until each has loaded the module.
   *
   * @param options Module, count, logger.
   * @returns The running pool.
   * @throws {WorkerLoadError} When the module fails to load (a start-up error, not a restart loop).
   */
  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    checkWorkerCount("start", options.workers);
    checkWorkerMainReadable();
    const pool = new WorkerPool(options);
    try {
      checkDescriptorsFor(options.workers, WORKER_MAIN);
      for (let i = 0; i < options.workers; i++) pool.#slots.push(pool.#spawn());
      await Promise.all(pool.#slots.map((worker) => worker.ready()));
      pool.#starting = false;
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  #spawn(module = this.#module): HandlerWorker {
    const moduleUrl = new URL(module, `file://${Deno.cwd()}/`).href;
    return new HandlerWorker(
      moduleUrl,
      this.#args,
      this.#logger,
      (worker, why, error) => this.#died(worker, why, error),
    );
  }

  #died(worker: HandlerWorker, why: string, error?: Error): void {
    if (worker.dead) return;
    worker.terminate(why);
    worker.failPending(why);
    this.#retired.delete(worker);
    // Not in a slot: retired, or new in a reload. (After close(), those
    // in the slots are dead, and ended above.)
    const slot = this.#slots.indexOf(worker);
    // One that dies loading at start fails the start: nothing to replace.
    if (slot < 0 || (this.#starting && !worker.loaded)) return;
    const delay = this.#nextBackoff();
    this.#logger.error(
      `Handler worker ${slot} ${why}; replacing it in ${delay} ms`,
      error,
    );
    clearTimeout(this.#stableTimer);
    // A replacement that stays up for a while resets the backoff.
    this.#stableTimer = setTimeout(() => this.#backoff = 100, 30_000);
    Deno.unrefTimer(this.#stableTimer as unknown as number);
    this.#replaceLater(slot, worker, delay);
  }

  /** The wait before the next replacement, doubling it up to 10 s. */
  #nextBackoff(): number {
    const delay = this.#backoff;
    this.#backoff = Math.min(10_000, this.#backoff * 2);
    return delay;
  }

  /** Puts a new worker in the dead one's slot after `delay` ms. */
  #replaceLater(slot: number, dead: HandlerWorker, delay: number): void {
    const timer = setTimeout(() => {
      this.#replacements.delete(timer);
      // A reload meanwhile has put a fresh worker in the slot already. (A
      // closed pool has cleared this timer.)
      if (this.#slots[slot] !== dead) return;
      let replacement: HandlerWorker;
      try {
        // Started without the descriptors it needs, a worker would take
        // the whole process down: the others keep serving meanwhile.
        checkDescriptorsFor(1, WORKER_MAIN);
        replacement = this.#spawn();
      } catch (error) {
        const retry = this.#nextBackoff();
        this.#logger.error(
          `Cannot replace handler worker ${slot}: ${
            (error as Error).message
          }; trying again in ${retry} ms`,
        );
        this.#replaceLater(slot, dead, retry);
        return;
      }
      this.#slots[slot] = replacement;
      replacement.ready().then(
        () => this.#logger.info(`Handler worker ${slot} replaced`),
        (error) => this.#died(replacement, `failed to load: ${error.message}`),
      );
    }, delay);
    this.#replacements.add(timer);
  }

  #checkHealth(): void {
    const now = performance.now();
    for (const worker of [...this.#slots, ...this.#retired]) {
      if (worker.dead) continue;
      if (now - worker.lastPong > this.#unresponsiveTimeout) {
        this.#died(
          worker,
          `answered no ping for ${this.#unresponsiveTimeout} ms`,
        );
        this.#logger.warn(HUNG_THREAD_WARNING);
        continue;
      }
      worker.ping();
    }
  }

  /**
   * The pool as a Fetch handler: sends the request to its connection's worker.
   * The server calls the facts handler attached to it instead
   * ({@linkcode withFactsHandler}), and builds no `Request` on this thread.
   *
   * @param request A request carrying mongrel2 facts (`handlerCall()`).
   * @param info Client address and completion.
   * @returns The worker's response.
   * @throws {TypeError} For a request without mongrel2 facts (`mongrel2Info()`),
   * which the worker rebuilds it from.
   */
  fetch: FetchHandler = withFactsHandler(
    (request, info) => {
      const source = mongrel2Info(request);
      if (source === undefined) {
        throw new TypeError(
          "Cannot pass the request to a handler worker: it has no mongrel2 facts (mongrel2Info()), which the worker rebuilds it from",
        );
      }
      return this.#dispatch(source, {
        signal: request.signal,
        body: request.body,
        completed: info.completed,
        handshake: handshakeOf(request),
      });
    },
    (source, init, handshake) =>
      this.#dispatch(source, {
        signal: init.signal,
        body: init.body,
        completed: init.completed,
        handshake,
      }),
  );

  #dispatch(
    source: Mongrel2RequestInfo,
    call: WorkerCall,
  ): Response | Promise<Response> {
    let worker = this.#slots[Number(source.connectionId) % this.#slots.length];
    if (worker.dead || !worker.loaded) {
      // Its worker crashed and its replacement is not up yet: another takes
      // the request (nothing of this connection lives in the dead one).
      worker = this.#slots.find((other) => !other.dead && other.loaded) ??
        worker;
    }
    if (worker.dead) {
      return new Response(BAD_GATEWAY, { status: 502 });
    }
    if (!worker.loaded) {
      // Every worker is starting: wait for this one's module.
      const starting = worker;
      return starting.ready().then(
        () => starting.fetch(source, call),
        () => new Response(BAD_GATEWAY, { status: 502 }),
      );
    }
    return worker.fetch(source, call);
  }

  /**
   * Replaces the workers with workers that load the module afresh: all of
   * them must load before any old one stops taking requests (so a module
   * that fails leaves only the old code serving), and each old one then
   * finishes what it holds (up to `drainMs`).
   *
   * @param drainMs How long an old worker may take to finish its requests.
   * @param changes A new module path or worker count, from a re-read
   * configuration, and how long the new module may take to load.
   * @throws {WorkerLoadError} When the new module fails to load; the old workers keep serving.
   * @throws {Error} When it has not loaded within `loadTimeoutMs`
   * (default `RELOAD_LOAD_TIMEOUT_MS` in handler.ts, 30 s).
   */
  async reload(
    drainMs = 30_000,
    changes: { module?: string; workers?: number; loadTimeoutMs?: number } = {},
  ): Promise<void> {
    const workers = changes.workers ?? this.#slots.length;
    checkWorkerCount("reload with", workers);
    const module = changes.module ?? this.#module;
    // The old workers run until the new ones have loaded: both at once
    // need their descriptors.
    checkDescriptorsFor(workers, WORKER_MAIN);
    const fresh = Array.from({ length: workers }, () => this.#spawn(module));
    try {
      await loadedWithin(
        Promise.all(fresh.map((worker) => worker.ready())),
        changes.loadTimeoutMs,
      );
      // One that loaded and then died while the others loaded would take
      // a slot dead, with nothing to replace it; a pool closed meanwhile
      // must not get live workers back.
      if (this.#closed) throw new WorkerLoadError("The pool was closed");
      if (fresh.some((worker) => worker.dead)) {
        throw new WorkerLoadError(
          "A new worker died right after loading the module",
        );
      }
    } catch (error) {
      for (const worker of fresh) worker.terminate();
      throw error;
    }
    this.#module = module;
    // Their load may have taken longer than the ping limit: the clock
    // starts now.
    const now = performance.now();
    for (const worker of fresh) worker.lastPong = now;
    const old = this.#slots.splice(0, this.#slots.length, ...fresh);
    for (const worker of old) this.#retire(worker, drainMs);
  }

  async #retire(worker: HandlerWorker, drainMs: number): Promise<void> {
    this.#retired.add(worker);
    // Its sockets would never finish on their own: they close with 1001
    // (going away) and their clients reconnect to the new code.
    worker.send({ type: "ws-go-away" });
    const started = performance.now();
    const deadline = started + drainMs;
    // Responses still streaming count, sockets among them: a socket's
    // request is complete once its 101 is out.
    while (
      (worker.pending.size > 0 || worker.bodies.size > 0) &&
      performance.now() < deadline && !worker.dead
    ) {
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#drainWaits.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, 20);
        this.#drainWaits.add(wake);
      });
    }
    this.#retired.delete(worker);
    if (worker.dead) return;
    // A response still streaming had its answer; it is cut all the same.
    const cut = worker.failPending(
      "was retired by a reload before its response was complete",
    );
    worker.terminate();
    this.#logger[cut > 0 ? "warn" : "info"](
      `A worker running the old code stopped after ${
        Math.round(performance.now() - started)
      } ms${cut > 0 ? `, cutting ${cut} response(s) still in flight` : ""}`,
    );
  }

  /** Terminates every worker. */
  close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#stableTimer);
    for (const timer of this.#replacements) clearTimeout(timer);
    this.#replacements.clear();
    for (const worker of [...this.#slots, ...this.#retired]) {
      worker.failPending("was stopped");
      worker.terminate();
    }
    // Their workers are dead: each drain ends on waking.
    for (const wake of [...this.#drainWaits]) wake();
    return Promise.resolve();
  }
}
