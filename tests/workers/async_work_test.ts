/**
 * Handlers whose CPU work comes after an `await`, with `--workers`: the
 * requests that reach a worker in one batch are worked through one after
 * the other, as when each was a message of its own, so a worker busy with
 * such a backlog still shows it is alive and is not replaced; so are a
 * socket's messages.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startCliHarness } from "../e2e/harness.ts";
import { openSocket } from "../websocket/servers.ts";

const APP = "tests/workers/async_work_app.ts";

Deno.test("--workers 1: a backlog of handlers busy after an await, longer than --worker-timeout, is served, not taken for a hung worker", async () => {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", "1", "--worker-timeout", "1s"],
  });
  // 2.4 s of work at once, each request 120 ms: the worker answers pings
  // between them, as it did before its messages were batched.
  const statuses = await Promise.all(
    Array.from(
      { length: 20 },
      () =>
        fetch(`${harness.url}/work?ms=120`).then(async (response) => {
          await response.body?.cancel();
          return response.status;
        }),
    ),
  );
  assert.deepEqual(statuses, Array(20).fill(200), harness.output());
  assert.doesNotMatch(harness.output(), /answered no ping/);
});

Deno.test("--workers 1: a socket whose listener works after an await, for longer than --worker-timeout in all, is not taken for a hung worker", async () => {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", "1", "--worker-timeout", "1s"],
  });
  const { socket, firstMessage: answer } = await openSocket(
    `${harness.url.replace("http", "ws")}/socket?ms=30`,
    harness.output,
  );
  // 3 s of work, sent at once: up to 64 messages cross in one batch.
  for (let i = 0; i < 100; i++) socket.send("x");
  socket.send("end");
  assert.equal(await answer, "got 100");
  assert.doesNotMatch(harness.output(), /answered no ping/);
  const closed = new Promise((resolve) => socket.onclose = resolve);
  socket.close();
  await closed;
});
