import assert from "node:assert/strict";
import { asByteStream, byteStreamOf } from "../../runtime/http/byte_stream.ts";
import { toRequest } from "../../runtime/http/request.ts";

async function readByob(
  stream: ReadableStream<Uint8Array>,
  size: number,
): Promise<number[]> {
  const reader = stream.getReader({ mode: "byob" });
  const sizes: number[] = [];
  let buffer = new Uint8Array(size);
  while (true) {
    const { value, done } = await reader.read(buffer);
    if (done) return sizes;
    sizes.push(value.length);
    buffer = new Uint8Array(value.buffer);
  }
}

Deno.test("byteStreamOf() copies a view, so the message it came from stays whole", async () => {
  const message = new Uint8Array([9, 1, 2, 3, 4, 9]);
  const body = message.subarray(1, 5);
  assert.deepEqual(await readByob(byteStreamOf(body), 3), [3, 1]);
  assert.equal(message.buffer.byteLength, 6, "the message was detached");
  assert.deepEqual([...message], [9, 1, 2, 3, 4, 9]);
  assert.deepEqual(await readByob(byteStreamOf(new Uint8Array()), 3), []);
});

Deno.test("asByteStream() passes chunks on demand, skips empty ones, and cancels its source", async () => {
  let pulls = 0;
  const chunks = [new Uint8Array(5), new Uint8Array(0), new Uint8Array(2)];
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      const chunk = chunks.shift();
      if (chunk === undefined) controller.close();
      else controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
  const wrapped = asByteStream(source);
  await Promise.resolve();
  assert.equal(pulls, 0, "read before anyone asked");
  assert.deepEqual(await readByob(wrapped, 4), [4, 1, 2]);

  let reason: unknown;
  const endless = new ReadableStream<Uint8Array>({
    pull: (controller) => controller.enqueue(new Uint8Array(1)),
    cancel: (why) => void (reason = why),
  });
  await asByteStream(endless).cancel("done with it");
  assert.equal(reason, "done with it");
});

Deno.test("toRequest() gives an inline body as a byte stream", async () => {
  const request = toRequest({
    sender: "s",
    connectionId: "1",
    path: "/",
    body: new TextEncoder().encode("hello"),
    headerFormat: "tnetstring",
    headers: { METHOD: "POST", URI: "/", host: "localhost" },
  });
  assert.deepEqual(await readByob(request.body!, 2), [2, 2, 1]);
});
