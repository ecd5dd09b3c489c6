/**
 * An in-memory {@linkcode Transport}: tests push messages as if mongrel2 sent
 * them and read the replies m2fetch sent back, without sockets or mongrel2.
 *
 * @module
 */

import type { Transport } from "./transport.ts";

export type { Transport } from "./transport.ts";

/** Options for {@linkcode MemoryTransport}. */
export interface MemoryTransportOptions {
  /**
   * Called synchronously for every reply m2fetch sends, after it was added
   * to {@linkcode MemoryTransport.replies}. It must not throw: an error is
   * swallowed, because {@linkcode Transport.send} never throws.
   */
  onReply?: (reply: Uint8Array) => void;
}

/** Options for the waiting helpers of {@linkcode MemoryTransport}. */
export interface WaitOptions {
  /** Stops waiting (the promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * A {@linkcode Transport} that keeps everything in memory.
 *
 * It starts no timers and holds no resources, so a test that forgets to
 * close it leaks nothing; waiting helpers settle only through events
 * (a reply, a close, or an abort signal).
 *
 * @example Usage
 * ```ts
 * import { MemoryTransport } from "@m2fetch/m2fetch/testing";
 * import { createLogger, serveMongrel2 } from "@m2fetch/m2fetch";
 *
 * const transport = new MemoryTransport();
 * const server = serveMongrel2({
 *   handler: () => new Response("hi"),
 *   transport,
 *   logger: createLogger({ quiet: true }),
 * });
 * transport.deliver(new TextEncoder().encode(
 *   'abc 1 / 56:{"PATH":"/","METHOD":"GET","URI":"/","host":"localhost"},0:,',
 * ));
 * const reply = await transport.nextReply();
 * console.assert(new TextDecoder().decode(reply).startsWith("abc 1:1, HTTP/1.1 200 OK"));
 * await server.shutdown();
 * ```
 */
export class MemoryTransport implements Transport {
  /** Every reply m2fetch sent, in order (until {@linkcode close}). */
  readonly replies: Uint8Array[] = [];
  readonly #onReply: ((reply: Uint8Array) => void) | undefined;
  #inbox: Uint8Array[] = [];
  #receiving = true;
  #closed = false;
  #consumerWaiting = false;
  #iterating = false;
  #wakeConsumer: (() => void) | null = null;
  #replyCursor = 0;
  readonly #replyListeners = new Set<() => void>();
  readonly #consumedListeners = new Set<() => void>();

  /**
   * Creates an open transport with no messages.
   *
   * @param options A hook called for each reply.
   */
  constructor(options: MemoryTransportOptions = {}) {
    this.#onReply = options.onReply;
  }

  /** Whether {@linkcode deliver} still accepts messages. */
  get receiving(): boolean {
    return this.#receiving;
  }

  /** Whether {@linkcode close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Messages delivered and not yet taken by the consumer. */
  get pendingMessages(): number {
    return this.#inbox.length;
  }

  /**
   * Pushes a message as if mongrel2 had sent it.
   *
   * @param message One whole message (one ZeroMQ frame).
   * @throws {Error} When the transport stopped receiving.
   */
  deliver(message: Uint8Array): void {
    if (!this.#receiving) {
      throw new Error(
        "Cannot deliver a message: the transport stopped receiving",
      );
    }
    this.#inbox.push(message);
    this.#wake();
  }

