/**
 * The 101 a handler returns goes out with the same head whether the
 * handler runs on the main thread (`--workers 0`) or in a worker
 * (`--workers 1`): headers it adds, a subprotocol it names after
 * upgrading, and the casing it gives `upgrade` and `connection`. Through
 * a real mongrel2.
 */

import assert from "node:assert/strict";
import { type CliHarness, startCliHarness } from "../e2e/harness.ts";

const APP = "tests/workers/ws_head_app.ts";
const PATHS = ["/added", "/protocol", "/recased"];

/** The head of the 101 for a handshake on `path`, without its date. */
async function upgradeHead(harness: CliHarness, path: string): Promise<string> {
  using conn = await Deno.connect({
    port: harness.port,
    hostname: "127.0.0.1",
  });
  await conn.write(new TextEncoder().encode(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${
      btoa("0123456789abcdef")
    }\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n`,
  ));
  let head = "";
  const buffer = new Uint8Array(1024);
  while (!head.includes("\r\n\r\n")) {
    const n = await conn.read(buffer);
    if (n === null) break;
    head += new TextDecoder().decode(buffer.subarray(0, n));
  }
  head = head.slice(0, head.indexOf("\r\n\r\n"));
  return head.split("\r\n").filter((line) => !/^date:/i.test(line)).join(
    "\r\n",
  );
}

Deno.test("a handler's 101 goes out with the same head under --workers 0 and --workers 1", async () => {
  const heads: Record<string, string[]> = {};
  for (const workers of ["0", "1"]) {
    await using harness = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    heads[workers] = [];
    for (const path of PATHS) {
      heads[workers].push(await upgradeHead(harness, path));
    }
  }
  const [added, protocol, recased] = heads["0"];
  // What the main thread sends is what the handler returned.
  assert.match(added, /^HTTP\/1\.1 101 /);
  for (
    const line of [
      "x-app: ws",
      "x-multi: 1, 2",
      "set-cookie: a=1",
      "set-cookie: b=2",
    ]
  ) {
    assert.ok(added.split("\r\n").includes(line), added);
  }
  assert.ok(
    protocol.split("\r\n").includes("sec-websocket-protocol: superchat"),
    protocol,
  );
  assert.ok(recased.split("\r\n").includes("upgrade: WebSocket"), recased);
  assert.ok(recased.split("\r\n").includes("connection: upgrade"), recased);
  // And a worker's goes out the same.
  assert.deepEqual(heads["1"], heads["0"]);
});
