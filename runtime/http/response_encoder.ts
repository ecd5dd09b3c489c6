/**
 * Turns a `Response` into the byte segments of an HTTP/1.x response, read
 * from its body only when the writer asks for more: that is what lets a slow
 * client hold back a streaming handler instead of m2fetch buffering for it.
 *
 * @module
 */

import {
  allowsBody,
  type BodyFraming,
  chunkPieces,
  encodeResponseHead,
  lastChunk,
} from "./response.ts";
import { PENDING, readyOrPending } from "./ready_body.ts";
import { hasStaticBody } from "./static_body.ts";

/** Facts about the request that shape the response bytes. */
export interface ResponseContext {
  /** The request method. */
  method: string;
  /** `HTTP/1.0` or `HTTP/1.1`. */
  version: string;
  /** Whether the request allows keeping the connection open. */
  keepAlive: boolean;
  /** The `Date` header value. */
  date: string;
}

const FAILURE_BODY = new TextEncoder().encode("Internal Server Error");

/** Bytes gathered into one segment when the body has them ready. */
const SEGMENT_BYTES = 256 * 1024;
/**
 * Reads a response body segment by segment and frames it.
 *
 * @example Usage
 * ```ts
 * import { ResponseEncoder } from "./response_encoder.ts";
 * const encoder = new ResponseEncoder(new Response("hi"), {
 *   method: "GET", version: "HTTP/1.1", keepAlive: true,
 *   date: "Thu, 01 Jan 1970 00:00:00 GMT",
 * });
 * const segment = await encoder.next();
 * console.assert(segment !== null && (await encoder.next()) === null);
 * ```
 */
export class ResponseEncoder {
  readonly #response: Response;
  readonly #context: ResponseContext;
  #reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  #pendingRead: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
  #framing: BodyFraming = "none";
  #started = false;
  #finished = false;
  #keepAlive: boolean;
  #declaredLength = 0;
  #sent = 0;
  #status: number;
  #bodyFailure: { error: unknown } | null = null;
  /**
   * A body failure that came right after chunks still to send: those go
   * out first, and the next read raises it.
   */
  #laterFailure: { error: unknown } | null = null;

  /**
   * Creates an encoder; nothing is read until {@linkcode next}.
   *
   * @param response The handler's response.
   * @param context Facts about the request.
   */
  constructor(response: Response, context: ResponseContext) {
    this.#response = response;
    this.#context = context;
    this.#keepAlive = context.keepAlive;
    this.#status = response.status;
  }

  /** Whether the connection may stay open; final once `next()` has run. */
  get keepAlive(): boolean {
    return this.#keepAlive;
  }

  /**
   * The connection will close after this response: the head, if not yet
   * written, says `connection: close`.
   */
  closeAfter(): void {
    if (!this.#started) this.#keepAlive = false;
  }

  /** Whether the head has been produced (writing has begun). */
  get started(): boolean {
    return this.#started;
  }

  /** The response status. */
  get status(): number {
    return this.#status;
  }

  /**
   * Set when the body failed before anything was sent: the encoder then
   * answered `500 Internal Server Error` (and closes) in its place.
   */
  get bodyFailure(): { error: unknown } | null {
    return this.#bodyFailure;
  }

  /**
   * Set when the body failed together with its last declared bytes: the
   * response went out whole and `next()` raised nothing, but the failure
   * is the handler's to hear of (`deno serve` logs it too).
   */
  get failureAtEnd(): { error: unknown } | null {
    return this.#finished && this.#sent === this.#declaredLength
      ? this.#laterFailure
      : null;
  }

  /** Whether the head has been produced with a body to follow it. */
  get #headSent(): boolean {
    return this.#started && this.#framing !== "none";
  }

  /** Body bytes produced so far (without framing). */
  get bodyBytes(): number {
    return this.#sent;
  }

