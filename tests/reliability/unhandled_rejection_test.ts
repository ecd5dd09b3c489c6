/** A handler's unhandled rejection is logged and the process keeps serving. */

import assert from "node:assert/strict";
import { startCliHarness, waitFor } from "../e2e/harness.ts";

for (const workers of ["0", "1"]) {
  Deno.test(`an unhandled rejection in handler code is logged and m2fetch keeps serving (--workers ${workers})`, async () => {
    await using harness = await startCliHarness(
      "tests/reliability/stray_app.ts",
      {
        args: ["--workers", workers],
      },
    );
    const leak = await fetch(`${harness.url}/leak`);
    assert.equal(await leak.text(), "still here\n");
    assert.ok(
      await waitFor(
        () => /stray rejection from handler code/.test(harness.output()),
        5000,
      ),
      "the rejection was not logged",
    );
    const next = await fetch(`${harness.url}/after`);
    assert.equal(next.status, 200);
    assert.equal(await next.text(), "still here\n");
    const status = await harness.stop("SIGTERM");
    assert.equal(status.code, 0);
  });
}
