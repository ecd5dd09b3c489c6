/**
 * The life of one async upload on a connection: verify the temp file, stream
 * it into the request body, learn its final size, and delete it when the
 * request ends, whatever the outcome.
 *
 * @module
 */

import type { Exchange } from "../connection/exchange.ts";
import { openUploadBody, type UploadBody } from "./file_body.ts";
import type { UploadStore } from "./policy.ts";
import { removeUploadFile, verifyUploadFile } from "./store.ts";

/** Options for {@linkcode ActiveUpload.open}. */
export interface OpenUploadOptions {
  /** Largest body accepted. */
  maxBytes?: number;
  /** Called once when the body grows past `maxBytes`. */
  onLimit?: () => void;
  /** The request's Content-Length, where the body ends (none when chunked). */
  length?: number;
  /** Called with the extra bytes when the complete file is longer than `length`. */
  onOverrun?: (extraBytes: number) => void;
}

/**
 * One upload between mongrel2's upload-start and the end of its request.
 *
 * @example Usage
 * ```ts
 * import { Exchange } from "../connection/exchange.ts";
 * import { ActiveUpload } from "./active_upload.ts";
 * const dir = await Deno.realPath(await Deno.makeTempDir());
 * const path = `${dir}/upload.15yUxo`; // as mongrel2's upload-start reports it
 * await Deno.writeTextFile(path, "hello");
 * const store = { template: `${dir}/upload.XXXXXX` };
 * const upload = new ActiveUpload(path, new Exchange("POST", "/"), store);
 * const body = await upload.open();
 * await upload.markDone(); // mongrel2's upload-done: the file is complete
 * console.assert(await new Response(body).text() === "hello");
 * console.assert(await upload.end() === path); // the request ended: deleted
 * await Deno.remove(dir);
 * ```
 */
export class ActiveUpload {
  /** The path as mongrel2 reported it. */
  readonly path: string;
  /** The request the upload belongs to. */
  readonly exchange: Exchange;
  readonly #store: UploadStore;
  #realPath: string | null = null;
  #body: UploadBody | null = null;
  #done = false;
  #ended = false;
  readonly #chunked: boolean;
  /** The file's size at the last {@linkcode grew} check. */
  #seenSize = 0;
  #settleDone!: (done: boolean) => void;
  readonly #doneOrEnded: Promise<boolean>;

  /**
   * Registers an upload; nothing on disk is touched until {@linkcode open}.
   *
   * @param path The path from the upload-start message.
   * @param exchange The request it belongs to.
   * @param store The configured temp store.
   * @param options `chunked`: the request came with chunked coding.
   */
  constructor(
    path: string,
    exchange: Exchange,
    store: UploadStore,
    options: { chunked?: boolean } = {},
  ) {
    this.path = path;
    this.exchange = exchange;
    this.#store = store;
    this.#chunked = options.chunked ?? false;
    this.#doneOrEnded = new Promise((resolve) => this.#settleDone = resolve);
    // Until mongrel2 reports the upload complete, ending the response must
    // close the connection: that is what stops mongrel2 receiving it.
    exchange.closeAfterResponse = true;
  }

  /** Whether upload-done arrived. */
  get done(): boolean {
    return this.#done;
  }

  /** Body bytes read so far. */
  get bytesRead(): number {
    return this.#body?.bytesRead ?? 0;
  }

  /**
   * Whether the file grew since the last call (on the first, whether it
   * holds any bytes). A file not yet opened counts as growing; one that
   * cannot be looked at any more, as not.
   *
   * @returns True when mongrel2 wrote more of the body meanwhile.
   */
  grew(): boolean {
    if (this.#realPath === null) return true;
    let size: number;
    try {
      size = Deno.statSync(this.#realPath).size;
    } catch {
      return false;
    }
    const grew = size > this.#seenSize;
    this.#seenSize = size;
    return grew;
  }

  /**
   * Verifies the temp file and opens a body stream over it.
   *
   * @param options Size limit.
   * @returns The request body stream.
   * @throws {UploadRejectedError} When the path fails a check.
   */
  async open(
    options: OpenUploadOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const realPath = await verifyUploadFile(this.path, this.#store);
    if (this.#ended) {
      // The request ended while we checked: the file is verified, so clean it.
      await removeUploadFile(realPath);
      throw new DOMException("The request ended", "AbortError");
    }
    this.#realPath = realPath;
    const body = await openUploadBody(realPath, options);
    if (this.#ended) {
      // Ended while the file was opening: end() found no body to release.
      body.release();
      throw new DOMException("The request ended", "AbortError");
    }
    this.#body = body;
    if (this.#done) await body.done();
    return body.stream;
  }

  /** mongrel2 sent upload-done: the file is complete. */
  async markDone(): Promise<void> {
    if (this.#done || this.#ended) return;
    this.#done = true;
    // After a chunked upload, mongrel2 1.12.2 spools the connection's next
    // upload wrongly (stuck at limits.content_length, or with bytes of its
    // own memory in the file): such a connection closes after its answer.
    if (!this.#chunked) this.exchange.closeAfterResponse = false;
    await this.#body?.done();
    this.#settleDone(true);
  }

  /** Resolves true once upload-done arrives, false if the request ends first. */
  whenDone(): Promise<boolean> {
    return this.#doneOrEnded;
  }

  /**
   * The request ended (response sent, error, client gone, deny, timeout):
   * stop reading and delete the temp file.
   *
   * @returns The real path deleted, if any.
   */
  async end(): Promise<string | null> {
    if (this.#ended) return null;
    this.#ended = true;
    this.#settleDone(false);
    this.#body?.release();
    // Refused before it was opened (413, forged done header): mongrel2 only
    // unlinks a file it is still receiving, so delete a finished one too,
    // once it passes the same checks as a file to open.
    const realPath = this.#realPath ??
      await verifyUploadFile(this.path, this.#store).catch(() => null);
    if (realPath === null) return null;
    return await removeUploadFile(realPath) ? realPath : null;
  }
}
