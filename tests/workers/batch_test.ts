/**
 * The batcher behind every message between the main thread and a worker:
 * what one turn posts goes as one message, in order, and nothing waits
 * past a bound.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  MAX_BATCH_MESSAGES,
  MessageBatcher,
} from "../../runtime/workers/batch.ts";
import { within } from "../subprocess.ts";

function recorder() {
  const batches: { messages: number[]; transfer: Transferable[] }[] = [];
  const batcher = new MessageBatcher<number>((messages, transfer) =>
    batches.push({ messages, transfer })
  );
  return { batches, batcher };
}

const nextTurn = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("messages added in one turn are posted together once it ends", async () => {
  const { batches, batcher } = recorder();
  batcher.add(1);
  await Promise.resolve();
  batcher.add(2);
  batcher.add(3);
  assert.equal(batches.length, 0, "nothing is posted while the turn runs");
  await nextTurn();
  assert.deepEqual(batches.map((batch) => batch.messages), [[1, 2, 3]]);
  batcher.add(4);
  await nextTurn();
  assert.deepEqual(batches.map((batch) => batch.messages), [[1, 2, 3], [4]]);
});

Deno.test("a full batch is posted at once, and order holds across batches", async () => {
  const { batches, batcher } = recorder();
  for (let i = 0; i < MAX_BATCH_MESSAGES + 2; i++) batcher.add(i);
  assert.equal(batches.length, 1);
  assert.equal(batches[0].messages.length, MAX_BATCH_MESSAGES);
  await nextTurn();
  assert.deepEqual(
    batches.flatMap((batch) => batch.messages),
    Array.from({ length: MAX_BATCH_MESSAGES + 2 }, (_, i) => i),
  );
});

Deno.test("flush() posts what is queued now, with its transfers", async () => {
  const { batches, batcher } = recorder();
  const first = new ArrayBuffer(1);
  const second = new ArrayBuffer(2);
  batcher.add(1, [first]);
  batcher.add(2, [second]);
  batcher.flush();
  assert.equal(batches.length, 1);
  assert.deepEqual(batches[0].messages, [1, 2]);
  assert.deepEqual(batches[0].transfer, [first, second]);
  batcher.flush();
  await nextTurn();
  assert.equal(batches.length, 1, "an empty queue posts nothing");
});

Deno.test("a batch crosses to a worker as one message event", async () => {
  const worker = new Worker(
    `data:text/javascript,self.onmessage = (event) => self.postMessage(event.data.length);`,
    { type: "module" },
  );
  try {
    const counts: number[] = [];
    const received = new Promise<void>((resolve) => {
      worker.onmessage = (event: MessageEvent<number>) => {
        counts.push(event.data);
        resolve();
      };
    });
    const batcher = new MessageBatcher<string>((messages, transfer) =>
      worker.postMessage(messages, transfer)
    );
    for (const message of ["a", "b", "c"]) batcher.add(message);
    await received;
    assert.deepEqual(counts, [3]);
  } finally {
    worker.terminate();
  }
});

Deno.test("a message that cannot be posted fails alone: the rest of its batch goes", async () => {
  const worker = new Worker(
    `data:text/javascript,self.onmessage = (event) => self.postMessage(event.data);`,
    { type: "module" },
  );
  try {
    const echoed: unknown[] = [];
    const received = new Promise<void>((resolve) => {
      worker.onmessage = (event: MessageEvent<unknown[]>) => {
        echoed.push(...event.data);
        if (echoed.length === 2) resolve();
      };
    });
    const failed: [unknown, unknown][] = [];
    const batcher = new MessageBatcher<unknown>(
      (messages, transfer) => worker.postMessage(messages, transfer),
      (message, error) => failed.push([message, error]),
    );
    const uncloneable = { run: () => {} };
    batcher.add("before");
    batcher.add(uncloneable);
    batcher.add("after");
    batcher.flush();
    await received;
    assert.deepEqual(echoed, ["before", "after"]);
    assert.equal(failed.length, 1);
    assert.equal(failed[0][0], uncloneable);
    assert.equal((failed[0][1] as Error).name, "DataCloneError");
  } finally {
    worker.terminate();
  }
});

Deno.test("a message of a failed batch goes again with its own transfers", async () => {
  const worker = new Worker(
    `data:text/javascript,self.onmessage = (event) => self.postMessage(event.data.map((m) => m instanceof ReadableStream ? "a stream" : typeof m));`,
    { type: "module" },
  );
  try {
    const received = new Promise<unknown[]>((resolve) => {
      worker.onmessage = (event: MessageEvent<unknown[]>) =>
        resolve(event.data);
    });
    const failed: unknown[] = [];
    const batcher = new MessageBatcher<unknown>(
      (messages, transfer) => worker.postMessage(messages, transfer),
      (message) => failed.push(message),
    );
    const uncloneable = { run: () => {} };
    // A stream crosses only transferred; closing it ends its channel.
    let source!: ReadableStreamDefaultController;
    const stream = new ReadableStream({ start: (c) => void (source = c) });
    batcher.add(uncloneable);
    batcher.add(stream, [stream]);
    batcher.flush();
    assert.deepEqual(failed, [uncloneable]);
    assert.deepEqual(await within(received, 5000, "nothing came"), [
      "a stream",
    ]);
    source.close();
  } finally {
    worker.terminate();
  }
});
