/**
 * A small binding to the system's libzmq (the library mongrel2 itself
 * uses) through Deno's FFI, for the tests' stand-ins for mongrel2's sockets
 * and m2fetch's: contexts and sockets with non-blocking send and receive,
 * and a wait for readability that runs on a blocking thread so the event
 * loop never stalls. m2fetch itself speaks ZMTP on its own
 * (`runtime/transport/zmtp.ts`); talking to real libzmq sockets here is
 * what shows that it speaks it right.
 *
 * libzmq sockets are not thread-safe. A socket is used by the JavaScript
 * thread, except while {@linkcode ZmqSocket.waitReadable} has it polled on
 * a blocking thread: during that wait the socket refuses every other call,
 * and a close is deferred until the wait returns.
 *
 * @module
 */

/** ZeroMQ socket types this binding creates. */
export type ZmqSocketType =
  | "pub"
  | "sub"
  | "xpub"
  | "pull"
  | "push"
  | "pair";

/** Socket options, set when the socket is created. */
export interface ZmqSocketOptions {
  /** How long unsent messages are kept after close, in ms (`ZMQ_LINGER`). */
  linger?: number;
  /** Most messages queued for sending per peer, 0 = no limit (`ZMQ_SNDHWM`). */
  sendHighWaterMark?: number;
  /** Most messages queued on receipt per peer, 0 = no limit (`ZMQ_RCVHWM`). */
  receiveHighWaterMark?: number;
  /**
   * Queue messages only for completed connections, and drop a peer's pipe
   * (and, on an `xpub`, report its unsubscription) when it disconnects
   * (`ZMQ_IMMEDIATE`).
   */
  immediate?: boolean;
}

/** A libzmq call failed. */
export class ZmqError extends Error {
  /** libzmq's errno for the failure. */
  readonly errno: number;

  /**
   * Creates the error, with a message that says what failed and libzmq's
   * description of why.
   *
   * @param action What m2fetch tried, as "Cannot ACTION".
   * @param errno The errno libzmq reported.
   */
  constructor(action: string, errno: number) {
    super(`Cannot ${action}: ${describeErrno(errno)}`);
    this.name = "ZmqError";
    this.errno = errno;
  }
}

const SYMBOLS = {
  zmq_ctx_new: { parameters: [], result: "pointer" },
  zmq_ctx_set: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  zmq_ctx_term: { parameters: ["pointer"], result: "i32", nonblocking: true },
  zmq_socket: { parameters: ["pointer", "i32"], result: "pointer" },
  zmq_close: { parameters: ["pointer"], result: "i32" },
  zmq_setsockopt: {
    parameters: ["pointer", "i32", "buffer", "usize"],
    result: "i32",
  },
  zmq_connect: { parameters: ["pointer", "buffer"], result: "i32" },
  zmq_bind: { parameters: ["pointer", "buffer"], result: "i32" },
  zmq_send: {
    parameters: ["pointer", "buffer", "usize", "i32"],
    result: "i32",
  },
  zmq_msg_init: { parameters: ["buffer"], result: "i32" },
  zmq_msg_recv: { parameters: ["buffer", "pointer", "i32"], result: "i32" },
  zmq_msg_data: { parameters: ["buffer"], result: "pointer" },
  zmq_msg_close: { parameters: ["buffer"], result: "i32" },
  zmq_poll: {
    parameters: ["buffer", "i32", "i64"],
    result: "i32",
    nonblocking: true,
  },
  zmq_errno: { parameters: [], result: "i32" },
  zmq_strerror: { parameters: ["i32"], result: "pointer" },
  zmq_version: { parameters: ["buffer", "buffer", "buffer"], result: "void" },
} as const;

type Library = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const SOCKET_TYPES: Record<ZmqSocketType, number> = {
  pair: 0,
  pub: 1,
  sub: 2,
  pull: 7,
  push: 8,
  xpub: 9,
};
const ZMQ_IO_THREADS = 1;
const ZMQ_SUBSCRIBE = 6;
const ZMQ_LINGER = 17;
const ZMQ_SNDHWM = 23;
const ZMQ_RCVHWM = 24;
const ZMQ_IMMEDIATE = 39;
const ZMQ_DONTWAIT = 1;
const ZMQ_POLLIN = 1;
const EINTR = 4;
const EAGAIN = Deno.build.os === "darwin" ? 35 : 11;
/** sizeof(zmq_msg_t) in libzmq 4.x. */
const MSG_BYTES = 64;
/** sizeof(zmq_pollitem_t) on 64-bit Unix: pointer, int fd, short, short. */
const POLLITEM_BYTES = 16;

