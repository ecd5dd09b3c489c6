/**
 * What a user gets wrong on the command line: each mistake ends the
 * command with one line that says what failed and why, a non-zero exit
 * code, and no mongrel2 left running.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConfigFileError, writeConfigFile } from "../../cli/config_file.ts";
import { SERVE_OPTIONS } from "../../cli/options.ts";
import { closest } from "../../cli/args.ts";
import { CLI, mongrel2sIn, runCli, runCommand, tempDir } from "./helpers.ts";

const HELLO = 'export default { fetch: () => new Response("hi") };\n';

Deno.test("dev on a port in use says so first, exits 1 and leaves no mongrel2", async () => {
  await using tmp = await tempDir("m2x-");
  await Deno.writeTextFile(`${tmp.path}/app.ts`, HELLO);
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = taken.addr.port;
  const state = `${tmp.path}/state`;
  const { code, stderr } = await runCli(
    ["dev", "--port", String(port), "--state-dir", state, "app.ts"],
    tmp.path,
  );
  assert.equal(code, 1, stderr);
  assert.equal(
    stderr.split("\n")[0],
    `m2fetch: Cannot start mongrel2 in ${state}: it cannot listen on 127.0.0.1:${port}: another process already listens on port ${port} (for dev, pick another --port, or --port 0 for a free one)`,
  );
  assert.deepEqual(await mongrel2sIn(state), []);
});

Deno.test("dev without mongrel2 or m2sh on PATH names the one missing and the package, and exits 1", async () => {
  await using tmp = await tempDir("m2x-");
  await Deno.writeTextFile(`${tmp.path}/app.ts`, HELLO);
  // A PATH with deno and, in turn, one of mongrel2's two programs.
  const bin = `${tmp.path}/bin`;
  await Deno.mkdir(bin);
  await Deno.symlink(Deno.execPath(), `${bin}/deno`);
  for (
    const [present, missing] of [["mongrel2", "m2sh"], ["m2sh", "mongrel2"]]
  ) {
    const found = await runCommand("sh", ["-c", `command -v ${present}`]);
    await Deno.remove(`${bin}/${missing}`).catch(() => {});
    await Deno.symlink(found.stdout.trim(), `${bin}/${present}`);
    const { code, stderr } = await runCommand(
      `${bin}/deno`,
      [
        "run",
        "-A",
        CLI,
        "dev",
        "--port",
        "0",
        "--state-dir",
        "state",
        "app.ts",
      ],
      { cwd: tmp.path, env: { PATH: bin, NO_COLOR: "1" } },
    );
    assert.equal(code, 1, stderr);
    assert.match(
      stderr,
      new RegExp(
        `^m2fetch: Cannot (load the mongrel2 config|start mongrel2): there is no "${missing}" on PATH; install mongrel2, which brings mongrel2 and m2sh \\(Debian: apt-get install mongrel2-core\\)`,
      ),
    );
    await Deno.remove(`${bin}/${present}`);
  }
  assert.deepEqual(await mongrel2sIn(`${tmp.path}/state`), []);
});

Deno.test("dev, init and config say which directory they cannot write, and exit 1", async () => {
  await using tmp = await tempDir("m2x-");
  await Deno.writeTextFile(`${tmp.path}/app.ts`, HELLO);
  // Root writes anywhere, but not under a file.
  await Deno.writeTextFile(`${tmp.path}/file`, "");
  const state = `${tmp.path}/file/state`;
  const dev = await runCli(
    ["dev", "--port", "0", "--state-dir", state, "app.ts"],
    tmp.path,
  );
  assert.equal(dev.code, 1, dev.stderr);
  assert.match(
    dev.stderr,
    /^m2fetch: Cannot start mongrel2 in .*\/file\/state: cannot write its files there \(Not a directory .*\); use a writable directory \(for dev, --state-dir\)\n$/,
  );
  const init = await runCli(["init", "file/app"], tmp.path);
  assert.equal(init.code, 1, init.stderr);
  assert.match(
    init.stderr,
    /^m2fetch: Cannot initialise file\/app: cannot create the directory \(Not a directory .*\)\n$/,
  );
  const path = `${tmp.path}/gone/m2fetch.json`;
  await assert.rejects(
    writeConfigFile(path, { workers: 2 }, SERVE_OPTIONS),
    (error: unknown) => {
      assert.ok(error instanceof ConfigFileError);
      assert.match(
        error.message,
        /^Cannot write config file .*\/gone\/m2fetch\.json: No such file or directory/,
      );
      return true;
    },
  );
});

Deno.test("a mistyped option, or one of another command, is named with the one meant, and exits 2", async () => {
  await using tmp = await tempDir("m2x-");
  await Deno.writeTextFile(`${tmp.path}/app.ts`, HELLO);
  const cases: [string[], string][] = [
    [
      ["--wrokers", "2", "app.ts"],
      "Unknown option --wrokers: did you mean --workers? (see --help for the options)",
    ],
    [
      ["--no-quite", "app.ts"],
      "Unknown option --no-quite: did you mean --no-quiet? (see --help for the options)",
    ],
    [
      ["dev", "--sate-dir", "state", "app.ts"],
      "Unknown option --sate-dir: did you mean --state-dir? (see --help for the options)",
    ],
    // Nothing close: no guess.
    [
      ["--bogus", "app.ts"],
      "Unknown option --bogus (see --help for the options)",
    ],
    [
      ["--port", "8080", "app.ts"],
      "Unknown option --port for this command: dev, mongrel2-conf and init take it (see --help)",
    ],
    [
      ["init", "--workers", "2", "new"],
      "Unknown option --workers for this command: serving (no command), config, dev and mongrel2-conf take it (see --help)",
    ],
    [
      ["config", "--app-path", ".", "--unset", "wrokers"],
      'Cannot unset "wrokers": did you mean "workers"? m2fetch.json holds only app, args,',
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await runCli(args, tmp.path);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.ok(
      stderr.startsWith(`m2fetch: ${message}`),
      `${args.join(" ")}: ${stderr}`,
    );
  }
  await Deno.writeTextFile(`${tmp.path}/m2fetch.json`, '{"wrokers": 2}');
  const fromFile = await runCli(["app.ts"], tmp.path);
  assert.equal(fromFile.code, 1, fromFile.stderr);
  assert.match(
    fromFile.stderr,
    /^m2fetch: Unknown option "wrokers" in .*m2fetch\.json: did you mean "workers"\? \(expected one of app, args, /,
  );
});

Deno.test("closest() guesses only when one candidate stands out", () => {
  const names = ["workers", "timeout", "worker-timeout", "quiet", "port"];
  assert.equal(closest("wrokers", names), "workers");
  assert.equal(closest("worker", names), "workers");
  assert.equal(closest("quite", names), "quiet");
  assert.equal(closest("prot", names), "port");
  // An exact name is no mistake; short words allow one edit, long ones two.
  assert.equal(closest("port", names), undefined);
  assert.equal(closest("pt", names), undefined);
  assert.equal(closest("bogus", names), undefined);
  // Two as close: no guess.
  assert.equal(closest("ab", ["aa", "bb"]), undefined);
});

Deno.test("a mistyped command is not taken for a missing module, and exits 2", async () => {
  await using tmp = await tempDir("m2x-");
  await Deno.writeTextFile(`${tmp.path}/app.ts`, HELLO);
  const cases: [string[], string][] = [
    [
      ["confg", "--app-path", ".", "--workers", "2"],
      ' (did you mean "config"?)',
    ],
    [["devv", "app.ts"], ' (did you mean "dev"?)'],
    [["start"], ""],
  ];
  for (const [args, guess] of cases) {
    const { code, stderr } = await runCli(args, tmp.path);
    assert.equal(code, 2, stderr);
    assert.equal(
      stderr,
      `m2fetch: Unknown command "${
        args[0]
      }"${guess}: the commands are config, dev, init and mongrel2-conf, and without one the first argument is the handler module to serve, but there is no file ${
        args[0]
      }\n`,
    );
  }
  // A file by that name gets past the check (to the next mistake, which
  // stops it before it serves).
  await Deno.writeTextFile(`${tmp.path}/start`, HELLO);
  const file = await runCli(["--sweep-uploads", "start"], tmp.path);
  assert.equal(file.code, 2, file.stderr);
  assert.match(file.stderr, /^m2fetch: Cannot use --sweep-uploads without/);
  const missing = await runCli(["nope.ts"], tmp.path);
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /Cannot load handler module nope\.ts/);
});

Deno.test("with --log-format json, the failure that ends m2fetch is a JSON line too", async () => {
  await using tmp = await tempDir("m2x-");
  await Deno.writeTextFile(
    `${tmp.path}/broken.ts`,
    'throw new Error("broken at load");\n',
  );
  const run = await runCli([
    "--log-format",
    "json",
    "--send-spec",
    `ipc://${tmp.path}/send`,
    "--recv-spec",
    `ipc://${tmp.path}/recv`,
    `${tmp.path}/broken.ts`,
  ]);
  assert.equal(run.code, 1, run.stderr);
  const lines = run.stderr.trim().split("\n").map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      assert.fail(`Not a JSON line in a JSON log: ${line}`);
    }
  });
  const fatal = lines.at(-1);
  assert.equal(fatal.level, "error");
  assert.match(fatal.message, /broken at load/);
});
