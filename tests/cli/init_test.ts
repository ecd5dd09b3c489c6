import assert from "node:assert/strict";
import { within } from "../subprocess.ts";
import { findFreePort, runCli, spawnCli, tempDir, waitFor } from "./helpers.ts";

const decoder = new TextDecoder();

function m2sh(args: string[], cwd: string): Deno.Command {
  return new Deno.Command("m2sh", {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { LOGNAME: Deno.env.get("LOGNAME") ?? "root" },
  });
}

Deno.test("cli init: the created app runs behind mongrel2 the way its README says", async () => {
  await using tmp = await tempDir("m2i-");
  const dir = `${tmp.path}/hello-app`;
  const port = await findFreePort();
  const init = await runCli(["init", "--port", String(port), dir]);
  assert.equal(init.code, 0, init.stderr);
  assert.match(
    init.stdout,
    /Created .*hello-app: app\.ts, app_test\.ts, deno\.json, m2fetch\.json, mongrel2\.conf, README\.md/,
  );
  const files = [...Deno.readDirSync(dir)].map((entry) => entry.name).sort();
  assert.deepEqual(files, [
    "README.md",
    "app.ts",
    "app_test.ts",
    "deno.json",
    "logs",
    "m2fetch.json",
    "mongrel2.conf",
    "run",
    "tmp",
  ]);
  const config = JSON.parse(await Deno.readTextFile(`${dir}/m2fetch.json`));
  assert.deepEqual(config, {
    app: "app.ts",
    "flow-control": "on",
    "recv-spec": [`ipc://${dir}/run/m2fetch_recv`],
    "send-spec": [`ipc://${dir}/run/m2fetch_send`],
    "upload-temp-store": `${dir}/tmp/upload.XXXXXX`,
  });
  const conf = await Deno.readTextFile(`${dir}/mongrel2.conf`);
  assert.match(conf, new RegExp(`send_spec="ipc://${dir}/run/m2fetch_send"`));
  assert.match(conf, /protocol="tnetstring"/);
  assert.match(conf, /"download\.flow_control": 1/);
  assert.match(conf, new RegExp(`port=${port}`));
  const readme = await Deno.readTextFile(`${dir}/README.md`);
  assert.match(readme, /m2sh load -config mongrel2\.conf -db config\.sqlite/);
  assert.match(readme, /m2sh start -db config\.sqlite -name main/);
  assert.match(readme, /--app-path \./);

  // Its test passes as written, with m2fetch's testing module found
  // through the deno.json next to it, and its files pass deno's own
  // format and lint checks (the README was written with long lines).
  for (const args of [["fmt", "--check"], ["lint"], ["test"]]) {
    const run = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(
      run.success,
      `deno ${args.join(" ")}: ${
        decoder.decode(run.stdout) + decoder.decode(run.stderr)
      }`,
    );
    if (args[0] === "test") {
      assert.match(decoder.decode(run.stdout), /1 passed/);
    }
  }
  const tasks = JSON.parse(await Deno.readTextFile(`${dir}/deno.json`)).tasks;
  assert.match(tasks.start, /cli\.ts --app-path \.$/);

  // As the README says: load, start, then m2fetch --app-path . from there.
  const load = await m2sh(
    ["load", "-config", "mongrel2.conf", "-db", "config.sqlite"],
    dir,
  ).output();
  assert.ok(load.success, decoder.decode(load.stderr));
  const mongrel2 = m2sh(
    ["start", "-db", "config.sqlite", "-name", "main"],
    dir,
  ).spawn();
  try {
    assert.ok(
      await waitFor(async () => {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          return true;
        } catch {
          return false;
        }
      }, 10_000),
      "mongrel2 did not start",
    );
    await using cli = await spawnCli(["--app-path", "."], " serving ", {
      cwd: dir,
    });
    const response = await fetch(`http://127.0.0.1:${port}/there`);
    assert.equal(await response.text(), "Hello from m2fetch at /there\n");
    assert.equal((await cli.stop()).code, 0, cli.output());
  } finally {
    await m2sh(["stop", "-db", "config.sqlite", "-name", "main"], dir)
      .output();
    const stopped = await within(mongrel2.status, 5000, null);
    if (stopped === null) {
      // m2sh start runs mongrel2 through system(): kill by its pid file.
      const pid = Number(
        await Deno.readTextFile(`${dir}/run/mongrel2.pid`).catch(() => "0"),
      );
      if (pid > 0) Deno.kill(pid, "SIGKILL");
      mongrel2.kill("SIGKILL");
      await mongrel2.status;
    }
    await mongrel2.stdout.cancel();
    await mongrel2.stderr.cancel();
  }

  // `deno task dev` serves at the same address (the task's own command,
  // run without the task runner so that stopping it reaches m2fetch).
  const devArgs = tasks.dev.split(" ");
  assert.deepEqual(devArgs.slice(devArgs.indexOf("dev")), [
    "dev",
    "--port",
    String(port),
    "--host",
    "127.0.0.1",
    "--watch",
    "app.ts",
  ]);
  await using dev = await spawnCli(
    devArgs.slice(devArgs.indexOf("dev")),
    " serving ",
    { cwd: dir },
  );
  const answer = await fetch(`http://127.0.0.1:${port}/dev`);
  assert.equal(await answer.text(), "Hello from m2fetch at /dev\n");
  assert.equal((await dev.stop()).code, 0, dev.output());
});

