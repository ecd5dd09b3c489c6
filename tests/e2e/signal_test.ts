/**
 * `request.signal` after a normal response, the same under `deno serve`
 * and under m2fetch (main thread and worker): it aborts once the response
 * is out, with deno serve's reason, and a handler's work tied to it stops.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startDenoServe } from "../websocket/servers.ts";
import { startCliHarness } from "./harness.ts";

const APP = "tests/e2e/signal_app.ts";
const FINISHED = "AbortError: The request has been cancelled.";

/** Sends a request, then asks (for up to 2 s) how its signal ended. */
async function signalAfterResponse(origin: string): Promise<string> {
  const response = await fetch(`${origin}/work`);
  assert.equal(await response.text(), "ok");
  let last = "";
  for (let attempt = 0; attempt < 40; attempt++) {
    last = await (await fetch(`${origin}/last`)).json();
    if (last !== "not aborted") break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return last;
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

for (const workers of ["0", "1"]) {
  Deno.test(`m2fetch --workers ${workers} aborts request.signal once the response is out, as deno serve does`, async () => {
    await using harness = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    assert.equal(await signalAfterResponse(harness.url), FINISHED);
  });
}
