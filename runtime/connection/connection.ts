/**
 * Per-connection state: the exchanges in request order (mongrel2 forwards
 * pipelined requests at once, so responses must be serialised here), the
 * download credits that keep mongrel2 from killing a slow client, and the
 * close rules.
 *
 * @module
 */

import {
  encodeClose,
  encodeCtl,
  encodeReplyPrefix,
} from "../protocol/reply.ts";
import type { Exchange } from "./exchange.ts";
import type { ResponseEncoder } from "../http/response_encoder.ts";
import { requestCancelled } from "../abort_reasons.ts";

/** mongrel2's fixed per-connection credit window (`MAX_CREDITS`, 100 KiB). */
export const MAX_CREDITS = 102400;

/**
 * Largest reply body sent in one message when mongrel2 gives no credits.
 * mongrel2 copies each reply and kills a client after 16 queued messages,
 * so fewer, larger messages are safer than many small ones.
 */
const MAX_MESSAGE_WITHOUT_CREDITS = 4 * 1024 * 1024;

/** What a connection needs from the server. */
export interface ConnectionHooks {
  /** Queues a message for mongrel2. */
  send(message: Uint8Array): void;
  /** The connection is finished: closed by us or gone. Remove it. */
  closed(connection: Connection): void;
  /**
   * An exchange ended: its response was handed over in full, or it was
   * cut short. `encoder` is the response as far as it was written (null
   * when nothing was); `error` is set when the response body failed.
   */
  exchangeEnded(
    connection: Connection,
    exchange: Exchange,
    encoder: ResponseEncoder | null,
    error?: unknown,
  ): void;
}

/**
 * One client connection as mongrel2 identifies it: `(sender, id)`.
 *
 * @example Usage
 * ```ts
 * import { Connection } from "./connection.ts";
 * const sent: Uint8Array[] = [];
 * const connection = new Connection("abc", "7", null, {
 *   send: (message) => sent.push(message),
 *   closed: () => {},
 *   exchangeEnded: () => {},
 * });
 * connection.close();
 * console.assert(new TextDecoder().decode(sent[0]) === "abc 1:7, ");
 * ```
 */
export class Connection {
  /** The handler `send_ident` the requests came with. */
  readonly sender: string;
  /** mongrel2's connection id. */
  readonly id: string;
  /** When a message last came or went (ms, `performance.now()`). */
  lastActivity: number = performance.now();
  /**
   * A request that ends the connection (`Connection: close`, HTTP/1.0)
   * was taken, or m2fetch closed it: requests pipelined behind are not
   * served.
   */
  lastRequestTaken = false;
  readonly #hooks: ConnectionHooks;
  readonly #prefix: Uint8Array;
  #credits: number | null;
  #exchanges: Exchange[] = [];
  #pumping = false;
  #finished = false;
  #creditWaiter: (() => void) | null = null;
  #waitingSince: number | null = null;
  /** Bytes of the segment in writing that wait for credits. */
  #unsent = 0;
  /** Bytes written to it by replies shared with other connections. */
  #sharedBytes = 0;

  /**
   * Creates the state for a connection.
   *
   * @param sender The `send_ident`.
   * @param id The connection id.
   * @param credits Download credits, or `null` without flow control.
   * @param hooks Callbacks into the server.
   */
  constructor(
    sender: string,
    id: string,
    credits: number | null,
    hooks: ConnectionHooks,
  ) {
    this.sender = sender;
    this.id = id;
    this.#credits = credits;
    this.#hooks = hooks;
    this.#prefix = encodeReplyPrefix(sender, [id]);
  }

  /**
   * Whether the connection ends after what is queued: its last request was
   * taken, or a queued response closes it (a refusal, an unfinished upload).
   */
  get closing(): boolean {
    return this.lastRequestTaken ||
      this.#exchanges.some((exchange) => exchange.closeAfterResponse);
  }

  /** Requests whose responses are not yet fully handed over. */
  get pending(): number {
    return this.#exchanges.length;
  }

