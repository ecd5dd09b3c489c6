/**
 * What a WebSocket's request goes through, the same under `deno serve` and
 * under m2fetch (main thread and worker): `info.completed` resolves once
 * the 101 is out, before `open`, and `request.signal` aborts when the
 * socket closes.
 */

import assert from "node:assert/strict";
import { startCliHarness } from "../e2e/harness.ts";
import { startDenoServe } from "./servers.ts";
import { waitFor } from "../subprocess.ts";

const APP = "tests/websocket/upgrade_life_app.ts";

async function lifeOfASocket(origin: string): Promise<string[]> {
  const socket = new WebSocket(`${origin.replace("http", "ws")}/ws`);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  const echoed = new Promise((resolve) => socket.onmessage = resolve);
  socket.send("hi");
  await echoed;
  const closed = new Promise((resolve) => socket.onclose = resolve);
  socket.close(1000);
  await closed;
  let events: string[] = [];
  await waitFor(async () => {
    events = await (await fetch(`${origin}/events`)).json();
    return events.some((event) => event.startsWith("later"));
  }, 2500);
  return events;
}

const EXPECTED = [
  "completed",
  "open",
  "close, signal aborted: true",
  "later, signal aborted: true",
];

Deno.test("deno serve: a socket's info.completed resolves at the 101, its request.signal aborts at close", async () => {
  await using server = await startDenoServe(
    new URL("./upgrade_life_app.ts", import.meta.url).pathname,
    [],
    "/events",
  );
  assert.deepEqual(
    await lifeOfASocket(`http://127.0.0.1:${server.port}`),
    EXPECTED,
  );
});

for (const workers of ["0", "1"]) {
  Deno.test(`m2fetch --workers ${workers}: a socket's info.completed resolves at the 101, its request.signal aborts at close, as under deno serve`, async () => {
    await using harness = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    assert.deepEqual(await lifeOfASocket(harness.url), EXPECTED);
  });
}