  /**
   * Returns the next segment (pieces to send in order), or `null` when the
   * response is complete.
   *
   * @returns The pieces, or `null`.
   * @throws {Error} When the body stream errors or ends short of its declared length.
   */
  async next(): Promise<Uint8Array[] | null> {
    if (this.#finished) return null;
    if (!this.#started) {
      try {
        return await this.#start();
      } catch (error) {
        return this.#answerFailure(error);
      }
    }
    if (this.#reader === null) {
      this.#finished = true;
      return null;
    }
    const pieces: Uint8Array[] = [];
    const done = await this.#gather(pieces, true);
    if (done) {
      this.#finished = true;
      this.#checkLength();
      if (this.#framing === "chunked") pieces.push(lastChunk());
      if (pieces.length === 0) return null;
    } else {
      this.#endAtDeclaredLength();
    }
    return pieces;
  }

  /**
   * Ends a response whose declared length has gone out in full, without
   * waiting for its stream to say so: the client has its answer and may
   * send the next request (an upload, which a response still in progress
   * would refuse) before a stream from a worker, or one that closes late,
   * reports its end. The stream is cancelled, not awaited, as `deno serve`
   * does (hyper drops a body once its length is written).
   */
  #endAtDeclaredLength(): void {
    if (this.#framing !== "length" || this.#sent !== this.#declaredLength) {
      return;
    }
    // Cancelling settles a read still pending; its outcome is not needed.
    this.#pendingRead?.catch(() => {});
    this.#pendingRead = null;
    this.cancel();
  }

  /**
   * Stops reading and cancels the body stream (the client is gone).
   *
   * @param reason Passed to the stream's `cancel`.
   */
  async cancel(reason?: unknown): Promise<void> {
    this.#finished = true;
    const reader = this.#reader;
    this.#reader = null;
    if (reader !== null) {
      await reader.cancel(reason).catch(() => {});
    } else if (!this.#started && this.#response.body !== null) {
      await this.#response.body.cancel(reason).catch(() => {});
    }
  }

  async #start(): Promise<Uint8Array[]> {
    this.#started = true;
    const response = this.#response;
    const context = this.#context;
    // HEAD reads the body too, for its length.
    const readsBody = allowsBody(response.status, context.method) ||
      context.method === "HEAD";
    let buffered: Uint8Array[] = [];
    let done: boolean;
    if (readsBody && hasStaticBody(response)) {
      // Read without making a stream (see static_body.ts).
      const bytes = await response.bytes();
      if (bytes.length > 0) buffered = [bytes];
      done = true;
    } else {
      const body = response.body;
      done = body === null;
      if (body !== null) {
        this.#reader = body.getReader();
        if (readsBody) done = await this.#gather(buffered, false);
      }
    }
    let length: number | null = null;
    if (done) {
      length = 0;
      for (const piece of buffered) length += piece.length;
    }
    const head = encodeResponseHead(response, {
      method: context.method,
      version: context.version,
      keepAlive: this.#keepAlive,
      bodyLength: length,
      date: context.date,
    });
    this.#framing = head.framing;
    this.#keepAlive = head.keepAlive;
    this.#declaredLength = head.contentLength;
    if (head.framing === "none") {
      buffered = [];
      this.#finished = true;
      // Not awaited: the head must not wait for the source's cancel() (one
      // that closes a slow resource, or never settles), as under deno serve.
      this.cancel();
    } else if (done) {
      this.#finished = true;
      this.#reader = null;
    }
    const pieces = [head.head];
    this.#frame(buffered, pieces);
    if (done && head.framing === "chunked") pieces.push(lastChunk());
    if (!done) this.#endAtDeclaredLength();
    return pieces;
  }