  /**
   * Yields delivered messages in order, until {@linkcode stopReceiving} or
   * {@linkcode close}; messages delivered before that are still yielded.
   * There is one consumer: the server.
   *
   * @returns The messages.
   * @throws {Error} When a second consumer starts while one is iterating.
   */
  async *messages(): AsyncIterable<Uint8Array> {
    if (this.#iterating) {
      throw new Error(
        "Cannot iterate messages twice: a MemoryTransport has one consumer",
      );
    }
    this.#iterating = true;
    try {
      while (true) {
        const message = this.#inbox.shift();
        if (message !== undefined) {
          yield message;
          continue;
        }
        if (!this.#receiving) return;
        this.#consumerWaiting = true;
        this.#notifyConsumed();
        await new Promise<void>((resolve) => this.#wakeConsumer = resolve);
        this.#wakeConsumer = null;
        this.#consumerWaiting = false;
      }
    } finally {
      this.#iterating = false;
      this.#consumerWaiting = false;
      this.#notifyConsumed();
    }
  }

  /**
   * Records a reply; see {@linkcode Transport.send}. Replies sent after
   * {@linkcode close} are dropped, as a closed socket would drop them.
   *
   * @param message The reply.
   */
  send(message: Uint8Array): void {
    if (this.#closed) return;
    this.replies.push(message);
    try {
      this.#onReply?.(message);
    } catch {
      // send() never throws; the hook's owner reports its own errors.
    }
    for (const listener of [...this.#replyListeners]) listener();
  }

  /**
   * Resolves once every delivered message has been taken by the consumer
   * and it is waiting for the next one (or has stopped iterating). The
   * server parses and dispatches a message before asking for the next, so
   * this is the moment every delivered message has reached it.
   *
   * @param options An abort signal.
   * @returns A promise that settles as described.
   *
   * @example Usage
   * ```ts
   * import { MemoryTransport } from "@m2fetch/m2fetch/testing";
   * const transport = new MemoryTransport();
   * const taken: Uint8Array[] = [];
   * (async () => {
   *   for await (const message of transport.messages()) taken.push(message);
   * })();
   * transport.deliver(new Uint8Array([1]));
   * await transport.consumed();
   * console.assert(taken.length === 1);
   * await transport.close();
   * ```
   */
  consumed(options: WaitOptions = {}): Promise<void> {
    return this.#waitUntil(
      this.#consumedListeners,
      () => this.#isConsumed() ? true : undefined,
      "all delivered messages were consumed",
      options.signal,
    ).then(() => {});
  }

  /**
   * Returns the next reply not yet returned by this method, waiting for it
   * if needed.
   *
   * @param options An abort signal.
   * @returns The reply.
   * @throws {Error} When the transport closes before that reply is sent.
   *
   * @example Usage
   * ```ts
   * import { MemoryTransport } from "@m2fetch/m2fetch/testing";
   * const transport = new MemoryTransport();
   * transport.send(new Uint8Array([1]));
   * console.assert((await transport.nextReply())[0] === 1);
   * ```
   */
  nextReply(options: WaitOptions = {}): Promise<Uint8Array> {
    return this.#waitUntil(
      this.#replyListeners,
      () =>
        this.#replyCursor < this.replies.length
          ? this.replies[this.#replyCursor++]
          : undefined,
      "the next reply arrived",
      options.signal,
    );
  }

  /**
   * Waits until `predicate` holds for the replies sent so far (checked now
   * and after every reply).
   *
   * @param predicate Looks at all replies, oldest first.
   * @param options An abort signal.
   * @returns All replies at the moment the predicate held.
   * @throws {Error} When the transport closes before the predicate holds.
   *
   * @example Usage
   * ```ts
   * import { MemoryTransport } from "@m2fetch/m2fetch/testing";
   * const transport = new MemoryTransport();
   * const waiting = transport.waitForReplies((replies) => replies.length >= 2);
   * transport.send(new Uint8Array([1]));
   * transport.send(new Uint8Array([2]));
   * console.assert((await waiting).length === 2);
   * ```
   */
  waitForReplies(
    predicate: (replies: readonly Uint8Array[]) => boolean,
    options: WaitOptions = {},
  ): Promise<Uint8Array[]> {
    return this.#waitUntil(
      this.#replyListeners,
      () => predicate(this.replies) ? [...this.replies] : undefined,
      "the replies matched",
      options.signal,
    );
  }

  /**
   * Stops receiving: {@linkcode messages} yields what was delivered, then ends.
   *
   * @returns A settled promise.
   */
  stopReceiving(): Promise<void> {
    this.#receiving = false;
    this.#wake();
    return Promise.resolve();
  }

  /**
   * Stops receiving and drops later replies; pending waits for replies reject.
   *
   * @returns A settled promise.
   */
  async close(): Promise<void> {
    await this.stopReceiving();
    if (this.#closed) return;
    this.#closed = true;
    for (const listener of [...this.#replyListeners]) listener();
  }

  #isConsumed(): boolean {
    return this.#inbox.length === 0 &&
      (this.#consumerWaiting || (!this.#iterating && !this.#receiving));
  }

  #wake(): void {
    this.#wakeConsumer?.();
  }

  #notifyConsumed(): void {
    for (const listener of [...this.#consumedListeners]) listener();
  }

  /**
   * Settles with `check()`'s first defined result, re-checking whenever a
   * listener in `listeners` is called; rejects on close or abort.
   */
  #waitUntil<T>(
    listeners: Set<() => void>,
    check: () => T | undefined,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const now = check();
    if (now !== undefined) return Promise.resolve(now);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const closedError = () =>
      new Error(`Cannot wait until ${what}: the transport is closed`);
    if (this.#closed && listeners === this.#replyListeners) {
      return Promise.reject(closedError());
    }
    return new Promise<T>((resolve, reject) => {
      const cleanup = () => {
        listeners.delete(listener);
        signal?.removeEventListener("abort", onAbort);
      };
      const listener = () => {
        let value: T | undefined;
        try {
          value = check();
        } catch (error) {
          cleanup();
          reject(error);
          return;
        }
        if (value !== undefined) {
          cleanup();
          resolve(value);
        } else if (this.#closed && listeners === this.#replyListeners) {
          cleanup();
          reject(closedError());
        }
      };
      const onAbort = () => {
        cleanup();
        reject(signal!.reason);
      };
      listeners.add(listener);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
