/**
 * WebSockets end to end: `ws_app.ts` served by m2fetch behind a real
 * mongrel2 (in-process server, ZeroMQ transport) and by `deno serve` (a
 * subprocess), each driven through {@linkcode WS_CASES} with Deno's
 * `WebSocket` client and a raw TCP client.
 *
 * Run: `deno test -A tests/websocket/e2e_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { upgradeWebSocket } from "../../mod.ts";
import app from "./ws_app.ts";
import { startDenoServe, startM2fetch } from "./servers.ts";
import { WS_CASES } from "./ws_cases.ts";

Deno.test("WebSockets through mongrel2 and m2fetch", async (t) => {
  await using m2fetch = await startM2fetch(app.fetch);
  const target = {
    kind: "m2fetch" as const,
    port: m2fetch.port,
    get: m2fetch.get,
    multiIdReplies: () => m2fetch.multiIdReplies,
  };
  // One request first: mongrel2 has subscribed once it is answered.
  await target.get("/room/size");
  for (const item of WS_CASES) {
    await t.step(item.name, () => item.run(target));
  }
  await t.step("the connection table empties", async () => {
    m2fetch.closeClient();
    const end = performance.now() + 3000;
    while (m2fetch.server.connections > 0 && performance.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(m2fetch.server.connections, 0);
    assert.equal(m2fetch.server.inFlight, 0);
  });
  // The only error: the handler throws for a subprotocol nobody offered.
  const problems = m2fetch.logs.filter((line) =>
    / (error|warn) /.test(line) && !line.includes("the client offered only")
  );
  assert.deepEqual(problems, []);
});

Deno.test("the same WebSocket app under deno serve", async (t) => {
  const module = new URL("./ws_app.ts", import.meta.url).pathname;
  await using server = await startDenoServe(module, ["-A"], "/room/size");
  const target = { kind: "deno" as const, port: server.port, get: server.get };
  for (const item of WS_CASES) {
    await t.step(item.name, () => item.run(target));
  }
});

Deno.test("a silent socket outlives mongrel2's idle reaper", async () => {
  // The reaper alone (kill_limit 0, no rate checks) kills a connection
  // quiet for 2 s: only the server's ctl keep-alive keeps this one.
  await using m2fetch = await startM2fetch(app.fetch, {
    settings: {
      "limits.min_ping": 2,
      "limits.tick_timer": 1,
      "limits.kill_limit": 0,
      "limits.min_read_rate": 0,
      "limits.min_write_rate": 0,
    },
    serve: { keepAliveInterval: 500 },
  });
  await m2fetch.get("/room/size");
  m2fetch.closeClient();
  const ws = new WebSocket(`ws://127.0.0.1:${m2fetch.port}/echo`);
  await new Promise((resolve) => ws.onopen = resolve);
  const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
  await new Promise((resolve) => setTimeout(resolve, 5000));
  assert.equal(ws.readyState, WebSocket.OPEN);
  ws.send("still here");
  const echo = await new Promise((resolve) => ws.onmessage = resolve);
  assert.equal((echo as MessageEvent).data, "still here");
  ws.close();
  assert.equal((await closed).code, 1005);
});

Deno.test("a WebSocket without download.flow_control is warned about, once", async () => {
  await using m2fetch = await startM2fetch((request) => {
    const { socket, response } = upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  }, { settings: { "download.flow_control": 0 } });
  for (let round = 0; round < 2; round++) {
    const client = new WebSocket(`ws://127.0.0.1:${m2fetch.port}/ws`);
    const echoed = new Promise((resolve) => client.onmessage = resolve);
    client.onopen = () => client.send("hi");
    assert.equal(((await echoed) as MessageEvent).data, "hi");
    const closed = new Promise((resolve) => client.onclose = resolve);
    client.close();
    await closed;
  }
  const warnings = m2fetch.logs.filter((line) =>
    line.includes("A WebSocket opened without download.flow_control")
  );
  assert.equal(warnings.length, 1, m2fetch.logs.join("\n"));
});

Deno.test("upgradeWebSocket() on a handshake mongrel2 passed as a plain request says so", async () => {
  await using server = await startM2fetch((request) =>
    upgradeWebSocket(request).response
  );
  using conn = await Deno.connect({ port: server.port, hostname: "127.0.0.1" });
  // No Sec-WebSocket-Version: mongrel2 passes a plain GET.
  await conn.write(new TextEncoder().encode(
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
  ));
  const buffer = new Uint8Array(4096);
  const n = await conn.read(buffer);
  assert.match(
    new TextDecoder().decode(buffer.subarray(0, n ?? 0)),
    /^HTTP\/1\.1 500 /,
  );
  assert.match(
    server.logs.join("\n"),
    /Cannot upgrade to a WebSocket: mongrel2 passed this request as a plain request, not a WebSocket handshake/,
  );
});

Deno.test("upgradeWebSocket() called twice on one request says so, as Deno's does", async () => {
  // Deno.upgradeWebSocket() throws "Already upgraded"; a second socket
  // would leave the first one never opening.
  await using server = await startM2fetch((request) => {
    upgradeWebSocket(request);
    return upgradeWebSocket(request).response;
  });
  const client = new WebSocket(`ws://127.0.0.1:${server.port}/ws`);
  let opened = false;
  client.onopen = () => {
    opened = true;
    client.close();
  };
  await new Promise((resolve) => client.onclose = resolve);
  assert.equal(opened, false);
  assert.match(
    server.logs.join("\n"),
    /Cannot upgrade to a WebSocket: this request was already upgraded/,
  );
});
