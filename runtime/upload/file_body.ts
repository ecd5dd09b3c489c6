/**
 * A request body that streams mongrel2's upload temp file while mongrel2 is
 * still writing it, and ends exactly at the size the upload-done message
 * fixes.
 *
 * @module
 */

/** Options for {@linkcode openUploadBody}. */
export interface UploadBodyOptions {
  /** Largest body accepted; reading past it errors the stream. */
  maxBytes?: number;
  /**
   * Bytes per chunk for default readers (default 64 KiB: V8 frees small
   * chunks sooner, which keeps RSS well below larger ones'); BYOB readers
   * choose their own.
   */
  chunkBytes?: number;
  /** Longest pause between polls of a file that has not grown (ms, default 50). */
  maxPollMs?: number;
  /** Called once when the body grows past `maxBytes`. */
  onLimit?: () => void;
  /**
   * The request's Content-Length, when it has one: the body ends there even
   * if mongrel2 wrote more into the file (the start of a request pipelined
   * behind the upload).
   */
  length?: number;
  /** Called with the extra bytes when the complete file is longer than `length`. */
  onOverrun?: (extraBytes: number) => void;
  /**
   * Longest time (ms, default 4) the body reads a complete upload into a BYOB
   * reader's buffer synchronously, the reader's own work between reads
   * included, before one asynchronous read lets the event loop take a turn;
   * 0 reads asynchronously only. Reads while mongrel2 still writes, and
   * reads for default readers, are always asynchronous.
   */
  syncSliceMs?: number;
}

/** Largest synchronous read: from the page cache, about 0.1 ms. */
const SYNC_READ_BYTES = 1024 * 1024;

/** The body stream and the controls the server keeps. */
export interface UploadBody {
  /** The stream handed to the handler as `request.body`. */
  readonly stream: ReadableStream<Uint8Array>;
  /** Bytes read so far. */
  readonly bytesRead: number;
  /**
   * mongrel2 sent upload-done: the file is complete at its current size.
   * Resolves once the size is known.
   */
  done(): Promise<void>;
  /** Fails the stream (the upload was denied or the client left). */
  fail(reason: unknown): void;
  /** Closes the file; reads after this fail. Call when the request ends. */
  release(): void;
}

/**
 * Opens the temp file and returns a body that follows it as it grows.
 *
 * @param path The real path of the temp file.
 * @param options Limits and tuning.
 * @returns The body.
 * @throws {Deno.errors.NotFound} When the file does not exist.
 *
 * @example Usage
 * ```ts
 * import { openUploadBody } from "./file_body.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "hello");
 * const body = await openUploadBody(path);
 * await body.done();
 * console.assert(await new Response(body.stream).text() === "hello");
 * await Deno.remove(path);
 * ```
 */
