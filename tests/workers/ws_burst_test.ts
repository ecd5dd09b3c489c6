/**
 * A client faster than the socket's handler, with `--workers`: what it sent
 * before leaving still reaches the handler, and a worker busy with its
 * backlog is not taken for a hung one. `--workers 0` is the reference.
 */

import assert from "node:assert/strict";
import { startCliHarness } from "../e2e/harness.ts";
import { openSocket } from "../websocket/servers.ts";
import { RawWsClient } from "../websocket/raw_ws_client.ts";
import { encodeMaskedFrame } from "../websocket/frame_helpers.ts";
import { waitFor } from "../subprocess.ts";

const APP = "tests/workers/ws_burst_app.ts";
const MASK = [1, 2, 3, 4];

async function readWhenWritten(path: string): Promise<string> {
  let text = "";
  await waitFor(
    async () => (text = await Deno.readTextFile(path).catch(() => "")) !== "",
    5000,
  );
  return text || "nothing written";
}

for (const workers of ["0", "2"]) {
  Deno.test(`--workers ${workers}: messages sent just before the client leaves reach the handler, with its close code`, async () => {
    await using harness = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    const dir = await Deno.makeTempDir({ prefix: "m2wb-" });
    try {
      const outcomes: string[] = [];
      for (let run = 0; run < 12; run++) {
        const out = `${dir}/${run}`;
        const client = await RawWsClient.connect(
          harness.port,
          `/count?out=${encodeURIComponent(out)}`,
        );
        assert.equal(client.status, 101);
        for (let i = 0; i < 10; i++) {
          await client.write(
            encodeMaskedFrame(1, new TextEncoder().encode(`m${i}`), MASK),
          );
        }
        // Close 4000, then leave without waiting for the answer.
        await client.write(
          encodeMaskedFrame(8, new Uint8Array([0x0f, 0xa0]), MASK),
        );
        client.abort();
        outcomes.push(await readWhenWritten(out));
      }
      assert.deepEqual(outcomes, Array(12).fill("10/4000"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("--workers 1: a worker working through a socket's backlog longer than --worker-timeout is not replaced", async () => {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", "1", "--worker-timeout", "1s"],
  });
  const { socket, firstMessage: answer } = await openSocket(
    `${harness.url.replace("http", "ws")}/slow`,
    harness.output,
  );
  // 3 s of work for the handler, sent at once.
  for (let i = 0; i < 3000; i++) socket.send("x".repeat(100));
  socket.send("end");
  assert.equal(await answer, "got 3000");
  assert.doesNotMatch(harness.output(), /answered no ping/);
  const closed = new Promise((resolve) => socket.onclose = resolve);
  socket.close();
  await closed;
});
