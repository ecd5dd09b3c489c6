/**
 * One request/response exchange on a mongrel2 connection.
 *
 * @module
 */

import type { ResponseEncoder } from "../http/response_encoder.ts";
import { REQUEST_FINISHED } from "../abort_reasons.ts";

/**
 * The state of one request while its handler runs and its response is
 * written: the abort controller behind `request.signal`, the promise behind
 * `info.completed`, and the response encoder once the handler has answered.
 *
 * @example Usage
 * ```ts
 * import { Exchange } from "./exchange.ts";
 * const exchange = new Exchange("GET", "/");
 * exchange.abort(new Error("client gone"));
 * console.assert(exchange.signal.aborted);
 * ```
 */
export class Exchange {
  /** The request method, for logs. */
  readonly method: string;
  /** The request path, for logs. */
  readonly path: string;
  /** When the request arrived (ms, `performance.now()`). */
  readonly startedAt: number = performance.now();
  readonly #controller = new AbortController();
  readonly #completed: Promise<void>;
  #resolveCompleted!: () => void;
  #rejectCompleted!: (reason: unknown) => void;
  #encoder: Promise<ResponseEncoder | null>;
  #resolveEncoder!: (encoder: ResponseEncoder | null) => void;
  #current: ResponseEncoder | null = null;
  #settled = false;
  /**
   * Close the connection after this response even if HTTP would keep it
   * open: set while an upload is still arriving, since closing is how
   * mongrel2 is told to stop receiving it.
   */
  closeAfterResponse = false;

  /**
   * Creates the exchange for a request.
   *
   * @param method The request method.
   * @param path The request path.
   */
  constructor(method: string, path: string) {
    this.method = method;
    this.path = path;
    this.#completed = new Promise<void>((resolve, reject) => {
      this.#resolveCompleted = resolve;
      this.#rejectCompleted = reject;
    });
    // Handlers rarely await `info.completed`; an unobserved rejection must
    // not become an unhandled one.
    this.#completed.catch(() => {});
    this.#encoder = new Promise((resolve) => this.#resolveEncoder = resolve);
  }

  /** Aborts when the client goes away, on a timeout, and once the response is out (as under `deno serve`). */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Settles when the response has been handed to mongrel2, or the client left. */
  get completed(): Promise<void> {
    return this.#completed;
  }

  /**
   * Resolves with the encoder once the handler has produced a response, or
   * with `null` when the exchange was aborted first.
   */
  get encoder(): Promise<ResponseEncoder | null> {
    return this.#encoder;
  }

  /** Whether the exchange finished or was aborted. */
  get settled(): boolean {
    return this.#settled;
  }

  /** The response handed over, if any. */
  get response(): ResponseEncoder | null {
    return this.#current;
  }

  /** Whether a response was already handed over. */
  get responded(): boolean {
    return this.#current !== null;
  }

  /**
   * Hands over the response encoder. The first response wins: a later one
   * (a handler answering after m2fetch already answered for it, e.g. 413)
   * is cancelled.
   *
   * @param encoder The encoder.
   */
  respond(encoder: ResponseEncoder): void {
    if (this.#settled || this.#current !== null) {
      encoder.cancel(this.#controller.signal.reason);
      return;
    }
    this.#current = encoder;
    this.#resolveEncoder(encoder);
  }

  /**
   * Marks the response as fully handed to mongrel2; `request.signal` then
   * aborts, as under `deno serve`, so work tied to it stops with the
   * request.
   */
  finish(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolveCompleted();
    this.#controller.abort(REQUEST_FINISHED);
  }

  /**
   * The response is a WebSocket's 101, going out now: as under
   * `deno serve`, `info.completed` resolves at once; `request.signal`
   * still aborts when the socket ends.
   */
  upgraded(): void {
    if (!this.#settled) this.#resolveCompleted();
  }

  /**
   * Aborts `request.signal` without ending the exchange: m2fetch answers
   * for the handler (e.g. 504 after a timeout).
   *
   * @param reason Becomes `request.signal.reason`.
   */
  abortHandler(reason: unknown): void {
    this.#controller.abort(reason);
  }

  /**
   * Aborts the exchange: the client left or the connection is closing.
   *
   * @param reason Why; becomes `request.signal.reason`.
   */
  abort(reason: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#controller.abort(reason);
    // No effect once an upgrade resolved it.
    this.#rejectCompleted(
      new Deno.errors.Interrupted("HTTP response was not sent successfully"),
    );
    this.#resolveEncoder(null);
    this.#current?.cancel(reason);
  }
}
