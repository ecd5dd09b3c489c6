/**
 * WebSockets served from handler workers (`--workers`): the socket lives in
 * the worker that upgraded it, frames cross to and from the main thread.
 */

import assert from "node:assert/strict";
import { startCliHarness } from "../e2e/harness.ts";
import { RawWsClient } from "../websocket/raw_ws_client.ts";

const APP = "tests/workers/ws_worker_app.ts";

function opened(socket: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = () => reject(new Error("WebSocket failed to open"));
  });
}

function nextMessage(socket: WebSocket): Promise<string | ArrayBuffer> {
  return new Promise((resolve) => {
    socket.onmessage = (event) => resolve(event.data);
  });
}

Deno.test("--workers 2 echoes WebSocket messages and closes with the client's code", async () => {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", "2"],
  });
  const socket = new WebSocket(`${harness.url.replace("http", "ws")}/ws`);
  socket.binaryType = "arraybuffer";
  await opened(socket);

  let reply = nextMessage(socket);
  socket.send("hello");
  assert.equal(await reply, "hello");

  const bytes = new Uint8Array(200_000).map((_, i) => i % 251);
  reply = nextMessage(socket);
  socket.send(bytes);
  assert.deepEqual(new Uint8Array(await reply as ArrayBuffer), bytes);

  reply = nextMessage(socket);
  socket.send("where");
  assert.match(String(await reply), /^worker /);

  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  socket.close(4001, "bye");
  const event = await closed;
  assert.equal(event.code, 4001);
  assert.equal(event.reason, "bye");
});

for (const workers of ["0", "2"]) {
  Deno.test(`--workers ${workers}: headers the handler adds to the upgrade response reach the client`, async () => {
    await using harness = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    const client = await RawWsClient.connect(harness.port, "/ws");
    client.abort();
    const { head } = client;
    assert.match(head, /^HTTP\/1\.1 101/);
    const lines = head.toLowerCase().split("\r\n");
    assert.ok(lines.includes("x-app: ws"), head);
    assert.ok(lines.includes("set-cookie: a=1"), head);
    assert.ok(lines.includes("set-cookie: b=2"), head);
    assert.equal(lines.filter((line) => line.startsWith("upgrade:")).length, 1);
  });
}

Deno.test("--workers 1 fires close on the worker's socket and aborts its request.signal when the client vanishes", async () => {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", "1"],
  });
  const url = `${harness.url.replace("http", "ws")}/ws`;
  const first = new WebSocket(url);
  await opened(first);
  // The app counts sockets whose close event fired; a new socket asks.
  const conn = await Deno.connect({
    port: harness.port,
    hostname: "127.0.0.1",
  });
  const key = btoa("0123456789abcdef");
  await conn.write(new TextEncoder().encode(
    `GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  ));
  const head = new Uint8Array(1024);
  const n = await conn.read(head);
  assert.match(
    new TextDecoder().decode(head.subarray(0, n ?? 0)),
    /^HTTP\/1\.1 101/,
  );
  conn.close(); // no close frame
  let closedCount = "";
  for (let attempt = 0; attempt < 50 && closedCount !== "closed 1"; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const reply = nextMessage(first);
    first.send("closed?");
    closedCount = String(await reply);
  }
  assert.equal(closedCount, "closed 1");
  let abortedCount = "";
  for (
    let attempt = 0;
    attempt < 50 && abortedCount !== "aborted 1";
    attempt++
  ) {
    const reply = nextMessage(first);
    first.send("aborted?");
    abortedCount = String(await reply);
    if (abortedCount !== "aborted 1") {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  assert.equal(abortedCount, "aborted 1");
  const done = new Promise((resolve) => first.onclose = resolve);
  first.close();
  await done;
});

for (const workers of ["0", "1"]) {
  Deno.test(`--workers ${workers}: a socket the server closes ends clean, completed and logged 101`, async () => {
    await using harness = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    const url = `${harness.url.replace("http", "ws")}/ws`;
    // The client's TCP close races m2fetch's end of the stream: a few
    // rounds give the race its chances.
    const rounds = 5;
    for (let i = 0; i < rounds; i++) {
      const socket = new WebSocket(url);
      await opened(socket);
      const closed = new Promise<CloseEvent>((resolve) =>
        socket.onclose = resolve
      );
      socket.send("bye");
      const event = await closed;
      assert.equal(event.code, 4000);
      assert.equal(event.wasClean, true);
    }
    const probe = new WebSocket(url);
    await opened(probe);
    let ends: string[] = [];
    for (let attempt = 0; attempt < 50 && ends.length < rounds; attempt++) {
      const reply = nextMessage(probe);
      probe.send("ends?");
      ends = JSON.parse(String(await reply));
      if (ends.length < rounds) await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(ends, Array(rounds).fill("4000 true completed"));
    const done = new Promise((resolve) => probe.onclose = resolve);
    probe.close();
    await done;
    const access = harness.output().match(/access GET \/ws \d+/g) ?? [];
    assert.deepEqual(
      access.slice(0, rounds),
      Array(rounds).fill("access GET /ws 101"),
      harness.output(),
    );
  });
}

Deno.test("--workers 2: SIGHUP closes the old workers' sockets with 1001, and new sockets work", async () => {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", "2", "--shutdown-timeout", "20s"],
  });
  const url = `${harness.url.replace("http", "ws")}/ws`;
  const sockets = [new WebSocket(url), new WebSocket(url)];
  await Promise.all(sockets.map(opened));
  const closed = sockets.map((socket) =>
    new Promise<CloseEvent>((resolve) => socket.onclose = resolve)
  );
  const started = performance.now();
  harness.process.kill("SIGHUP");
  for (const event of await Promise.all(closed)) {
    assert.equal(event.code, 1001);
    assert.equal(event.wasClean, true);
  }
  // Not cut at the end of the 20 s drain: told at once.
  assert.ok(performance.now() - started < 10_000);
  const fresh = new WebSocket(url);
  await opened(fresh);
  const reply = nextMessage(fresh);
  fresh.send("after the reload");
  assert.equal(await reply, "after the reload");
  const done = new Promise((resolve) => fresh.onclose = resolve);
  fresh.close();
  await done;
});
