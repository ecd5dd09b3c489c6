/**
 * A reload (SIGHUP) with `--workers` retires the old workers as soon as
 * their responses are done: one whose response body failed half-way is not
 * held for the whole `--shutdown-timeout`.
 */

import assert from "node:assert/strict";
import { startCliHarness } from "../e2e/harness.ts";
import { waitFor } from "../subprocess.ts";

Deno.test("--workers 1: after a response body failed, SIGHUP retires the old worker at once, not after --shutdown-timeout", async () => {
  await using harness = await startCliHarness(
    "tests/workers/failed_body_app.ts",
    { args: ["--workers", "1", "--shutdown-timeout", "30s"] },
  );
  const response = await fetch(harness.url);
  await assert.rejects(response.text());
  harness.process.kill("SIGHUP");
  let stopped: RegExpExecArray | null = null;
  await waitFor(
    () =>
      (stopped = /A worker running the old code stopped after (\d+) ms/.exec(
        harness.output(),
      )) !== null,
    10_000,
  );
  assert.ok(stopped !== null, harness.output());
  assert.ok(Number(stopped[1]) < 5000, stopped[0]);
});

Deno.test("--workers 1: SIGHUP that cuts a streaming response counts it once and does not say the worker never answered", async () => {
  await using harness = await startCliHarness(
    "tests/workers/endless_app.ts",
    { args: ["--workers", "1", "--shutdown-timeout", "500ms"] },
  );
  const response = await fetch(harness.url);
  const reader = response.body!.getReader();
  assert.ok(!(await reader.read()).done);
  harness.process.kill("SIGHUP");
  let stopped: RegExpExecArray | null = null;
  await waitFor(
    () =>
      (stopped = /A worker running the old code stopped after \d+ ms(.*)/
        .exec(harness.output())) !== null,
    10_000,
  );
  assert.ok(stopped !== null, harness.output());
  assert.equal(stopped[1], ", cutting 1 response(s) still in flight");
  // The body was streaming: its worker had answered long before.
  await assert.rejects(async () => {
    while (!(await reader.read()).done);
  });
  assert.doesNotMatch(harness.output(), /before it answered/);
  assert.match(
    harness.output(),
    /The worker streaming this response was retired by a reload/,
  );
});
