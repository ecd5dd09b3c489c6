/**
 * Test stand-ins for the other end of a ZeroMQ link (mongrel2's sockets, or
 * m2fetch's), on the same libzmq binding m2fetch uses.
 *
 * @module
 */

import { ZmqContext, type ZmqSocket, type ZmqSocketType } from "./libzmq.ts";

/**
 * A receiving socket with a background loop that keeps taking messages, as
 * mongrel2's event loop does: a bound SUB, say, only passes its
 * subscription to a PUB that connects while something reads it.
 *
 * @example Usage
 * ```ts ignore
 * import { Inbox } from "./zmq_peer.ts";
 * await using inbox = Inbox.bind("sub", "ipc:///tmp/recv");
 * console.log(await inbox.next());
 * ```
 */
export class Inbox {
  readonly #context = new ZmqContext();
  readonly #socket: ZmqSocket;
  readonly #messages: Uint8Array[] = [];
  #done: Promise<void> = Promise.resolve();
  #wake: (() => void) | undefined;

  private constructor(type: ZmqSocketType) {
    this.#socket = this.#context.socket(type, { linger: 0 });
    if (type === "sub") this.#socket.subscribe("");
  }

  /**
   * A socket of `type` bound to `endpoint`.
   *
   * @param type `sub` or `pull`.
   * @param endpoint Where to bind.
   * @returns The inbox.
   */
  static bind(type: "sub" | "pull", endpoint: string): Inbox {
    const inbox = new Inbox(type);
    inbox.#socket.bind(endpoint);
    inbox.#done = inbox.#run();
    return inbox;
  }

  /**
   * A socket of `type` connected to each endpoint.
   *
   * @param type `sub` or `pull`.
   * @param endpoints Where to connect.
   * @returns The inbox.
   */
  static connect(type: "sub" | "pull", ...endpoints: string[]): Inbox {
    const inbox = new Inbox(type);
    for (const endpoint of endpoints) inbox.#socket.connect(endpoint);
    inbox.#done = inbox.#run();
    return inbox;
  }

  async #run(): Promise<void> {
    while (!this.#socket.isClosed) {
      const message = await this.#socket.receiveWithin(100);
      if (message === null) continue;
      this.#messages.push(message);
      this.#wake?.();
    }
  }

  /** Messages received and not yet taken. */
  get pending(): number {
    return this.#messages.length;
  }

  /**
   * Removes and returns the first message that matches `predicate`.
   *
   * @param what What is awaited, for the error.
   * @param predicate Which message.
   * @param timeoutMs Longest wait.
   * @returns The message.
   * @throws {Error} When none matches in time.
   */
  async take(
    what: string,
    predicate: (message: Uint8Array) => boolean,
    timeoutMs = 5000,
  ): Promise<Uint8Array> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const index = this.#messages.findIndex(predicate);
      if (index >= 0) return this.#messages.splice(index, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `Cannot receive ${what}: no matching message within ${timeoutMs} ms (have ${this.#messages.length} other messages)`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /**
   * The next message.
   *
   * @param timeoutMs Longest wait.
   * @returns The message.
   * @throws {Error} When none arrives in time.
   */
  next(timeoutMs = 5000): Promise<Uint8Array> {
    return this.take("a message", () => true, timeoutMs);
  }

  /** Closes the socket and its context. */
  async close(): Promise<void> {
    this.#socket.close();
    await this.#done;
    await this.#context.terminate();
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * A sending socket (PUB, XPUB or PUSH) and its own context. An XPUB can
 * wait for its subscriber, which a PUB can only guess at with a sleep.
 *
 * @example Usage
 * ```ts ignore
 * import { Outbox } from "./zmq_peer.ts";
 * await using outbox = Outbox.connect("xpub", "ipc:///tmp/recv");
 * await outbox.subscribed();
 * outbox.send("hello");
 * ```
 */
export class Outbox {
  readonly #context = new ZmqContext();
  readonly #socket: ZmqSocket;

  private constructor(type: "pub" | "xpub" | "push") {
    this.#socket = this.#context.socket(type, { linger: 1000 });
  }

  /**
   * A socket of `type` connected to each endpoint.
   *
   * @param type `pub`, `xpub` or `push`.
   * @param endpoints Where to connect.
   * @returns The outbox.
   */
  static connect(
    type: "pub" | "xpub" | "push",
    ...endpoints: string[]
  ): Outbox {
    const outbox = new Outbox(type);
    for (const endpoint of endpoints) outbox.#socket.connect(endpoint);
    return outbox;
  }

  /**
   * Sends one message.
   *
   * @param message Bytes, or text sent as UTF-8.
   * @throws {Error} When the send queue is full.
   */
  send(message: Uint8Array | string): void {
    const bytes = typeof message === "string"
      ? new TextEncoder().encode(message)
      : message;
    if (!this.#socket.send(bytes)) {
      throw new Error("Cannot send: the ZeroMQ send queue is full");
    }
  }

  /**
   * Waits until a peer subscribes (an `xpub` outbox only), so that what is
   * sent next reaches it.
   *
   * @param timeoutMs Longest wait.
   * @throws {Error} When no subscription arrives in time.
   */
  async subscribed(timeoutMs = 5000): Promise<void> {
    const message = await this.#socket.receiveWithin(timeoutMs);
    if (message?.[0] !== 1) {
      throw new Error(`No subscriber within ${timeoutMs} ms`);
    }
  }

  /** Closes the socket, sending what it holds first. */
  async close(): Promise<void> {
    this.#socket.close();
    await this.#context.terminate();
  }

  /** Same as {@linkcode close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