export async function openUploadBody(
  path: string,
  options: UploadBodyOptions = {},
): Promise<UploadBody> {
  const file = await Deno.open(path, { read: true });
  const chunkBytes = options.chunkBytes ?? 64 * 1024;
  const maxPollMs = options.maxPollMs ?? 50;
  const maxBytes = options.maxBytes ?? Infinity;
  const syncSliceMs = options.syncSliceMs ?? 4;
  const length = options.length ?? Infinity;
  let finalSize: number | null = null;
  let failure: unknown = null;
  let wake: (() => void) | null = null;
  // The poll of the current wait: a wait that ends early (data, done,
  // failure) clears it, or it would cut a later wait short.
  let pollTimer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  let bytesRead = 0;
  // When the event loop last took a turn (an asynchronous read or a poll).
  let turnedAt = performance.now();
  let streamController: ReadableByteStreamController | undefined;
  let pulling = false;

  const closeFile = () => {
    if (closed) return;
    closed = true;
    try {
      file.close();
    } catch {
      // already closed
    }
  };
  const nudge = () => {
    clearTimeout(pollTimer);
    pollTimer = undefined;
    const resolve = wake;
    wake = null;
    resolve?.();
  };

  const stream = new ReadableStream({
    // A byte stream: default readers get fresh chunks of `chunkBytes`, BYOB
    // readers (`getReader({ mode: "byob" })`) read into their own buffer and
    // can reuse it, which is several times as fast and leaves no garbage.
    type: "bytes",
    start(controller) {
      streamController = controller;
    },
    async pull(controller) {
      pulling = true;
      try {
        await fill(controller);
      } finally {
        pulling = false;
        // Released while this read was finishing: end the stream now.
        if (closed && failure !== null) controller.error(failure);
      }
    },
    cancel() {
      failure ??= new DOMException("Body cancelled", "AbortError");
      closeFile();
    },
  }, { highWaterMark: 0 });

  async function fill(controller: ReadableByteStreamController) {
    let chunk: Uint8Array | null = null;
    let pause = 1;
    let waited = 0;
    while (true) {
      if (failure !== null) {
        closeFile();
        controller.error(failure);
        return;
      }
      if (finalSize !== null && bytesRead >= finalSize) {
        closeFile();
        controller.close();
        controller.byobRequest?.respond(0);
        return;
      }
      // The BYOB reader's buffer or a default reader's chunk; while the
      // file has not grown, the same one is tried again (no allocation per
      // poll).
      const request = controller.byobRequest;
      const view = request?.view ?? (chunk ??= new Uint8Array(chunkBytes));
      const target = new Uint8Array(
        view.buffer,
        view.byteOffset,
        Math.min(view.byteLength, (finalSize ?? length) - bytesRead),
      );
      const sizeKnown = finalSize !== null;
      // Once the upload is complete, a BYOB reader's buffer is filled
      // synchronously: an asynchronous read goes through a blocking thread
      // and costs about twice as much (such a reader got 0.6 × the speed
      // of `cat`). mongrel2 has just written the bytes, so a read copies
      // at most SYNC_READ_BYTES from the page cache; every `syncSliceMs`
      // an asynchronous read lets other requests' I/O and timers run.
      // While mongrel2 still writes, reading is no faster than mongrel2,
      // and a synchronous read sharing the CPU with it blocked for up to
      // 8 ms. Default readers get a fresh chunk per read; read
      // synchronously, they left V8 too little idle time to free the
      // chunks and RSS spiked past 90 MiB. Both read asynchronously.
      let read: number | null;
      if (
        request !== null && sizeKnown &&
        performance.now() - turnedAt < syncSliceMs
      ) {
        read = file.readSync(target.subarray(0, SYNC_READ_BYTES));
      } else {
        read = await file.read(target);
        turnedAt = performance.now();
      }
      if (read !== null && read > 0) {
        bytesRead += read;
        if (bytesRead > maxBytes) {
          failure = new RangeError(
            `Cannot read request body: it is larger than the ${maxBytes}-byte limit`,
          );
          options.onLimit?.();
          continue;
        }
        if (request === null) controller.enqueue(target.subarray(0, read));
        else request.respond(read);
        return;
      }
      if (finalSize !== null) {
        // done() may have fixed the size while this read hit what was
        // then the end of the file: read again before calling it short.
        if (bytesRead >= finalSize || !sizeKnown) continue;
        failure = new Error(
          `Cannot read request body: the upload file ended at ${bytesRead} of ${finalSize} bytes`,
        );
        continue;
      }
      // mongrel2 is still writing: wait for more bytes or for done. When
      // the client leaves mid-upload mongrel2 unlinks the file and may
      // send no notice (mongrel2 issue #261), so check it still exists.
      await new Promise<void>((resolve) => {
        wake = resolve;
        pollTimer = setTimeout(nudge, pause);
      });
      turnedAt = performance.now();
      waited += pause;
      pause = Math.min(maxPollMs, pause * 2);
      if (waited >= 500 && finalSize === null && failure === null) {
        waited = 0;
        if (!await exists(path)) {
          failure = new Error(
            "Cannot read request body: mongrel2 removed the upload file before it was complete (the client probably left)",
          );
        }
      }
    }
  }

  return {
    stream,
    get bytesRead() {
      return bytesRead;
    },
    async done() {
      if (finalSize !== null || closed) return;
      const size = (await file.stat()).size;
      // Shorter than its Content-Length, the body fails at the file's end.
      finalSize = Number.isFinite(length) ? length : size;
      if (size > length) options.onOverrun?.(size - length);
      nudge();
    },
    fail(reason) {
      failure ??= reason;
      nudge();
    },
    release() {
      failure ??= new Error("Cannot read request body: the request has ended");
      nudge();
      closeFile();
      // With no read under way, nothing else would end the stream: a body
      // nobody read (a handler that refused the upload) would keep its
      // pipe to a worker, and the chunk queued there, for good.
      if (!pulling) streamController?.error(failure);
    },
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