  /** A 500 in place of a response whose body failed before its head went out. */
  #answerFailure(error: unknown): Uint8Array[] {
    this.#bodyFailure = { error };
    this.#finished = true;
    this.#keepAlive = false;
    this.#status = 500;
    this.#reader?.cancel(error).catch(() => {});
    this.#reader = null;
    this.#pendingRead = null;
    const body = FAILURE_BODY;
    const head = encodeResponseHead(
      new Response(null, {
        status: 500,
        headers: { "content-type": "text/plain;charset=UTF-8" },
      }),
      { ...this.#context, keepAlive: false, bodyLength: body.length },
    );
    if (this.#context.method === "HEAD") return [head.head];
    this.#sent = body.length;
    return [head.head, body];
  }

  /**
   * Reads chunks into `pieces` (framed) while they are ready, up to a
   * segment's worth. With `wait`, waits for the first chunk.
   * Returns true when the body has ended.
   */
  async #gather(pieces: Uint8Array[], wait: boolean): Promise<boolean> {
    const reader = this.#reader;
    if (reader === null) return true;
    if (this.#laterFailure !== null) throw this.#laterFailure.error;
    const raw: Uint8Array[] = [];
    let bytes = 0;
    let ended = false;
    while (bytes < SEGMENT_BYTES) {
      const read = this.#pendingRead ?? reader.read();
      this.#pendingRead = null;
      let chunk: Uint8Array;
      try {
        let result: ReadableStreamReadResult<Uint8Array>;
        if (wait && raw.length === 0) {
          result = await read;
        } else {
          const first = await readyOrPending(read);
          if (first === PENDING) {
            this.#pendingRead = read;
            break;
          }
          result = first;
        }
        if (result.done) {
          ended = true;
          this.#reader = null;
          break;
        }
        chunk = result.value;
        if (!(chunk instanceof Uint8Array)) {
          throw new TypeError(
            "Cannot send response body: the stream produced a chunk that is not a Uint8Array",
          );
        }
      } catch (error) {
        // Once the head is out, the chunks read before the failure still
        // go to the client, as deno serve sends them; before it, the
        // whole response becomes a 500 (see #answerFailure).
        if (raw.length === 0 || !this.#headSent) throw error;
        this.#laterFailure = { error };
        break;
      }
      if (chunk.length === 0) continue;
      raw.push(chunk);
      bytes += chunk.length;
      // After a 101, read one chunk per segment and nothing ahead: the
      // stream's next pull() then tells its source (a WebSocket) that every
      // earlier chunk was handed to mongrel2.
      if (this.#framing === "upgrade") break;
      if (bytes >= SEGMENT_BYTES) {
        // A full segment may be the whole body (one big chunk from bytes
        // or a string): if its end is ready too, the head can carry the
        // length, as deno serve's does.
        // A failure there belongs to the next read: the segment in hand
        // goes out first.
        const peek = reader.read();
        let next: ReadableStreamReadResult<Uint8Array> | typeof PENDING;
        try {
          next = await readyOrPending(peek);
        } catch {
          next = PENDING;
        }
        if (next !== PENDING && next.done) {
          ended = true;
          this.#reader = null;
        } else {
          this.#pendingRead = next === PENDING ? peek : Promise.resolve(next);
        }
      }
    }
    if (this.#headSent) {
      this.#frame(raw, pieces);
    } else {
      pieces.push(...raw);
    }
    return ended;
  }

  #frame(raw: Uint8Array[], pieces: Uint8Array[]): void {
    for (let chunk of raw) {
      if (this.#framing === "length") {
        // Bytes past the declared length are dropped, as hyper drops them
        // under deno serve; #endAtDeclaredLength then ends the response,
        // whether they came in one segment with the last declared bytes or
        // in a later one.
        const room = this.#declaredLength - this.#sent;
        if (room === 0) break;
        if (chunk.length > room) chunk = chunk.subarray(0, room);
      }
      this.#sent += chunk.length;
      if (this.#framing === "chunked") {
        pieces.push(...chunkPieces(chunk));
      } else {
        pieces.push(chunk);
      }
    }
  }

  #checkLength(): void {
    if (this.#framing === "length" && this.#sent !== this.#declaredLength) {
      throw new RangeError(
        `Cannot send response body: it ended after ${this.#sent} of its ${this.#declaredLength} declared bytes`,
      );
    }
  }
}
