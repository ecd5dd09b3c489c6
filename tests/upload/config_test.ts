/**
 * `cli.ts config --app-path DIR` and DIR/m2fetch.json, through the real
 * command line: typed JSON round trips, merging into an existing file,
 * precedence (flags > file > defaults) observed on a real mongrel2, and
 * clear one-line errors for bad files and bad flags.
 *
 * Run: `deno test -A tests/upload/config_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { startMongrel2 } from "../../runtime/mongrel2/mod.ts";
import { tempDir } from "../site.ts";
import { type CommandResult, runCli as cli, spawnCli } from "../subprocess.ts";
import { PatternSource, RawConn, waitDirEmpty } from "./rig.ts";

async function withAppDir(fn: (dir: string) => Promise<void>): Promise<void> {
  await using tmp = await tempDir("m2c-");
  await fn(tmp.path);
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(path));
}

/** Asserts a failed run printed exactly one `m2fetch: …` line. */
function assertOneLineError(
  result: CommandResult,
  code: number,
  pattern: RegExp,
): void {
  assert.equal(result.code, code, `${result.stdout}\n${result.stderr}`);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `several lines:\n${result.stderr}`);
  assert.match(lines[0], /^m2fetch: /);
  assert.match(lines[0], pattern);
}

Deno.test("config writes typed JSON: sizes in bytes, durations in ms, booleans", async () => {
  await withAppDir(async (dir) => {
    const result = await cli([
      "config",
      "--app-path",
      dir,
      "--max-body-size",
      "10M",
      "--idle-timeout",
      "5s",
      "--write-timeout",
      "2m",
      "--sweep-uploads",
      "--quiet",
      "--upload-invoke",
      "done",
      "--upload-temp-store",
      "/uploads/m2.XXXXXX",
      "--mongrel2-chroot",
      "/var/mongrel2",
      "app.ts",
    ], dir);
    assert.equal(result.code, 0, result.stderr);
    const file = await readJson(`${dir}/m2fetch.json`);
    assert.deepEqual(file, {
      "app": "app.ts",
      "idle-timeout": 5000,
      "max-body-size": 10 * 1024 * 1024,
      "mongrel2-chroot": "/var/mongrel2",
      "quiet": true,
      "sweep-uploads": true,
      "upload-invoke": "done",
      "upload-temp-store": "/uploads/m2.XXXXXX",
      "write-timeout": 120_000,
    });
    // Only what was given: no defaults written, keys sorted.
    assert.deepEqual(Object.keys(file), Object.keys(file).sort());
    assert.equal(typeof file["sweep-uploads"], "boolean");
    assert.equal(typeof file["max-body-size"], "number");
    assert.equal(typeof file["idle-timeout"], "number");
    // What was written is printed too.
    assert.match(result.stdout, /"max-body-size": 10485760/);
  });
});