let library: Library | undefined;

function lib(): Library {
  return library ??= openLibrary();
}

function openLibrary(): Library {
  try {
    return Deno.dlopen("libzmq.so.5", SYMBOLS).symbols;
  } catch (error) {
    throw new Error(
      `Cannot load libzmq.so.5, which the tests' stand-ins for mongrel2's sockets use (Debian: apt-get install libzmq5; mongrel2 depends on it): ${
        (error as Error).message
      }`,
    );
  }
}

function describeErrno(errno: number): string {
  const message = Deno.UnsafePointerView.getCString(
    lib().zmq_strerror(errno)!,
  );
  return `${message} (errno ${errno})`;
}

function check(result: number, action: string): number {
  if (result < 0) throw new ZmqError(action, lib().zmq_errno());
  return result;
}

const textEncoder = new TextEncoder();

function cString(text: string): Uint8Array {
  return textEncoder.encode(`${text}\0`);
}

function int32(value: number): Uint8Array {
  return new Uint8Array(new Int32Array([value]).buffer);
}

/**
 * The version of the libzmq that was loaded, e.g. `"4.3.4"`.
 *
 * @returns The version as MAJOR.MINOR.PATCH.
 * @throws {Error} When libzmq cannot be loaded.
 *
 * @example Usage
 * ```ts
 * import { zmqVersion } from "./libzmq.ts";
 * console.assert(/^\d+\.\d+\.\d+$/.test(zmqVersion()));
 * ```
 */
export function zmqVersion(): string {
  const parts = [new Int32Array(1), new Int32Array(1), new Int32Array(1)];
  lib().zmq_version(parts[0], parts[1], parts[2]);
  return parts.map((part) => part[0]).join(".");
}

/**
 * A ZeroMQ context: one I/O thread that moves the bytes of its sockets.
 *
 * @example Usage
 * ```ts
 * import { ZmqContext } from "./libzmq.ts";
 * const context = new ZmqContext();
 * const pull = context.socket("pull");
 * pull.bind("inproc://example");
 * const push = context.socket("push");
 * push.connect("inproc://example");
 * push.send(new TextEncoder().encode("hello"));
 * console.assert((await pull.receiveWithin(1000))?.length === 5);
 * // Closes both sockets, then waits for messages still queued to be sent
 * // (by default, for as long as that takes: see the linger option).
 * await context.terminate();
 * ```
 */
export class ZmqContext {
  readonly #pointer: Deno.PointerObject;
  readonly #sockets = new Set<ZmqSocket>();
  #terminated = false;

  /**
   * Creates the context.
   *
   * @throws {Error} When libzmq cannot be loaded.
   */
  constructor() {
    const pointer = lib().zmq_ctx_new();
    if (pointer === null) {
      throw new ZmqError("create a ZeroMQ context", lib().zmq_errno());
    }
    this.#pointer = pointer;
    check(
      lib().zmq_ctx_set(pointer, ZMQ_IO_THREADS, 1),
      "configure the ZeroMQ context",
    );
  }

