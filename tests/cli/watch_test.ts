import assert from "node:assert/strict";
import { delay, spawnCli, tempDir } from "./helpers.ts";
import { statusOf } from "../reliability/site.ts";

function appSource(version: string): string {
  return `export default {
  async fetch(request: Request): Promise<Response> {
    if (new URL(request.url).pathname === "/slow") {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return new Response("${version} slow");
    }
    return new Response("${version}");
  },
};
`;
}

Deno.test("cli dev --watch: an edit swaps the handler without restarting mongrel2; in-flight requests finish on the old code; a broken edit keeps the old code", async () => {
  await using tmp = await tempDir("m2w-");
  const app = `${tmp.path}/app.ts`;
  await Deno.writeTextFile(app, appSource("v1"));
  await using cli = await spawnCli([
    "dev",
    "--watch",
    "--port",
    "0",
    "--state-dir",
    `${tmp.path}/state`,
    app,
  ], /is serving .* at http:\/\/\S+\//);
  await cli.waitForOutput(`Watching ${tmp.path} for edits`);
  const output = cli.output();
  const url = /at (http:\/\/[^/\s]+)\//.exec(output)![1];
  const pid = /mongrel2 \(pid (\d+)/.exec(output)![1];
  assert.equal(await (await fetch(`${url}/`)).text(), "v1");

  const slow = fetch(`${url}/slow`).then((response) => response.text());
  // The slow request is running on v1 before the edit.
  while ((await statusOf(cli)).inFlight === 0) await delay(20);
  await Deno.writeTextFile(app, appSource("v2"));
  await cli.waitForOutput(
    /Reloaded .*app\.ts \(reload 1, after edits to app\.ts\)/,
  );
  assert.equal(await (await fetch(`${url}/`)).text(), "v2");
  assert.equal(await slow, "v1 slow");

  await Deno.writeTextFile(app, "export default {{ broken\n");
  await cli.waitForOutput(/Reload of .*app\.ts failed \(reload 2/);
  // What is wrong with the module, not where m2fetch noticed it.
  assert.match(
    cli.output(),
    /Reload of .*app\.ts failed \(reload 2, after edits to app\.ts\); the old code and options keep serving: .*app\.ts/,
  );
  assert.doesNotMatch(cli.output(), /at .*(cli\.ts|runtime\/)|ext:deno_/);
  assert.equal(await (await fetch(`${url}/`)).text(), "v2");

  await Deno.writeTextFile(app, appSource("v3"));
  await cli.waitForOutput(/Reloaded .*app\.ts \(reload 3/);
  assert.equal(await (await fetch(`${url}/`)).text(), "v3");
  // Without --workers each reload keeps dev --watch's one worker, and reads
  // m2fetch.json's --workers afresh: 0 there cannot leave the worker
  // without a restart, and says so.
  assert.doesNotMatch(cli.output(), /Reload kept/);
  await Deno.writeTextFile(`${tmp.path}/m2fetch.json`, '{ "workers": 0 }\n');
  await cli.waitForOutput(
    /Reloaded .*app\.ts \(reload 4, after edits to m2fetch\.json\)/,
  );
  assert.match(cli.output(), /Reload kept --workers as before/);
  assert.equal(await (await fetch(`${url}/`)).text(), "v3");

  assert.doesNotMatch(cli.output(), /stay cached/);
  // The same mongrel2 served every version.
  assert.deepEqual(
    [...cli.output().matchAll(/mongrel2 \(pid (\d+)/g)].map((m) => m[1]),
    [pid],
  );
  assert.equal((await cli.stop()).code, 0, cli.output());
});

Deno.test("cli dev --watch: an edit to an imported module is served in a worker (the default, and --workers 1), and warns with --workers 0", async () => {
  await using tmp = await tempDir("m2w-");
  const app = `${tmp.path}/app.ts`;
  const lib = `${tmp.path}/lib.ts`;
  await Deno.writeTextFile(lib, 'export const version = "lib1";\n');
  await Deno.writeTextFile(
    app,
    'import { version } from "./lib.ts";\nexport default { fetch: () => new Response(version) };\n',
  );
  for (const workers of ["0", "1", undefined]) {
    await Deno.writeTextFile(lib, 'export const version = "lib1";\n');
    await using cli = await spawnCli([
      "dev",
      "--watch",
      ...(workers === undefined ? [] : ["--workers", workers]),
      "--port",
      "0",
      "--state-dir",
      `${tmp.path}/state${workers ?? "default"}`,
      app,
    ], /is serving .* at http:\/\/\S+\//);
    await cli.waitForOutput("Watching");
    if (workers === undefined) {
      assert.match(cli.output(), /serving \S+app\.ts \(1 worker\)/);
      assert.match(cli.output(), /in fresh workers with everything it imports/);
    }
    const url = /at (http:\/\/[^/\s]+)\//.exec(cli.output())![1];
    assert.equal(await (await fetch(`${url}/`)).text(), "lib1");
    await Deno.writeTextFile(lib, 'export const version = "lib2";\n');
    await cli.waitForOutput(
      /Reloaded .*app\.ts \(reload 1, after edits to lib\.ts\)/,
    );
    const body = await (await fetch(`${url}/`)).text();
    if (workers === "0") {
      assert.equal(body, "lib1");
      assert.match(cli.output(), /Modules the handler imports stay cached/);
    } else {
      assert.equal(body, "lib2");
      assert.doesNotMatch(cli.output(), /stay cached/);
    }
    assert.equal((await cli.stop()).code, 0, cli.output());
  }
});

Deno.test("cli dev: when its mongrel2 dies, dev says so and exits 1", async () => {
  await using tmp = await tempDir("m2w-");
  await using cli = await spawnCli([
    "dev",
    "--port",
    "0",
    "--state-dir",
    `${tmp.path}/state`,
    "examples/hello.ts",
  ], /is serving .* at http:\/\/\S+\//);
  const pid = Number(/mongrel2 \(pid (\d+)/.exec(cli.output())![1]);
  Deno.kill(pid, "SIGKILL");
  const status = await cli.status;
  assert.equal(status.code, 1, cli.output());
  assert.match(
    cli.output(),
    new RegExp(
      `error mongrel2 \\(pid ${pid}\\) exited unexpectedly \\(killed by SIGKILL\\); its log is \\S+error\\.log\\. Stopping`,
    ),
  );
});
