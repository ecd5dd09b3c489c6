/**
 * A request with an empty body reaches a worker's handler as it reaches one
 * on the main thread, and as under `deno serve`: every method but GET and
 * HEAD has a body stream, empty or not. The worker used to get `null` for
 * an empty one, so `request.body.getReader()` threw only with `--workers`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startCliHarness } from "../e2e/harness.ts";

for (const workers of ["0", "1"]) {
  Deno.test(`--workers ${workers}: a POST or DELETE with an empty body has an empty body stream, a GET none`, async () => {
    await using h = await startCliHarness("tests/workers/empty_body_app.ts", {
      args: ["--workers", workers],
    });
    const answers = [];
    for (
      const [method, body] of [
        ["POST", ""],
        ["DELETE", undefined],
        ["POST", "abc"],
        ["GET", undefined],
      ] as const
    ) {
      const response = await fetch(h.url, { method, body });
      answers.push(await response.text());
    }
    assert.deepEqual(answers, [
      "POST 0 bytes",
      "DELETE 0 bytes",
      "POST 3 bytes",
      "GET no body",
    ]);
  });
}