Deno.test("config merges into an existing file and keeps what it does not set", async () => {
  await withAppDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/m2fetch.json`,
      JSON.stringify({ "log-format": "json", "max-body-size": 5 }),
    );
    const first = await cli([
      "config",
      "--app-path",
      dir,
      "--max-body-size",
      "512K",
      "--sweep-uploads",
    ]);
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(await readJson(`${dir}/m2fetch.json`), {
      "log-format": "json",
      "max-body-size": 512 * 1024,
      "sweep-uploads": true,
    });
    const second = await cli([
      "config",
      "--app-path",
      dir,
      "--idle-timeout",
      "1500ms",
      "main.ts",
    ], dir);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(await readJson(`${dir}/m2fetch.json`), {
      "app": "main.ts",
      "idle-timeout": 1500,
      "log-format": "json",
      "max-body-size": 512 * 1024,
      "sweep-uploads": true,
    });
    // No temp files left next to it.
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names, ["m2fetch.json"]);
  });
});

Deno.test("paths in m2fetch.json are relative to its directory; config writes them so from any working directory; the current directory's file is read", async () => {
  await withAppDir(async (base) => {
    const dir = `${base}/app`;
    await Deno.mkdir(dir);
    const written = await cli([
      "config",
      "--app-path",
      "app",
      "--mongrel2-config",
      "app/site/config.sqlite",
      "--handler",
      "web",
      "app/app.ts",
    ], base);
    assert.equal(written.code, 0, written.stderr);
    assert.deepEqual(await readJson(`${dir}/m2fetch.json`), {
      "app": "app.ts",
      "handler": "web",
      "mongrel2-config": "site/config.sqlite",
    });
    // Served from elsewhere, the database is looked for next to the file;
    // so it is from inside the directory, with neither APP nor --app-path.
    for (
      const [args, cwd] of [[["--app-path", dir], "/"], [[], dir]] as const
    ) {
      const served = await cli([...args], cwd);
      assert.equal(served.code, 2, served.stderr);
      assert.match(
        served.stderr,
        new RegExp(
          `\\nm2fetch: Cannot read mongrel2 config ${dir}/site/config\\.sqlite: the file does not exist`,
        ),
      );
    }
  });
});

Deno.test("relative ipc:// endpoints in m2fetch.json are relative to its directory too", async () => {
  await withAppDir(async (base) => {
    const dir = `${base}/app`;
    await Deno.mkdir(dir);
    const written = await cli([
      "config",
      "--app-path",
      "app",
      "--send-spec",
      "ipc://app/run/send",
      "--recv-spec",
      "ipc://@m2fetch-recv",
    ], base);
    assert.equal(written.code, 0, written.stderr);
    const file = await readJson(`${dir}/m2fetch.json`);
    assert.deepEqual(file["send-spec"], ["ipc://run/send"]);
    // An abstract socket name is no path: left as it is.
    assert.deepEqual(file["recv-spec"], ["ipc://@m2fetch-recv"]);
    // (mongrel2 itself binds only real paths: a flag replaces that one.)
    const printed = await cli([
      "mongrel2-conf",
      "--app-path",
      dir,
      "--recv-spec",
      "ipc:///srv/run/recv",
    ], base);
    assert.equal(printed.code, 0, printed.stderr);
    assert.ok(printed.stdout.includes(`ipc://${dir}/run/send`), printed.stdout);
    assert.match(printed.stderr, /Read options from .*app\/m2fetch\.json/);
  });
});

Deno.test("one m2fetch.json serves every command: dev's and mongrel2-conf's keys are checked and left aside by the others", async () => {
  await withAppDir(async (dir) => {
    // What README says a file may hold for dev (state-dir, port) and
    // mongrel2-conf (send-ident); serving used to refuse it as unknown.
    const file = {
      app: "app.ts",
      "state-dir": "state",
      port: 8080,
      host: "127.0.0.1",
      watch: true,
      "send-ident": "site-a",
      "mongrel2-dir": "m2",
      "mongrel2-config": "site/config.sqlite",
    };
    await Deno.writeTextFile(`${dir}/m2fetch.json`, JSON.stringify(file));
    // The file is read: serving gets as far as the database it names.
    const served = await cli(["--app-path", dir]);
    assert.equal(served.code, 2, served.stderr);
    assert.match(
      served.stderr,
      /\nm2fetch: Cannot read mongrel2 config .*site\/config\.sqlite: the file does not exist/,
    );
    const printed = await cli(["mongrel2-conf", "--app-path", dir]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /send_ident="site-a"/);
    // config keeps them when it merges, and unsets them.
    const written = await cli([
      "config",
      "--app-path",
      dir,
      "--quiet",
      "--unset",
      "watch",
    ]);
    assert.equal(written.code, 0, written.stderr);
    const { watch: _, ...kept } = file;
    assert.deepEqual(await readJson(`${dir}/m2fetch.json`), {
      ...kept,
      quiet: true,
    });
    // Their values are still checked, by every command.
    await Deno.writeTextFile(`${dir}/m2fetch.json`, '{"port": "http"}');
    assertOneLineError(
      await cli(["--app-path", dir, "app.ts"]),
      1,
      /Invalid value for "port" in .*m2fetch\.json: expected a whole number/,
    );
  });
});