Deno.test("cli init: the README's curl line is a URL for any --host", async () => {
  for (
    const [host, url] of [
      ["0.0.0.0", "http://127.0.0.1:8080/"],
      ["::", "http://[::1]:8080/"],
      ["::1", "http://[::1]:8080/"],
      ["10.1.2.3", "http://10.1.2.3:8080/"],
    ]
  ) {
    await using tmp = await tempDir("m2i-");
    const init = await runCli([
      "init",
      "--port",
      "8080",
      "--host",
      host,
      tmp.path,
    ]);
    assert.equal(init.code, 0, init.stderr);
    const readme = await Deno.readTextFile(`${tmp.path}/README.md`);
    assert.ok(readme.includes(`\ncurl ${url} `), `--host ${host}: ${readme}`);
  }
});

Deno.test("cli init: fills an existing empty directory, and never overwrites a file", async () => {
  await using tmp = await tempDir("m2i-");
  const first = await runCli(["init", tmp.path]);
  assert.equal(first.code, 0, first.stderr);
  await Deno.writeTextFile(`${tmp.path}/app.ts`, "// mine\n");
  await Deno.remove(`${tmp.path}/README.md`);
  const again = await runCli(["init", tmp.path]);
  assert.equal(again.code, 1);
  assert.match(
    again.stderr,
    /Cannot initialise .*: app\.ts, app_test\.ts, deno\.json, m2fetch\.json, mongrel2\.conf already exist and init never overwrites files/,
  );
  assert.equal(await Deno.readTextFile(`${tmp.path}/app.ts`), "// mine\n");
  assert.equal(
    await Deno.stat(`${tmp.path}/README.md`).catch(() => null),
    null,
    "init wrote some files before refusing",
  );

  await Deno.writeTextFile(`${tmp.path}/a-file`, "");
  const onFile = await runCli(["init", `${tmp.path}/a-file`]);
  assert.equal(onFile.code, 1);
  assert.match(onFile.stderr, /it exists and is not a directory/);
  const none = await runCli(["init"]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /Expected one app directory/);
});

Deno.test("cli init: deno task test runs docs/testing.md's upload and module-path tests", async () => {
  // Both touch files: the upload test writes the temp file the server reads
  // and deletes, and a handler given by path is read from disk.
  await using tmp = await tempDir("m2i-");
  const init = await runCli(["init", tmp.path]);
  assert.equal(init.code, 0, init.stderr);
  await Deno.writeTextFile(
    `${tmp.path}/files_test.ts`,
    `import assert from "node:assert/strict";
import { buildRequestMessage, runHandler } from "@m2fetch/m2fetch/testing";

Deno.test("an upload mongrel2 spooled to a file", async () => {
  const dir = await Deno.makeTempDir();
  const path = \`\${dir}/upload.Ab12Cd\`;
  await Deno.writeTextFile(path, "a large body");
  const fields = { method: "POST", url: "/", headers: { "content-length": "12" } };
  const run = await runHandler(
    async (request: Request) => new Response(await request.text()),
    [
      await buildRequestMessage(fields, { upload: { path, stage: "start" } }),
      await buildRequestMessage(fields, { upload: { path, stage: "done" } }),
    ],
    { server: { uploads: { store: { template: \`\${dir}/upload.XXXXXX\` } } } },
  );
  assert.equal(await run.response.text(), "a large body");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a handler module can be given by path", async () => {
  const run = await runHandler(new URL("./app.ts", import.meta.url), await buildRequestMessage("/"));
  assert.equal(await run.response.text(), "Hello from m2fetch at /\\n");
});
`,
  );
  const test = await new Deno.Command(Deno.execPath(), {
    args: ["task", "test"],
    cwd: tmp.path,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const output = decoder.decode(test.stdout) + decoder.decode(test.stderr);
  assert.ok(test.success, output);
  assert.match(output, /3 passed/);
});
