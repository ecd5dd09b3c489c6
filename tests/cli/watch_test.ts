import assert from "node:assert/strict";
import {
  delay,
  isRunning,
  mongrel2sIn,
  runCli,
  spawnCli,
  tempDir,
} from "./helpers.ts";
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

/** GETs `url`: the status and the body. */
async function get(url: string): Promise<[number, string]> {
  const response = await fetch(url);
  return [response.status, await response.text()];
}

/**
 * `dev --watch` on `dir/app.ts` with the state in `dir/state`, once it
 * says that it answers 503 until the module loads (the module fails to).
 */
function devWaitingForEdit(dir: string, ...extra: string[]) {
  return spawnCli([
    "dev",
    "--watch",
    ...extra,
    "--port",
    "0",
    "--state-dir",
    `${dir}/state`,
    `${dir}/app.ts`,
  ], /is answering 503 until \S+app\.ts loads at http:\/\/\S+\//);
}

Deno.test("cli dev --watch: a module that fails to load at start-up gets 503 until an edit lets it load, on the same mongrel2", async () => {
  await using tmp = await tempDir("m2w-");
  const app = `${tmp.path}/app.ts`;
  await Deno.writeTextFile(app, "export default {{ broken\n");
  await using cli = await devWaitingForEdit(tmp.path);
  // Logged once the watcher runs: an edit from now on reloads.
  await cli.waitForOutput(
    `error Loading ${app} failed; requests get 503 until an edit in ${tmp.path} lets it load: Cannot load handler module file://${app}: SyntaxError: `,
  );
  assert.match(
    cli.output(),
    /serving \S+app\.ts \(not loaded, answering 503\)/,
  );
  const url = /at (http:\/\/[^/\s]+)\//.exec(cli.output())![1];
  const pid = /mongrel2 \(pid (\d+)/.exec(cli.output())![1];
  // Answered at once, with what the log says.
  const [status, body] = await get(`${url}/`);
  assert.equal(status, 503);
  assert.match(
    body,
    /^The handler module has not loaded; m2fetch answers 503 until a reload \(under dev --watch, an edit\) loads it\.\n\nCannot load handler module \S+app\.ts: SyntaxError: /,
  );
  assert.match(cli.output(), /access GET \/ 503 /);

  // Still broken: another reason, still 503, which says the new one.
  await Deno.writeTextFile(app, 'throw new Error("top-level boom");\n');
  await cli.waitForOutput(
    /error Loading \S+app\.ts failed \(reload 1, after edits to app\.ts\); requests still get 503: Cannot load handler module \S+app\.ts: top-level boom/,
  );
  const [again, why] = await get(`${url}/`);
  assert.equal(again, 503);
  assert.match(why, /top-level boom/);

  await Deno.writeTextFile(app, appSource("v1"));
  await cli.waitForOutput(
    /info Loaded \S+app\.ts \(reload 2, after edits to app\.ts\): serving it from now on/,
  );
  assert.deepEqual(await get(`${url}/`), [200, "v1"]);
  // From now on an edit reloads as usual.
  await Deno.writeTextFile(app, appSource("v2"));
  await cli.waitForOutput(/Reloaded \S+app\.ts \(reload 3/);
  assert.deepEqual(await get(`${url}/`), [200, "v2"]);
  assert.doesNotMatch(cli.output(), /at .*(cli\.ts|runtime\/)|ext:deno_/);
  assert.deepEqual(
    [...cli.output().matchAll(/mongrel2 \(pid (\d+)/g)].map((m) => m[1]),
    [pid],
  );
  assert.equal((await cli.stop()).code, 0, cli.output());
});

Deno.test("cli dev --watch --workers 0: a missing import at start-up loads once the file exists, and reloads after", async () => {
  await using tmp = await tempDir("m2w-");
  const app = `${tmp.path}/app.ts`;
  const lib = `${tmp.path}/lib.ts`;
  await Deno.writeTextFile(
    app,
    'import { version } from "./lib.ts";\nexport default { fetch: () => new Response(version) };\n',
  );
  await using cli = await devWaitingForEdit(tmp.path, "--workers", "0");
  await cli.waitForOutput(
    `requests get 503 until an edit in ${tmp.path} lets it load: Cannot load handler module ${app}: Module not found "file://${lib}"`,
  );
  const url = /at (http:\/\/[^/\s]+)\//.exec(cli.output())![1];
  const [status, body] = await get(`${url}/`);
  assert.equal(status, 503);
  assert.match(body, /Module not found/);

  await Deno.writeTextFile(lib, 'export const version = "lib1";\n');
  await cli.waitForOutput(
    /Loaded \S+app\.ts \(reload 1, after edits to lib\.ts\)/,
  );
  assert.deepEqual(await get(`${url}/`), [200, "lib1"]);
  // The main thread imports the module under a new URL each time: the one
  // that failed, then the one that loaded, are not served again.
  await Deno.writeTextFile(
    app,
    'export default { fetch: () => new Response("app2") };\n',
  );
  await cli.waitForOutput(/Reloaded \S+app\.ts \(reload 2/);
  assert.deepEqual(await get(`${url}/`), [200, "app2"]);
  assert.equal((await cli.stop()).code, 0, cli.output());
});

Deno.test("cli dev --watch: Ctrl-C while waiting for an edit stops mongrel2 and exits 0; without --watch a module that fails to load exits 1", async () => {
  await using tmp = await tempDir("m2w-");
  const app = `${tmp.path}/app.ts`;
  await Deno.writeTextFile(app, "export default {{ broken\n");
  await using cli = await devWaitingForEdit(tmp.path);
  await cli.waitForOutput(`error Loading ${app} failed`);
  const pid = Number(/mongrel2 \(pid (\d+)/.exec(cli.output())![1]);
  assert.deepEqual(await mongrel2sIn(tmp.path), [pid]);
  assert.equal((await cli.stop("SIGINT")).code, 0, cli.output());
  assert.match(cli.output(), /info Stopped\n$/);
  assert.equal(isRunning(pid), false, cli.output());
  assert.deepEqual(await mongrel2sIn(tmp.path), []);

  const once = await runCli([
    "dev",
    "--port",
    "0",
    "--state-dir",
    `${tmp.path}/state`,
    app,
  ]);
  assert.equal(once.code, 1, once.stderr);
  assert.match(
    once.stderr,
    /^m2fetch: Cannot load handler module \S+app\.ts: SyntaxError: /m,
  );
  assert.doesNotMatch(once.stdout + once.stderr, /503|Watching/);
  assert.deepEqual(await mongrel2sIn(tmp.path), []);
});