  /**
   * How many of this connection's requests come before `exchange` in the
   * order responses are written.
   *
   * @param exchange One of its exchanges.
   * @returns The count, or -1 when `exchange` is not queued (any more).
   */
  queuedBefore(exchange: Exchange): number {
    return this.#exchanges.indexOf(exchange);
  }

  /** Download credits left, or `null` without flow control. */
  get credits(): number | null {
    return this.#credits;
  }

  /**
   * Bytes the response in writing has produced but not yet handed to
   * mongrel2, waiting for credits (a large body made in one piece waits
   * almost whole): what the access line of a response cut short leaves
   * out.
   */
  get unsentBytes(): number {
    return this.#unsent;
  }

  /**
   * Bytes written to this connection by replies that were not its own (one
   * WebSocket frame to many sockets, see {@linkcode Connection.takeCredits}):
   * its response's own writer never saw them, its access line counts them.
   */
  get sharedBytes(): number {
    return this.#sharedBytes;
  }

  /** Since when a write has waited for credits (ms), or `null`. */
  get waitingSince(): number | null {
    return this.#waitingSince;
  }

  /** Whether the connection was closed or lost. */
  get finished(): boolean {
    return this.#finished;
  }

  /**
   * Appends a request; its response is written after those before it.
   * The connection is one not yet finished: the server takes a new one for
   * an id whose connection has finished.
   *
   * @param exchange The new exchange.
   */
  enqueue(exchange: Exchange): void {
    this.lastActivity = performance.now();
    this.#exchanges.push(exchange);
    if (!this.#pumping) this.#pump();
  }

  /**
   * Adds download credits from a credits notice.
   *
   * @param credits Bytes mongrel2 wrote to the client.
   */
  addCredits(credits: number): void {
    this.lastActivity = performance.now();
    if (this.#credits === null) return;
    this.#credits = Math.min(MAX_CREDITS, this.#credits + credits);
    this.#creditWaiter?.();
  }

  /**
   * Takes download credits for bytes written to this connection by a reply
   * that is not its own (one frame sent to many WebSockets at once). Only
   * for a connection whose writer has nothing in progress.
   *
   * @param bytes The reply body's length.
   * @returns False, taking nothing, when the connection is finished or its
   * credits do not cover `bytes`.
   */
  takeCredits(bytes: number): boolean {
    if (this.#finished) return false;
    if (this.#credits !== null) {
      if (this.#credits < bytes) return false;
      this.#credits -= bytes;
    }
    this.#sharedBytes += bytes;
    this.lastActivity = performance.now();
    return true;
  }

  /**
   * The client is gone (disconnect notice or timeout): abort everything and
   * write nothing more.
   *
   * @param reason Becomes `request.signal.reason`.
   * @param complete The response in writing had ended as far as the
   *   client is concerned (a WebSocket after its closing handshake): it
   *   completes instead of being aborted.
   */
  lost(reason: unknown, complete = false): void {
    if (this.#finished) return;
    this.#finish(reason, complete);
  }

  /**
   * Closes the client connection: queued bytes are flushed first, then
   * mongrel2 closes it. Exchanges not yet answered are aborted.
   */
  close(): void {
    if (this.#finished) return;
    this.lastRequestTaken = true;
    this.#hooks.send(encodeClose(this.sender, [this.id]));
    this.#finish(new DOMException("Connection closed", "AbortError"));
  }

  /** Asks mongrel2 to close the connection at once, dropping queued bytes. */
  cancel(reason: unknown): void {
    if (this.#finished) return;
    this.#hooks.send(encodeCtl(this.sender, [this.id], { cancel: true }));
    this.#finish(reason);
  }

  #finish(reason: unknown, complete = false): void {
    this.#finished = true;
    const exchanges = this.#exchanges;
    this.#exchanges = [];
    for (const exchange of exchanges) {
      if (exchange.settled) continue;
      // The access log shows what went out of a response cut short. Only
      // the first exchange's can have started: #pump writes one at a time.
      const started = exchange.response?.started ? exchange.response : null;
      if (complete && started !== null) {
        exchange.finish();
        // Nothing more can be written: release what the body still holds.
        started.cancel(reason);
      } else {
        exchange.abort(reason);
      }
      this.#hooks.exchangeEnded(this, exchange, started);
    }
    this.#creditWaiter?.();
    this.#hooks.closed(this);
  }

  async #pump(): Promise<void> {
    this.#pumping = true;
    try {
      while (this.#exchanges.length > 0 && !this.#finished) {
        const exchange = this.#exchanges[0];
        const encoder = await exchange.encoder;
        if (this.#finished) return;
        if (encoder === null) {
          this.#exchanges.shift();
          continue;
        }
        // An upload still arriving ends with the connection.
        if (exchange.closeAfterResponse) encoder.closeAfter();
        try {
          let segment: Uint8Array[] | null;
          while ((segment = await encoder.next()) !== null) {
            if (this.#finished) return;
            const waiting = this.#write(segment);
            if (waiting !== undefined) await waiting;
            if (this.#finished) return;
          }
        } catch (error) {
          // Gone meanwhile (the client left, a cancel): #finish ended it.
          if (this.#finished) return;
          // The body stream failed after the head went out: the framing is
          // broken, so the only honest signal left is closing. The handler's
          // signal says so as under deno serve (the failure is logged).
          exchange.abort(requestCancelled());
          this.#exchanges.shift();
          this.#hooks.exchangeEnded(this, exchange, encoder, error);
          this.close();
          return;
        }
        if (this.#finished) return;
        this.#exchanges.shift();
        exchange.finish();
        this.#hooks.exchangeEnded(this, exchange, encoder);
        if (!encoder.keepAlive || exchange.closeAfterResponse) this.close();
      }
    } finally {
      this.#pumping = false;
    }
  }

  /**
   * Sends the pieces as replies, within the credit window: at once while
   * credits last (returning nothing), else returns a promise that settles
   * once the rest went out after mongrel2 granted more.
   */
  #write(pieces: Uint8Array[]): Promise<void> | undefined {
    let remaining = 0;
    for (const piece of pieces) remaining += piece.length;
    let index = 0;
    let offset = 0;
    while (remaining > 0) {
      let budget = remaining;
      if (this.#credits !== null) {
        if (this.#credits <= 0) {
          const rest = [
            pieces[index].subarray(offset),
            ...pieces.slice(index + 1),
          ];
          this.#unsent = remaining;
          return this.#writeWithCredits(rest);
        }
        this.#waitingSince = null;
        budget = Math.min(budget, this.#credits);
      } else {
        budget = Math.min(budget, MAX_MESSAGE_WITHOUT_CREDITS);
      }
      const prefix = this.#prefix;
      const message = new Uint8Array(prefix.length + budget);
      message.set(prefix);
      let at = prefix.length;
      while (at < message.length) {
        const piece = pieces[index];
        const take = Math.min(piece.length - offset, message.length - at);
        message.set(
          take === piece.length ? piece : piece.subarray(offset, offset + take),
          at,
        );
        at += take;
        offset += take;
        if (offset === piece.length) {
          index++;
          offset = 0;
        }
      }
      this.#hooks.send(message);
      this.lastActivity = performance.now();
      if (this.#credits !== null) this.#credits -= budget;
      remaining -= budget;
    }
    this.#unsent = 0;
    return undefined;
  }

  /** Waits for mongrel2 to grant credits, then writes on. */
  async #writeWithCredits(pieces: Uint8Array[]): Promise<void> {
    while (this.#credits !== null && this.#credits <= 0) {
      this.#waitingSince ??= performance.now();
      await new Promise<void>((resolve) => this.#creditWaiter = resolve);
      this.#creditWaiter = null;
      if (this.#finished) return;
    }
    await this.#write(pieces);
  }
}
