/**
 * A HEAD request to a handler that streams its body: the body is
 * cancelled, and the head goes out without waiting for the stream's
 * `cancel()` to settle, as under `deno serve` (on the main thread and with
 * `--workers`).
 */

import assert from "node:assert/strict";
import {
  RawClient,
  startCliHarness,
  startDenoServe,
  startHarness,
} from "./harness.ts";

const APP = "tests/e2e/head_stream_app.ts";

async function checkHeadThenGet(client: RawClient): Promise<void> {
  await client.write(
    "HEAD /head HTTP/1.1\r\nHost: x\r\n\r\nGET /get HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  const head = await client.readResponse({ head: true, timeoutMs: 3000 });
  assert.equal(head.status, 200);
  const get = await client.readResponse({ timeoutMs: 3000 });
  assert.equal(new TextDecoder().decode(get.body), "/get\n");
}

Deno.test("HEAD on a streamed body answers without waiting for the stream's cancel()", async () => {
  await using h = await startHarness(APP);
  await using client = await h.raw();
  await checkHeadThenGet(client);
});

Deno.test("--workers 1: HEAD on a streamed body answers without waiting for the stream's cancel()", async () => {
  await using h = await startCliHarness(APP, { args: ["--workers", "1"] });
  await using client = await h.raw();
  await checkHeadThenGet(client);
});

Deno.test("deno serve: HEAD on a streamed body answers without waiting for the stream's cancel()", async () => {
  await using direct = await startDenoServe(APP);
  await using client = await RawClient.connect(direct.port);
  await checkHeadThenGet(client);
});
