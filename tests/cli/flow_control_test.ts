import assert from "node:assert/strict";
import { startMongrel2 } from "../../runtime/mongrel2/mod.ts";
import { RawClient } from "../e2e/harness.ts";
import { spawnCli, tempDir } from "./helpers.ts";

const MIB = 1024 * 1024;

// Answers /N with N bytes, streamed in 64 KiB chunks.
const BYTES_APP = `export default {
  fetch(request: Request): Response {
    let left = Number(new URL(request.url).pathname.slice(1));
    const chunk = new Uint8Array(64 * 1024).fill(0x61);
    return new Response(new ReadableStream({
      pull(controller) {
        if (left <= 0) return controller.close();
        const size = Math.min(left, chunk.length);
        left -= size;
        controller.enqueue(chunk.slice(0, size));
      },
    }), { headers: { "content-length": String(left) } });
  },
};
`;

// Only a connection's first request carries DOWNLOAD_CREDITS, so an m2fetch
// started after it (a restart, or a second process on the same handler)
// must be told that mongrel2 counts credits, or its first large reply on
// that connection makes mongrel2 close it.
for (const how of ["--flow-control on", "--mongrel2-config"] as const) {
  Deno.test(`cli ${how}: a keep-alive connection opened before a restart gets a 1 MiB response from the new m2fetch`, async () => {
    await using tmp = await tempDir("m2flow-");
    const app = `${tmp.path}/bytes.ts`;
    await Deno.writeTextFile(app, BYTES_APP);
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
      await using first = await spawnCli([...specs, app]);
      await client.write("GET /100 HTTP/1.1\r\nHost: localhost\r\n\r\n");
      const response = await client.readResponse();
      assert.equal(response.status, 200);
      assert.equal(response.body.length, 100);
      assert.equal((await first.stop()).code, 0, first.output());
    }
    const args = how === "--mongrel2-config"
      ? ["--mongrel2-config", mongrel2.databasePath]
      : [...specs, "--flow-control", "on"];
    await using second = await spawnCli([...args, app]);
    await client.write(`GET /${MIB} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    const response = await client.readResponse();
    assert.equal(response.status, 200);
    assert.equal(response.body.length, MIB);
    assert.ok(response.body.every((byte) => byte === 0x61));
    assert.equal((await second.stop()).code, 0, second.output());
  });
}

Deno.test("cli --flow-control: a value other than auto, on or off is a usage error", async () => {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli.ts", "--flow-control", "yes", "app.ts"],
    cwd: new URL("../..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stderr } = await command.output();
  assert.equal(code, 2);
  assert.match(new TextDecoder().decode(stderr), /flow-control/);
});
