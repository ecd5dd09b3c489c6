/**
 * Requests mongrel2 passes that `Request` cannot represent (a method it
 * forbids): answered 400 before any handler runs, with the same log line
 * whether the Request is built on the main thread or, with `--workers`,
 * in the worker (the main thread then builds none).
 *
 * @module
 */

import assert from "node:assert/strict";
import { startCliHarness } from "./harness.ts";

for (const workers of [0, 1]) {
  Deno.test(`--workers ${workers}: a TRACE request is refused with 400 and a log line, and the next request is served`, async () => {
    await using h = await startCliHarness("examples/hello.ts", {
      args: ["--workers", String(workers)],
    });
    {
      await using client = await h.raw();
      await client.write("TRACE / HTTP/1.1\r\nHost: x\r\n\r\n");
      const refused = await client.readResponse();
      assert.equal(refused.status, 400);
    }
    const served = await fetch(h.url);
    assert.equal(await served.text(), "Hello from m2fetch\n");
    assert.match(
      h.output(),
      /Refused a request mongrel2 passed but Request rejects \(Method is forbidden\); answered 400 \(TRACE \/\)/,
    );
  });
}