  /**
   * Creates a socket in this context.
   *
   * @param type The socket type.
   * @param options Options applied before the socket is used.
   * @returns The socket.
   * @throws {ZmqError} When libzmq refuses.
   */
  socket(type: ZmqSocketType, options: ZmqSocketOptions = {}): ZmqSocket {
    if (this.#terminated) {
      throw new Error("Cannot create a socket: the ZeroMQ context is closed");
    }
    const pointer = lib().zmq_socket(this.#pointer, SOCKET_TYPES[type]);
    if (pointer === null) {
      throw new ZmqError(`create a ${type} socket`, lib().zmq_errno());
    }
    const socket = new ZmqSocket(
      pointer,
      type,
      () => this.#sockets.delete(socket),
    );
    this.#sockets.add(socket);
    if (options.linger !== undefined) {
      socket.setOption(ZMQ_LINGER, options.linger);
    }
    if (options.sendHighWaterMark !== undefined) {
      socket.setOption(ZMQ_SNDHWM, options.sendHighWaterMark);
    }
    if (options.receiveHighWaterMark !== undefined) {
      socket.setOption(ZMQ_RCVHWM, options.receiveHighWaterMark);
    }
    if (options.immediate !== undefined) {
      socket.setOption(ZMQ_IMMEDIATE, options.immediate ? 1 : 0);
    }
    return socket;
  }

  /**
   * Closes every socket still open and ends the context once their
   * messages are sent or their linger time is up, without blocking the
   * event loop.
   */
  async terminate(): Promise<void> {
    if (this.#terminated) return;
    this.#terminated = true;
    await Promise.all([...this.#sockets].map((socket) => socket.closed()));
    while (true) {
      const result = await lib().zmq_ctx_term(this.#pointer);
      if (result === 0) return;
      const errno = lib().zmq_errno();
      if (errno !== EINTR) throw new ZmqError("end the ZeroMQ context", errno);
    }
  }
}

/**
 * One ZeroMQ socket. Create it with {@linkcode ZmqContext.socket}.
 *
 * @example Usage
 * ```ts
 * import { ZmqContext } from "./libzmq.ts";
 * const context = new ZmqContext();
 * const pull = context.socket("pull");
 * pull.bind("inproc://example");
 * const message = await pull.receiveWithin(100);
 * console.assert(message === null); // nobody sent one
 * pull.close();
 * await context.terminate();
 * ```
 */
export class ZmqSocket {
  /** The socket type. */
  readonly type: ZmqSocketType;
  readonly #pointer: Deno.PointerObject;
  readonly #onClosed: () => void;
  // Explicit ArrayBuffers: their memory never moves, while V8 may keep a
  // small typed array's bytes in its heap and move them, and the poll item
  // is read by another thread while the JavaScript thread runs on.
  readonly #message = new Uint8Array(new ArrayBuffer(MSG_BYTES));
  readonly #pollItem = new Uint8Array(new ArrayBuffer(POLLITEM_BYTES));
  #waiting: Promise<boolean> | null = null;
  #closeRequested = false;
  #closed = false;
  #resolveClosed!: () => void;
  readonly #closedPromise = new Promise<void>((resolve) =>
    this.#resolveClosed = resolve
  );

  /** @internal Use {@linkcode ZmqContext.socket}. */
  constructor(
    pointer: Deno.PointerObject,
    type: ZmqSocketType,
    onClosed: () => void,
  ) {
    this.#pointer = pointer;
    this.type = type;
    this.#onClosed = onClosed;
    const item = new DataView(this.#pollItem.buffer);
    item.setBigUint64(0, Deno.UnsafePointer.value(pointer), true);
    item.setInt16(12, ZMQ_POLLIN, true);
  }

  /** Whether {@linkcode close} was called. */
  get isClosed(): boolean {
    return this.#closeRequested;
  }

  /** @internal Sets an integer option. */
  setOption(option: number, value: number): void {
    this.#usable("set a socket option");
    check(
      lib().zmq_setsockopt(this.#pointer, option, int32(value), 4n),
      `set option ${option} on a ${this.type} socket`,
    );
  }

  /**
   * Connects to an endpoint. ZeroMQ connects in the background and
   * reconnects after the peer restarts.
   *
   * @param endpoint `tcp://HOST:PORT`, `ipc://PATH` or `inproc://NAME`.
   * @throws {ZmqError} When the endpoint is invalid.
   */
  connect(endpoint: string): void {
    this.#usable("connect");
    check(
      lib().zmq_connect(this.#pointer, cString(endpoint)),
      `connect a ${this.type} socket to ${endpoint}`,
    );
  }

  /**
   * Binds to an endpoint.
   *
   * @param endpoint `tcp://HOST:PORT`, `ipc://PATH` or `inproc://NAME`.
   * @throws {ZmqError} When the endpoint is invalid or taken.
   */
  bind(endpoint: string): void {
    this.#usable("bind");
    check(
      lib().zmq_bind(this.#pointer, cString(endpoint)),
      `bind a ${this.type} socket to ${endpoint}`,
    );
  }

  /**
   * Subscribes a `sub` socket to messages that start with `prefix`.
   *
   * @param prefix The prefix; empty for every message.
   */
  subscribe(prefix: string | Uint8Array = ""): void {
    this.#usable("subscribe");
    const bytes = typeof prefix === "string"
      ? textEncoder.encode(prefix)
      : prefix;
    check(
      lib().zmq_setsockopt(
        this.#pointer,
        ZMQ_SUBSCRIBE,
        bytes,
        BigInt(bytes.length),
      ),
      `subscribe a ${this.type} socket`,
    );
  }

  /**
   * Queues a message without waiting: libzmq copies it and its I/O thread
   * sends it.
   *
   * @param message The bytes.
   * @returns `false` when the send queue is full (the high-water mark).
   * @throws {ZmqError} On any other failure.
   */
  send(message: Uint8Array): boolean {
    this.#usable("send");
    while (true) {
      const sent = lib().zmq_send(
        this.#pointer,
        message,
        BigInt(message.length),
        ZMQ_DONTWAIT,
      );
      if (sent >= 0) return true;
      const errno = lib().zmq_errno();
      if (errno === EAGAIN) return false;
      if (errno !== EINTR) {
        throw new ZmqError(`send on a ${this.type} socket`, errno);
      }
    }
  }

  /**
   * Takes the next message that has arrived, without waiting.
   *
   * @returns A copy of the message, or `null` when none is waiting.
   * @throws {ZmqError} On any failure other than "nothing to read".
   */
  receive(): Uint8Array | null {
    this.#usable("receive");
    const symbols = lib();
    const message = this.#message;
    symbols.zmq_msg_init(message);
    try {
      const size = symbols.zmq_msg_recv(message, this.#pointer, ZMQ_DONTWAIT);
      if (size < 0) {
        const errno = symbols.zmq_errno();
        if (errno === EAGAIN || errno === EINTR) return null;
        throw new ZmqError(`receive on a ${this.type} socket`, errno);
      }
      const bytes = new Uint8Array(size);
      if (size > 0) {
        Deno.UnsafePointerView.copyInto(symbols.zmq_msg_data(message)!, bytes);
      }
      return bytes;
    } finally {
      symbols.zmq_msg_close(message);
    }
  }

  /**
   * Waits until a message can be received, on a blocking thread. While
   * waiting, the socket refuses other calls; {@linkcode close} is deferred
   * until the wait returns.
   *
   * @param timeoutMs Longest wait (0 checks and returns at once).
   * @returns Whether a message is waiting (false on time-out or close).
   */
  waitReadable(timeoutMs: number): Promise<boolean> {
    this.#usable("wait on a socket");
    this.#waiting = this.#poll(timeoutMs);
    return this.#waiting;
  }

  async #poll(timeoutMs: number): Promise<boolean> {
    let ready: number;
    try {
      ready = await lib().zmq_poll(
        this.#pollItem,
        1,
        BigInt(Math.ceil(timeoutMs)),
      );
      if (ready < 0) {
        const errno = lib().zmq_errno();
        if (errno !== EINTR) {
          throw new ZmqError(`wait on a ${this.type} socket`, errno);
        }
      }
    } finally {
      this.#waiting = null;
      if (this.#closeRequested) this.#closeNow();
    }
    return ready > 0 && !this.#closeRequested;
  }

  /**
   * Waits up to `timeoutMs` for the next message.
   *
   * @param timeoutMs Longest wait.
   * @returns The message, or `null` on time-out or close.
   */
  async receiveWithin(timeoutMs: number): Promise<Uint8Array | null> {
    const deadline = performance.now() + timeoutMs;
    while (!this.#closeRequested) {
      const message = this.receive();
      if (message !== null) return message;
      const left = deadline - performance.now();
      if (left <= 0) return null;
      await this.waitReadable(Math.min(left, 100));
    }
    return null;
  }

  /**
   * Closes the socket (at once, or when a wait in progress returns).
   * Messages not yet sent are kept for the linger time.
   */
  close(): void {
    if (this.#closeRequested) return;
    this.#closeRequested = true;
    if (this.#waiting === null) this.#closeNow();
  }

  /**
   * Closes the socket, like {@linkcode close}, and resolves once it really
   * is (after a wait in progress has returned).
   */
  closed(): Promise<void> {
    this.close();
    return this.#closedPromise;
  }

  #closeNow(): void {
    if (this.#closed) return;
    this.#closed = true;
    lib().zmq_close(this.#pointer);
    this.#onClosed();
    this.#resolveClosed();
  }

  #usable(action: string): void {
    if (this.#closeRequested) {
      throw new Error(`Cannot ${action}: the ${this.type} socket is closed`);
    }
    if (this.#waiting !== null) {
      throw new Error(
        `Cannot ${action}: the ${this.type} socket is being polled on another thread`,
      );
    }
  }
}
