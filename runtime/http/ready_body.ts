/**
 * Telling a body that is already complete (built from a string, bytes or a
 * Blob) from one that is still being produced, without waiting on the
 * latter: the response encoder sends ready bytes in one message, and the
 * worker bridge passes a small complete body as bytes instead of a
 * transferred stream (a MessageChannel per body).
 *
 * @module
 */

import { concatBytes } from "../protocol/bytes.ts";

/** What {@linkcode readyOrPending} resolves with for a promise still pending. */
export const PENDING: unique symbol = Symbol("pending");

/** Microtask turns a ready value may take to arrive. */
const TURNS = 8;

/**
 * Settles like `promise` if it settles within a few microtask turns: long
 * enough for a body built from a string, bytes or a Blob to deliver its
 * data, short enough never to wait on a stream that is really producing
 * later. Otherwise resolves with {@linkcode PENDING}, and `promise` is
 * left to the caller.
 *
 * @param promise What to wait for, briefly.
 * @returns Its value, or `PENDING`.
 *
 * @example Usage
 * ```ts
 * import { PENDING, readyOrPending } from "./ready_body.ts";
 * console.assert(await readyOrPending(new Promise(() => {})) === PENDING);
 * console.assert(await readyOrPending(Promise.resolve(1)) === 1);
 * ```
 */
export async function readyOrPending<T>(
  promise: Promise<T>,
): Promise<T | typeof PENDING> {
  const settled: {
    state: "pending" | "fulfilled" | "rejected";
    outcome?: unknown;
  } = { state: "pending" };
  promise.then((value) => {
    settled.state = "fulfilled";
    settled.outcome = value;
  }, (error) => {
    settled.state = "rejected";
    settled.outcome = error;
  });
  // A read of a chunk already queued settles after one turn: waiting turn
  // by turn (not a fixed chain of TURNS promises) leaves the least garbage.
  for (let turn = 0; turn < TURNS && settled.state === "pending"; turn++) {
    await undefined;
  }
  if (settled.state === "fulfilled") return settled.outcome as T;
  if (settled.state === "rejected") throw settled.outcome;
  return PENDING;
}

/**
 * The whole body as bytes when it is complete now, within `maxBytes` read
 * ahead plus the chunk that ends it (a body made from bytes or a string is
 * one chunk of any size); otherwise a stream with the same bytes (those
 * read so far first).
 *
 * @param body The body; it is locked by this call.
 * @param maxBytes Largest body returned as bytes.
 * @returns The bytes, or a stream that carries on from what was read.
 *
 * @example Usage
 * ```ts
 * import { settleBody } from "./ready_body.ts";
 * const settled = await settleBody(new Response("hi").body!, 1024);
 * console.assert(settled instanceof Uint8Array && settled.length === 2);
 * ```
 */
export async function settleBody(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array>> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
  // Reads on while chunks are ready and fewer than maxBytes have come,
  // then once more: that read tells a body that has just ended.
  let lastRead = false;
  while (!lastRead) {
    lastRead = bytes > maxBytes;
    const read = reader.read();
    const result = await readyOrPending(read);
    if (result === PENDING) {
      // Nobody may ever read on (a handler that answers without reading
      // its request body): a failure must not be an unhandled rejection.
      read.catch(() => {});
      pending = read;
      break;
    }
    if (result.done) {
      reader.releaseLock();
      // One chunk as it is: whoever sends it on copies it anyway.
      return chunks.length === 1
        ? chunks[0] as Uint8Array<ArrayBuffer>
        : concatBytes(chunks);
    }
    // Anything else is left for the encoder to refuse with its own error.
    if (!(result.value instanceof Uint8Array)) {
      chunks.push(result.value);
      break;
    }
    chunks.push(result.value);
    bytes += result.value.length;
  }
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = chunks.shift();
      if (chunk !== undefined) return controller.enqueue(chunk);
      const read = pending ?? reader.read();
      pending = null;
      const { done, value } = await read;
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
