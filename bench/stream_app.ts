/**
 * The streaming handler of the end-to-end benchmark (`deno task bench`):
 * `GET /stream/BYTES` answers with BYTES bytes of a fixed pattern, produced
 * on demand in 64 KiB chunks with a `content-length`, so the body is never
 * held in memory. Anything else is 404. Runs unchanged under `deno serve`.
 *
 * @module
 */

/** Size of each chunk the body stream produces. */
export const CHUNK_BYTES = 64 * 1024;

const PATTERN = new Uint8Array(CHUNK_BYTES).map((_, i) => 0x41 + (i % 26));
const STREAM_PATH = /^\/stream\/(\d{1,13})$/;

/**
 * Returns a stream of `bytes` bytes of the pattern, in chunks of
 * {@linkcode CHUNK_BYTES}. Each chunk is a fresh view, so a consumer that
 * keeps or transfers it never sees it change.
 *
 * @param bytes How many bytes the stream produces.
 * @returns The stream.
 *
 * @example Usage
 * ```ts
 * import { patternStream } from "./stream_app.ts";
 * const text = await new Response(patternStream(3)).text();
 * console.assert(text === "ABC");
 * ```
 */
export function patternStream(bytes: number): ReadableStream<Uint8Array> {
  let left = bytes;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left <= 0) {
        controller.close();
        return;
      }
      const size = Math.min(left, CHUNK_BYTES);
      left -= size;
      controller.enqueue(PATTERN.slice(0, size));
    },
  }, { highWaterMark: 0 });
}

export default {
  fetch(request: Request): Response {
    const path = new URL(request.url).pathname;
    const match = STREAM_PATH.exec(path);
    if (match === null) return new Response("Not Found\n", { status: 404 });
    const bytes = Number(match[1]);
    return new Response(patternStream(bytes), {
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(bytes),
      },
    });
  },
} satisfies Deno.ServeDefaultExport;
