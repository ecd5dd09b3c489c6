/**
 * A client that sends faster than a WebSocket's handler takes its
 * messages: m2fetch holds only a bounded backlog. mongrel2 has no flow
 * control for what clients send, so the bound is m2fetch taking no more
 * from mongrel2, which then stops reading the client. `--workers 0` is the
 * reference: a handler busy on the main thread holds everything.
 */

import assert from "node:assert/strict";
import { startCliHarness } from "../e2e/harness.ts";
import { RawWsClient } from "../websocket/raw_ws_client.ts";
import { encodeMaskedFrame } from "../websocket/frame_helpers.ts";
import { delay, within } from "../subprocess.ts";

const APP = "tests/workers/ws_backlog_app.ts";
const FRAMES_PER_WRITE = 64;
/** 40 MiB of 1 KiB messages: what an unbounded backlog takes in whole. */
const MOST_FRAMES = 40_000;

/**
 * Starts m2fetch on the backlog app with `workers` and opens a socket whose
 * handler holds its thread until `release()`; `run` gets the client.
 */
async function withHeldSocket(
  workers: string,
  run: (client: RawWsClient, release: () => Promise<void>) => Promise<void>,
): Promise<void> {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", workers],
  });
  const dir = await Deno.makeTempDir({ prefix: "m2wbl-" });
  const release = `${dir}/release`;
  try {
    const client = await RawWsClient.connect(
      harness.port,
      `/?release=${encodeURIComponent(release)}`,
    );
    assert.equal(client.status, 101);
    await run(client, () => Deno.writeTextFile(release, ""));
    client.abort();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const workers of ["0", "1"]) {
  Deno.test(`--workers ${workers}: a client faster than its socket's handler is held back, not buffered`, async () => {
    await withHeldSocket(workers, async (client, release) => {
      const frame = encodeMaskedFrame(2, new Uint8Array(1024), [1, 2, 3, 4]);
      const batch = new Uint8Array(frame.length * FRAMES_PER_WRITE);
      for (let i = 0; i < FRAMES_PER_WRITE; i++) {
        batch.set(frame, i * frame.length);
      }
      // Sends until a write stays pending: nobody reads the client anymore.
      let sent = 0;
      let pending: Promise<void> | undefined;
      while (sent < MOST_FRAMES) {
        const write = client.write(batch);
        sent += FRAMES_PER_WRITE;
        if (await within(write.then(() => true), 2000, false) === false) {
          pending = write;
          break;
        }
      }
      await release();
      await pending;
      assert.ok(
        sent < MOST_FRAMES / 2,
        `The client sent ${sent} 1 KiB messages before it was held back`,
      );
      // None was lost on the way.
      await client.write(
        encodeMaskedFrame(1, new TextEncoder().encode("count"), [1, 2, 3, 4]),
      );
      const answer = await client.readFrame();
      assert.equal(new TextDecoder().decode(answer?.payload), `got ${sent}`);
    });
  });
}

Deno.test("--workers 1: a few large messages that fill the backlog's bytes do not pause m2fetch for good", async () => {
  // 17 MiB in 17 messages takes the worker over its 16 MiB bound long
  // before its 128-message report. It reported what it took only when its
  // inbox was empty after a message, so a health ping that came in while
  // the handler was busy, queued behind the last message, kept that report
  // back for good, and m2fetch took nothing more from mongrel2.
  await withHeldSocket("1", async (client, release) => {
    const messages = 20;
    const mask = [1, 2, 3, 4];
    const frame = encodeMaskedFrame(2, new Uint8Array(1024 * 1024), mask);
    for (let i = 0; i < messages; i++) await client.write(frame);
    // The handler holds its thread through a few of the pool's health
    // pings (one a second), which queue behind the messages.
    await delay(3000);
    await release();
    await client.write(
      encodeMaskedFrame(1, new TextEncoder().encode("count"), mask),
    );
    const answer = await within(client.readFrame(), 15_000, null);
    assert.equal(
      answer === null ? "no answer" : new TextDecoder().decode(answer.payload),
      `got ${messages}`,
    );
  });
});
