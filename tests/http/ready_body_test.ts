import assert from "node:assert/strict";
import { settleBody } from "../../runtime/http/ready_body.ts";

const encoder = new TextEncoder();

Deno.test("settleBody() returns a complete small body as bytes", async () => {
  for (
    const body of [
      new Response("hello").body!,
      new Response(new Uint8Array([1, 2, 3])).body!,
      new Response(new Blob(["a", "b"])).body!,
      ReadableStream.from([encoder.encode("x"), encoder.encode("yz")]),
    ]
  ) {
    const settled = await settleBody(body, 1024);
    assert.ok(settled instanceof Uint8Array, String(settled));
  }
  const bytes = await settleBody(new Response("hello").body!, 1024);
  assert.deepEqual(bytes, encoder.encode("hello"));
});

Deno.test("settleBody() keeps a body that is still being produced as a stream, bytes read so far first", async () => {
  let later!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode("first "));
      later = controller;
    },
  });
  const settled = await settleBody(body, 1024);
  assert.ok(settled instanceof ReadableStream);
  setTimeout(() => {
    later.enqueue(encoder.encode("second"));
    later.close();
  }, 20);
  assert.equal(await new Response(settled).text(), "first second");
});

Deno.test("settleBody() returns a complete body of one chunk as bytes, over the limit too", async () => {
  const big = new Uint8Array(100_000).map((_, i) => i % 251);
  const settled = await settleBody(new Response(big).body!, 64 * 1024);
  assert.ok(settled instanceof Uint8Array);
  assert.deepEqual(settled, big);
});

Deno.test("settleBody() keeps a body of many ready chunks over the limit as a stream with every byte", async () => {
  const chunks = [0, 1, 2, 3].map((n) => new Uint8Array(30_000).fill(n));
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  const settled = await settleBody(body, 64 * 1024);
  assert.ok(settled instanceof ReadableStream);
  assert.deepEqual(
    new Uint8Array(await new Response(settled).arrayBuffer()),
    new Uint8Array(await new Blob(chunks).arrayBuffer()),
  );
});

Deno.test("settleBody(): a body that fails later fails the stream, and unread it is no unhandled rejection", async () => {
  let fail!: (reason: unknown) => void;
  const make = () =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        fail = (reason) => controller.error(reason);
      },
    });
  const read = await settleBody(make(), 1024);
  assert.ok(read instanceof ReadableStream);
  fail(new Error("gone"));
  await assert.rejects(new Response(read).text(), /gone/);

  // Nobody reads this one: the failure must stay quiet.
  const unread = await settleBody(make(), 1024);
  assert.ok(unread instanceof ReadableStream);
  fail(new Error("ignored"));
  await new Promise((resolve) => setTimeout(resolve, 10));
});

Deno.test("settleBody() passes cancel on to the source", async () => {
  let cancelled: unknown;
  const body = new ReadableStream<Uint8Array>({
    cancel(reason) {
      cancelled = reason;
    },
  });
  const settled = await settleBody(body, 1024);
  assert.ok(settled instanceof ReadableStream);
  await settled.cancel("stop");
  assert.equal(cancelled, "stop");
});
