/**
 * Request bodies as byte streams, the kind `deno serve` gives handlers: a
 * byte stream takes a BYOB reader (`getReader({ mode: "byob" })`), which
 * reads into the handler's own buffer. Deno makes a plain stream of a
 * `Uint8Array` body, and a stream that crossed to a worker is plain too.
 *
 * @module
 */

/**
 * A byte stream holding `bytes` (copied when first read: a byte stream
 * takes over the buffer it is given, and `bytes` may be a view into a
 * larger message).
 *
 * @param bytes The whole body.
 * @returns A byte stream of those bytes.
 *
 * @example Usage
 * ```ts
 * import { byteStreamOf } from "./byte_stream.ts";
 * const reader = byteStreamOf(new Uint8Array([1, 2, 3])).getReader({ mode: "byob" });
 * const { value } = await reader.read(new Uint8Array(8));
 * console.assert(value?.length === 3);
 * ```
 */
export function byteStreamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    type: "bytes",
    pull(controller) {
      if (bytes.byteLength > 0) controller.enqueue(bytes.slice());
      controller.close();
      controller.byobRequest?.respond(0);
    },
  });
}

/**
 * A byte stream that reads `stream` on demand, with its back-pressure;
 * cancelling it cancels `stream`.
 *
 * @param stream A stream of `Uint8Array` chunks, each owned by the stream
 *   (a byte stream takes over their buffers).
 * @returns A byte stream of the same bytes.
 *
 * @example Usage
 * ```ts
 * import { asByteStream } from "./byte_stream.ts";
 * const plain = new Blob(["hello"]).stream().pipeThrough(new TransformStream());
 * const reader = asByteStream(plain).getReader({ mode: "byob" });
 * const { value } = await reader.read(new Uint8Array(8));
 * console.assert(new TextDecoder().decode(value) === "hello");
 * ```
 */
export function asByteStream(
  stream: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  const reader = stream.getReader();
  return new ReadableStream({
    type: "bytes",
    async pull(controller) {
      // An empty chunk cannot be enqueued, and a pull that enqueues
      // nothing is not called again: read on to data or the end.
      while (true) {
        const { value, done } = await reader.read();
        if (done) {
          controller.close();
          controller.byobRequest?.respond(0);
          return;
        }
        if (value.byteLength > 0) return controller.enqueue(value);
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}
