/**
 * A client that sends faster than a WebSocket's handler takes its
 * messages: m2fetch holds only a bounded backlog. mongrel2 has no flow
 * control for what clients send, so the bound is m2fetch taking no more
 * from mongrel2, which then stops reading the client. `--workers 0` is the
 * reference: a handler busy on the main thread holds everything.
 */

import assert from "node:assert/strict";
import { type CliHarness, startCliHarness } from "../e2e/harness.ts";
import { RawWsClient } from "../websocket/raw_ws_client.ts";
import { encodeMaskedFrame } from "../websocket/frame_helpers.ts";
import { delay, waitFor, within } from "../subprocess.ts";

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
  run: (
    client: RawWsClient,
    release: () => Promise<void>,
    harness: CliHarness,
  ) => Promise<void>,
  args: string[] = [],
): Promise<void> {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", workers, ...args],
  });
  const dir = await Deno.makeTempDir({ prefix: "m2wbl-" });
  const release = `${dir}/release`;
  try {
    const client = await RawWsClient.connect(
      harness.port,
      `/?release=${encodeURIComponent(release)}`,
    );
    assert.equal(client.status, 101);
    await run(client, () => Deno.writeTextFile(release, ""), harness);
    client.abort();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Sends 1 KiB messages until a write stays pending (nobody reads the
 * client anymore), or MOST_FRAMES of them.
 *
 * @returns How many were sent, and the pending write.
 */
async function sendUntilHeld(
  client: RawWsClient,
): Promise<{ sent: number; pending: Promise<void> | undefined }> {
  const frame = encodeMaskedFrame(2, new Uint8Array(1024), [1, 2, 3, 4]);
  const batch = new Uint8Array(frame.length * FRAMES_PER_WRITE);
  for (let i = 0; i < FRAMES_PER_WRITE; i++) {
    batch.set(frame, i * frame.length);
  }
  let sent = 0;
  while (sent < MOST_FRAMES) {
    const write = client.write(batch);
    sent += FRAMES_PER_WRITE;
    if (await within(write.then(() => true), 2000, false) === false) {
      return { sent, pending: write };
    }
  }
  return { sent, pending: undefined };
}

/** Asks the app how many binary messages its socket has had. */
async function count(client: RawWsClient): Promise<string> {
  await client.write(
    encodeMaskedFrame(1, new TextEncoder().encode("count"), [1, 2, 3, 4]),
  );
  return new TextDecoder().decode((await client.readFrame())?.payload);
}

for (const workers of ["0", "1"]) {
  Deno.test(`--workers ${workers}: a client faster than its socket's handler is held back, not buffered`, async () => {
    await withHeldSocket(workers, async (client, release) => {
      const { sent, pending } = await sendUntilHeld(client);
      await release();
      await pending;
      assert.ok(
        sent < MOST_FRAMES / 2,
        `The client sent ${sent} 1 KiB messages before it was held back`,
      );
      // None was lost on the way.
      assert.equal(await count(client), `got ${sent}`);
    });
  });
}

Deno.test("--workers 1: a client is held back again each time its socket's handler falls behind", async () => {
  await withHeldSocket("1", async (client, release) => {
    const first = await sendUntilHeld(client);
    await release();
    await first.pending;
    assert.equal(await count(client), `got ${first.sent}`);
    // Caught up: the next time the handler is slow holds the client again.
    const dir = await Deno.makeTempDir({ prefix: "m2wbl-" });
    try {
      await client.write(
        encodeMaskedFrame(
          1,
          new TextEncoder().encode(`hold ${dir}/again`),
          [1, 2, 3, 4],
        ),
      );
      const second = await sendUntilHeld(client);
      await Deno.writeTextFile(`${dir}/again`, "");
      await second.pending;
      assert.ok(
        second.sent < MOST_FRAMES / 2,
        `The client sent ${second.sent} 1 KiB messages before it was held back again`,
      );
      assert.equal(await count(client), `got ${first.sent + second.sent}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

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

Deno.test("--workers 1: a worker that hangs while m2fetch waits for it to catch up is replaced, and m2fetch takes messages again", async () => {
  // Over the 16 MiB bound, then never released: m2fetch takes nothing more
  // from mongrel2 until the worker catches up, which it never does. Its
  // replacement must end the wait, or every connection goes unanswered.
  await withHeldSocket("1", async (client, _release, harness) => {
    const frame = encodeMaskedFrame(
      2,
      new Uint8Array(1024 * 1024),
      [1, 2, 3, 4],
    );
    for (let i = 0; i < 20; i++) await client.write(frame);
    assert.ok(
      await waitFor(
        () => harness.output().includes("Handler worker 0 replaced"),
        10_000,
      ),
      harness.output(),
    );
    const next = await within(
      RawWsClient.connect(harness.port, "/?release=/nonexistent"),
      15_000,
      null,
    );
    assert.equal(next?.status, 101, "m2fetch no longer answers");
    next.abort();
    assert.match(harness.output(), /answered no ping for 500 ms/);
  }, ["--worker-timeout", "500ms"]);
});
