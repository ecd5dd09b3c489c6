import assert from "node:assert/strict";
import { startMongrel2 } from "../../runtime/mongrel2/mod.ts";
import { RawClient } from "../e2e/harness.ts";
import { ROOT, runCli, spawnCli, tempDir } from "./helpers.ts";

const MIB = 1024 * 1024;

// Streams /big?mib=N in 64 KiB chunks of "x" (no content-length: chunked).
const APP = `${ROOT}/tests/reliability/stream_app.ts`;

// Only a connection's first request carries DOWNLOAD_CREDITS, so an m2fetch
// started after it (a restart, or a second process on the same handler)
// must be told that mongrel2 counts credits, or its first large reply on
// that connection makes mongrel2 close it.
for (const how of ["--flow-control on", "--mongrel2-config"] as const) {
  Deno.test(`cli ${how}: a keep-alive connection opened before a restart gets a 1 MiB response from the new m2fetch`, async () => {
    await using tmp = await tempDir("m2flow-");
    await using mongrel2 = await startMongrel2({
      dir: `${tmp.path}/m2`,
      handlers: [{ route: "/" }],
    });
    const [handler] = mongrel2.handlers;
    const specs = [
      "--send-spec",
      handler.sendSpec,
      "--recv-spec",
      handler.recvSpec,
    ];
    await using client = await RawClient.connect(mongrel2.port);
    {
      await using first = await spawnCli([...specs, APP]);
      await client.write("GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n");
      const response = await client.readResponse();
      assert.equal(response.status, 200);
      assert.equal(new TextDecoder().decode(response.body), "ok /hello\n");
      assert.equal((await first.stop()).code, 0, first.output());
    }
    const args = how === "--mongrel2-config"
      ? ["--mongrel2-config", mongrel2.databasePath]
      : [...specs, "--flow-control", "on"];
    await using second = await spawnCli([...args, APP]);
    await client.write("GET /big?mib=1 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const response = await client.readResponse();
    assert.equal(response.status, 200);
    assert.equal(response.body.length, MIB);
    assert.ok(response.body.every((byte) => byte === 0x78));
    assert.equal((await second.stop()).code, 0, second.output());
  });
}

Deno.test("cli --flow-control: a value other than auto, on or off is a usage error", async () => {
  const { code, stderr } = await runCli(["--flow-control", "yes", "app.ts"]);
  assert.equal(code, 2);
  assert.match(stderr, /flow-control/);
});
