/**
 * The 101 a handler returns goes out with the same head whether the
 * handler runs on the main thread (`--workers 0`) or in a worker
 * (`--workers 1`): headers it adds, a subprotocol it names after
 * upgrading, and the casing it gives `upgrade` and `connection`. Through
 * a real mongrel2.
 */

import assert from "node:assert/strict";
import { type CliHarness, startCliHarness } from "../e2e/harness.ts";
import { RawWsClient } from "../websocket/raw_ws_client.ts";

const APP = "tests/workers/ws_head_app.ts";
const PATHS = ["/added", "/protocol", "/recased"];

/** The head of the 101 for a handshake on `path`, without its date. */
async function upgradeHead(harness: CliHarness, path: string): Promise<string> {
  const client = await RawWsClient.connect(harness.port, path, {
    "Sec-WebSocket-Protocol": "chat, superchat",
  });
  client.abort();
  return client.head.trimEnd().split("\r\n")
    .filter((line) => !/^date:/i.test(line)).join("\r\n");
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