Deno.test("config checks what it adds together with what the file holds", async () => {
  await withAppDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/m2fetch.json`,
      JSON.stringify({ "upload-temp-store": "/tmp/upload.XXXXXX" }),
    );
    const result = await cli([
      "config",
      "--app-path",
      dir,
      "--mongrel2-chroot",
      "/srv/mongrel2",
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await readJson(`${dir}/m2fetch.json`), {
      "mongrel2-chroot": "/srv/mongrel2",
      "upload-temp-store": "/tmp/upload.XXXXXX",
    });
    // What serving would refuse is refused here, and nothing is written.
    const before = await Deno.readTextFile(`${dir}/m2fetch.json`);
    const refused = await cli([
      "config",
      "--app-path",
      dir,
      "--handler",
      "web",
    ]);
    assertOneLineError(
      refused,
      2,
      /Cannot use --handler without --mongrel2-config/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/m2fetch.json`), before);
  });
});

Deno.test("config --unset removes keys, checked like the rest", async () => {
  await withAppDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/m2fetch.json`,
      JSON.stringify({
        app: "app.ts",
        args: ["--greeting", "hey"],
        "mongrel2-chroot": "/srv/mongrel2",
        "upload-temp-store": "/tmp/upload.XXXXXX",
        workers: 2,
      }),
    );
    const result = await cli([
      "config",
      "--app-path",
      dir,
      "--unset",
      "mongrel2-chroot",
      "--unset",
      "args",
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await readJson(`${dir}/m2fetch.json`), {
      app: "app.ts",
      "upload-temp-store": "/tmp/upload.XXXXXX",
      workers: 2,
    });
    const before = await Deno.readTextFile(`${dir}/m2fetch.json`);
    for (
      const [args, pattern] of [
        [
          ["--unset", "wrokers"],
          /Cannot unset "wrokers": did you mean "workers"\? m2fetch\.json holds only app, args, .*\bstate-dir\b/,
        ],
        [["--unset", "workers", "--workers", "3"], /Cannot both set and unset/],
        // What is left must still serve: the chroot needs the store.
        [
          ["--mongrel2-chroot", "/srv/m2", "--unset", "upload-temp-store"],
          /Cannot use --mongrel2-chroot without --upload-temp-store/,
        ],
      ] as const
    ) {
      const refused = await cli(["config", "--app-path", dir, ...args]);
      assertOneLineError(refused, 2, pattern);
      assert.equal(await Deno.readTextFile(`${dir}/m2fetch.json`), before);
    }
  });
});

Deno.test("config refuses to merge into an invalid file and leaves it alone", async () => {
  await withAppDir(async (dir) => {
    const bad = '{"max-body-sise": 5}\n';
    await Deno.writeTextFile(`${dir}/m2fetch.json`, bad);
    const result = await cli(["config", "--app-path", dir, "--quiet"]);
    assertOneLineError(result, 1, /Unknown option "max-body-sise"/);
    assert.equal(await Deno.readTextFile(`${dir}/m2fetch.json`), bad);
  });
});

Deno.test("a bad m2fetch.json stops the server with one clear line and exit code 1", async () => {
  const cases: [string, RegExp][] = [
    [
      '{"max-body-sise": 1024}',
      // The keys listed include the ones only dev and mongrel2-conf take.
      /Unknown option "max-body-sise" in .*m2fetch\.json: did you mean "max-body-size"\? \(expected one of app, args, (?=.*\bstate-dir\b)(?=.*\bsend-ident\b)/,
    ],
    [
      '{"sweep-uploads": "false"}',
      /"sweep-uploads" .*expected true or false, got "false"/,
    ],
    [
      '{"sweep-uploads": "true"}',
      /"sweep-uploads" .*expected true or false, got "true"/,
    ],
    ['{"quiet": 0}', /"quiet" .*expected true or false, got 0/],
    ['{"max-body-size": "lots"}', /"max-body-size" .*expected a size/],
    ['{"max-body-size": -1}', /"max-body-size" .*expected a size/],
    ['{"idle-timeout": "soon"}', /"idle-timeout" .*expected a duration/],
    ['{"idle-timeout": 5}', /"idle-timeout" .*at least 100 ms/],
    ['{"upload-invoke": "later"}', /"upload-invoke" .*one of start, done/],
    ['{"upload-temp-store": true}', /"upload-temp-store" .*non-empty string/],
    ['{"app": 7}', /Invalid value for "app"/],
    ['{"app": ""}', /Invalid value for "app" .*expected a module path, got ""/],
    // Keys of Object.prototype are not options either.
    ['{"constructor": 1}', /Unknown option "constructor"/],
    [
      '{"args": "--greeting hey"}',
      /Invalid value for "args".*array of strings/,
    ],
    ['{"args": [1]}', /Invalid value for "args"/],
    ["[1, 2]", /expected a JSON object/],
    ["null", /expected a JSON object/],
    ['{"quiet": true', /Cannot parse config file/],
  ];
  await withAppDir(async (dir) => {
    for (const [text, pattern] of cases) {
      await Deno.writeTextFile(`${dir}/m2fetch.json`, text);
      const result = await cli(["--app-path", dir, "app.ts"]);
      assertOneLineError(result, 1, pattern);
    }
    // A file that exists but cannot be read is not taken for a missing one.
    await Deno.remove(`${dir}/m2fetch.json`);
    await Deno.mkdir(`${dir}/m2fetch.json`);
    assertOneLineError(
      await cli(["--app-path", dir, "app.ts"]),
      1,
      /Cannot read config file .*m2fetch\.json: Is a directory/,
    );
  });
});

Deno.test("command-line mistakes are usage errors: one line, exit code 2", async () => {
  await withAppDir(async (dir) => {
    const cases: [string[], RegExp][] = [
      [["config", "--quiet"], /Missing --app-path/],
      [["config", "--app-path", `${dir}/missing`], /not a directory/],
      [
        ["config", "--app-path", dir, "--max-body-size", "lots"],
        /expected a size/,
      ],
      [
        ["config", "--app-path", dir, "--idle-timeout", "soon"],
        /expected a duration/,
      ],
      [
        ["config", "--app-path", dir, "--sweep-uploads=false"],
        /^m2fetch: Option --sweep-uploads takes no value$/,
      ],
      [
        ["config", "--app-path", dir, "--upload-invoke", "later"],
        /one of start, done/,
      ],
      [
        ["config", "--app-path", dir, "--timeout", "999h"],
        /--timeout: expected a duration of at most 2147483647 ms/,
      ],
      [
        ["--timeout", "30", "examples/hello.ts"],
        /^m2fetch: Invalid value for --timeout: expected a duration with its unit \(ms, s, m or h\) such as 500ms, 30s or 2m, got "30"$/,
      ],
      [
        ["config", "--app-path", dir, "--workers", "100000"],
        /--workers: expected a whole number of at most 256/,
      ],
      [
        ["config", "--app-path", dir, "--send-spec", "tcp://127.0.0.1:99999"],
        /tcp:\/\/127\.0\.0\.1:99999.*port from 1 to 65535/,
      ],
      [
        ["config", "--app-path", dir, "--bogus"],
        /^m2fetch: Unknown option --bogus \(see --help for the options\)$/,
      ],
      [
        ["config", "--app-path", dir, "--workers", "-1"],
        /^m2fetch: Option --workers needs a value; for one that starts with "-", write --workers=VALUE$/,
      ],
      [
        ["config", "--app-path", dir, "--workers"],
        /^m2fetch: Option --workers needs a value$/,
      ],
      [
        ["config", "--app-path", dir, "--mongrel2-chroot", "/srv/m2"],
        /--mongrel2-chroot without --upload-temp-store/,
      ],
      [
        ["--sweep-uploads", "examples/hello.ts"],
        /--sweep-uploads without --upload-temp-store \(or --mongrel2-config\)/,
      ],
      [
        [
          "config",
          "--app-path",
          dir,
          "--upload-temp-store",
          "tmp/upload.XXXXXX",
        ],
        /absolute mkstemp template/,
      ],
      [["config", "--app-path", dir, "a.ts", "b.ts"], /at most one handler/],
      [["--app-path", `${dir}/missing`], /not a directory/],
    ];
    for (const [args, pattern] of cases) {
      assertOneLineError(await cli(args), 2, pattern);
    }
    // Nothing was written by the failed runs.
    for await (const entry of Deno.readDir(dir)) {
      assert.fail(`unexpected ${entry.name}`);
    }
  });
});

/** POSTs `size` pattern bytes over raw TCP; returns status and body. */
async function upload(
  port: number,
  size: number,
): Promise<{ status: number; body: string; sha256: string }> {
  const source = new PatternSource(size, 64 * 1024);
  const conn = await RawConn.open(port);
  try {
    await conn.write(
      `POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${size}\r\n\r\n`,
    );
    for (let piece = source.next(); piece !== null; piece = source.next()) {
      if (!await conn.write(piece)) break;
    }
    const response = await conn.response(20_000);
    assert.ok(response !== null, conn.text.slice(0, 300));
    return { ...response, sha256: source.digest() };
  } finally {
    await conn.close();
  }
}

Deno.test("precedence on a real mongrel2: a flag beats m2fetch.json, which beats the default", async () => {
  await withAppDir(async (dir) => {
    await Deno.copyFile(
      new URL("./hash_app.ts", import.meta.url),
      `${dir}/app.ts`,
    );
    await Deno.mkdir(`${dir}/m2`);
    await using mongrel2 = await startMongrel2({
      dir: `${dir}/m2`,
      handlers: [{ route: "/", protocol: "tnetstring" }],
      settings: { "limits.content_length": 4096 },
    });
    const [route] = mongrel2.handlers;
    const template = String(mongrel2.settings["upload.temp_store"]);
    const written = await cli([
      "config",
      "--app-path",
      dir,
      "--send-spec",
      route.sendSpec,
      "--recv-spec",
      route.recvSpec,
      "--upload-temp-store",
      template,
      "--max-body-size",
      "8K",
      "app.ts",
    ], dir);
    assert.equal(written.code, 0, written.stderr);
    assert.equal(
      (await readJson(`${dir}/m2fetch.json`))["max-body-size"],
      8192,
    );

    // The file's 8 KiB limit (the default is no limit at all).
    const fromFile = await spawnCli(["--app-path", dir]);
    try {
      assert.match(fromFile.output(), /Read options from .*m2fetch\.json/);
      const fits = await upload(mongrel2.port, 6000);
      assert.equal(fits.status, 200, fits.body);
      assert.equal(JSON.parse(fits.body).sha256, fits.sha256);
      assert.equal((await upload(mongrel2.port, 64 * 1024)).status, 413);
    } finally {
      assert.equal((await fromFile.stop()).code, 0, fromFile.output());
    }

    // The flag wins over the file.
    const fromFlag = await spawnCli([
      "--app-path",
      dir,
      "--max-body-size",
      "1M",
    ]);
    try {
      const big = await upload(mongrel2.port, 64 * 1024);
      assert.equal(big.status, 200, big.body);
      assert.equal(JSON.parse(big.body).sha256, big.sha256);
      assert.equal((await upload(mongrel2.port, 2 * 1024 * 1024)).status, 413);
    } finally {
      assert.equal((await fromFlag.stop()).code, 0, fromFlag.output());
    }

    // Without the key in the file, the default: no limit.
    const file = await readJson(`${dir}/m2fetch.json`);
    delete file["max-body-size"];
    await Deno.writeTextFile(`${dir}/m2fetch.json`, JSON.stringify(file));
    const fromDefault = await spawnCli(["--app-path", dir]);
    try {
      const big = await upload(mongrel2.port, 3 * 1024 * 1024);
      assert.equal(big.status, 200, big.body);
      assert.equal(JSON.parse(big.body).sha256, big.sha256);
    } finally {
      assert.equal((await fromDefault.stop()).code, 0, fromDefault.output());
    }
    const store = mongrel2.resolvePath(
      template.slice(0, template.lastIndexOf("/")),
    );
    assert.deepEqual(
      await waitDirEmpty(store, 3000),
      [],
      "files left in the temp store",
    );
  });
});
