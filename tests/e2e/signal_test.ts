/**
 * `request.signal` after a normal response and when the client leaves
 * first, the same under `deno serve` and under m2fetch (main thread and
 * worker): it aborts, with deno serve's reason, and a handler's work tied
 * to it stops.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startDenoServe } from "../websocket/servers.ts";
import { startCliHarness } from "./harness.ts";
import { waitFor } from "../subprocess.ts";

const APP = "tests/e2e/signal_app.ts";
const FINISHED = "AbortError: The request has been cancelled.";

/** Asks (for up to 2 s) until `/last` says something other than `from`. */
async function lastAfter(origin: string, from: string): Promise<string> {
  let last = from;
  await waitFor(
    async () => (last = await (await fetch(`${origin}/last`)).json()) !== from,
    2000,
  );
  return last;
}

/** Sends a request, then asks how its signal ended. */
async function signalAfterResponse(origin: string): Promise<string> {
  const response = await fetch(`${origin}/work`);
  assert.equal(await response.text(), "ok");
  return await lastAfter(origin, "not aborted");
}

/** Leaves a request while its handler waits, then asks how its signal ended. */
async function signalAfterClientLeft(origin: string): Promise<string> {
  const leave = new AbortController();
  const hanging = fetch(`${origin}/hang`, { signal: leave.signal });
  hanging.catch(() => {});
  assert.equal(await lastAfter(origin, "not aborted"), "hanging");
  leave.abort();
  return await lastAfter(origin, "hanging");
}

Deno.test("deno serve aborts request.signal once the response is out", async () => {
  await using server = await startDenoServe(
    new URL("./signal_app.ts", import.meta.url).pathname,
    [],
    "/last",
  );
  assert.equal(
    await signalAfterResponse(`http://127.0.0.1:${server.port}`),
    FINISHED,
  );
});

Deno.test("deno serve aborts request.signal when the client leaves", async () => {
  await using server = await startDenoServe(
    new URL("./signal_app.ts", import.meta.url).pathname,
    [],
    "/last",
  );
  assert.equal(
    await signalAfterClientLeft(`http://127.0.0.1:${server.port}`),
    FINISHED,
  );
});

for (const workers of ["0", "1"]) {
  Deno.test(`m2fetch --workers ${workers} aborts request.signal when the client leaves, as deno serve does`, async () => {
    await using harness = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    assert.equal(await signalAfterClientLeft(harness.url), FINISHED);
  });

  Deno.test(`m2fetch --workers ${workers} aborts request.signal once the response is out, as deno serve does`, async () => {
    await using harness = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    assert.equal(await signalAfterResponse(harness.url), FINISHED);
  });
}
