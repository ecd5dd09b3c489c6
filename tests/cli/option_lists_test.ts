import assert from "node:assert/strict";
import {
  coerceOption,
  CONF_OPTIONS,
  DEV_OPTIONS,
  type OptionSpec,
  parseDuration,
  parseSize,
  SERVE_OPTIONS,
} from "../../cli/options.ts";
import {
  ConfigFileError,
  readConfigFile,
  writeConfigFile,
} from "../../cli/config_file.ts";
import { runCli, spawnCli, tempDir } from "./helpers.ts";

Deno.test("coerceOption() gives --send-spec and --recv-spec as lists", () => {
  const spec = SERVE_OPTIONS["send-spec"];
  assert.deepEqual(
    coerceOption("send-spec", spec, "tcp://a:1", "--send-spec"),
    [
      "tcp://a:1",
    ],
  );
  assert.deepEqual(
    coerceOption("send-spec", spec, ["tcp://a:1", "ipc:///b"], "--send-spec"),
    ["tcp://a:1", "ipc:///b"],
  );
  assert.throws(
    () => coerceOption("send-spec", spec, [], "--send-spec"),
    /Invalid value for --send-spec: expected at least one value, got \[\]/,
  );
  assert.throws(
    () => coerceOption("send-spec", spec, ["tcp://a:1", 5], "--send-spec"),
    /Invalid value for --send-spec: expected a non-empty string, got 5/,
  );
});

Deno.test("parseDuration() reads each unit, and a positive duration never becomes 0 (no timeout)", () => {
  assert.equal(parseDuration("250ms"), 250);
  // Without a unit, 30 could be meant as seconds: refused, but for 0.
  assert.ok(Number.isNaN(parseDuration("30")));
  assert.equal(parseDuration("0.0"), 0);
  assert.equal(parseDuration("1.1s"), 1100);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("0.3ms"), 1);
  assert.equal(parseDuration("0.0004s"), 1);
  assert.ok(Number.isNaN(parseDuration("-1s")));
  assert.ok(Number.isNaN(parseDuration("5d")));
  // Zero with a unit is still no timeout; fractions of a ms round.
  assert.equal(parseDuration("0ms"), 0);
  assert.equal(parseDuration("0s"), 0);
  assert.equal(parseDuration("1.5ms"), 2);
  assert.equal(parseDuration(" 30s\n"), 30_000);
});

Deno.test("parseSize() reads bytes and binary multiples in either case, with B or iB", () => {
  assert.equal(parseSize("512"), 512);
  assert.equal(parseSize("512k"), 512 * 1024);
  assert.equal(parseSize("10MiB"), 10 * 1024 ** 2);
  assert.equal(parseSize("2 GB"), 2 * 1024 ** 3);
  assert.equal(parseSize(" 1K\n"), 1024);
  assert.ok(Number.isNaN(parseSize("1.5M")));
  assert.ok(Number.isNaN(parseSize("10T")));
});

Deno.test("coerceOption() refuses what only looks like a value, and takes each bound itself", () => {
  // Serve options, and mongrel2-conf's port (1 to 65535).
  const schema: Record<string, OptionSpec> = {
    ...SERVE_OPTIONS,
    ...CONF_OPTIONS,
  };
  const coerce = (name: string, raw: unknown) =>
    coerceOption(name, schema[name], raw, `--${name}`);
  const refuses = (name: string, raw: unknown, expected: RegExp) =>
    assert.throws(() => coerce(name, raw), (error: unknown) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, expected);
      return true;
    });
  refuses("upload-temp-store", "", /expected a non-empty string, got ""/);
  refuses("workers", "", /expected a whole number, got ""/);
  refuses("quiet", 1, /expected true or false, got 1/);
  // From m2fetch.json, numbers come as JSON numbers.
  refuses("workers", 1.5, /expected a whole number, got 1\.5/);
  refuses("max-body-size", 1.5, /expected a size in bytes/);
  refuses("port", 0, /expected a whole number of at least 1, got 0/);
  refuses("workers", 257, /expected a whole number of at most 256/);
  refuses("idle-timeout", 99, /expected a duration of at least 100 ms/);
  refuses("timeout", -1, /expected a duration with its unit/);
  refuses("timeout", 2 ** 31, /expected a duration of at most 2147483647 ms/);

  assert.equal(coerce("workers", "256"), 256);
  assert.equal(coerce("port", "65535"), 65535);
  assert.equal(coerce("idle-timeout", "100ms"), 100);
  assert.equal(coerce("timeout", 2 ** 31 - 1), 2 ** 31 - 1);
  assert.equal(coerce("max-body-size", 0), 0);
});

Deno.test("m2fetch.json takes lists (or one string) for the specs, and config writes repeated flags as lists", async () => {
  await using tmp = await tempDir("m2o-");
  const path = `${tmp.path}/m2fetch.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      "send-spec": ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"],
      "recv-spec": "tcp://127.0.0.1:3",
    }),
  );
  assert.deepEqual(await readConfigFile(path, SERVE_OPTIONS), {
    "send-spec": ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"],
    "recv-spec": ["tcp://127.0.0.1:3"],
  });
  await Deno.writeTextFile(path, JSON.stringify({ "send-spec": [] }));
  await assert.rejects(
    () => readConfigFile(path, SERVE_OPTIONS),
    (error: unknown) => {
      assert.ok(error instanceof ConfigFileError, String(error));
      assert.match(
        error.message,
        /Invalid value for "send-spec" in .*: expected at least one value/,
      );
      return true;
    },
  );
  await Deno.remove(path);

  const written = await runCli([
    "config",
    "--app-path",
    tmp.path,
    "--send-spec",
    "ipc:///srv/a/send",
    "--send-spec",
    "ipc:///srv/b/send",
    "--recv-spec",
    "ipc:///srv/a/recv",
    "--recv-spec",
    "ipc:///srv/b/recv",
  ]);
  assert.equal(written.code, 0, written.stderr);
  const saved = JSON.parse(await Deno.readTextFile(path));
  assert.deepEqual(saved["send-spec"], [
    "ipc:///srv/a/send",
    "ipc:///srv/b/send",
  ]);
  assert.deepEqual(saved["recv-spec"], [
    "ipc:///srv/a/recv",
    "ipc:///srv/b/recv",
  ]);

  // mongrel2-conf renders one server: the file's lists are refused, flags win.
  const fromFile = await runCli(["mongrel2-conf", "--app-path", tmp.path]);
  assert.equal(fromFile.code, 2);
  assert.match(fromFile.stderr, /for 2 send and 2 recv specs/);
  const overridden = await runCli([
    "mongrel2-conf",
    "--app-path",
    tmp.path,
    "--mongrel2-dir",
    "/srv/a",
    "--send-spec",
    "ipc:///srv/a/send",
    "--recv-spec",
    "ipc:///srv/a/recv",
  ]);
  assert.equal(overridden.code, 0, overridden.stderr);
  assert.match(overridden.stdout, /send_spec="ipc:\/\/\/srv\/a\/send"/);
});

Deno.test("readConfigFile() leaves other commands' options out unless asked; writeConfigFile() merges and writes sorted JSON", async () => {
  await using tmp = await tempDir("m2o-");
  const path = `${tmp.path}/m2fetch.json`;
  assert.equal(await readConfigFile(path, SERVE_OPTIONS), null);
  await writeConfigFile(
    path,
    { workers: 2, "state-dir": "state", app: "app.ts" },
    SERVE_OPTIONS,
  );
  // Sorted, two-space indented, a final newline: diffs stay small.
  assert.equal(
    await Deno.readTextFile(path),
    '{\n  "app": "app.ts",\n  "state-dir": "state",\n  "workers": 2\n}\n',
  );
  assert.deepEqual(await readConfigFile(path, SERVE_OPTIONS), {
    app: "app.ts",
    workers: 2,
  });
  // dev takes it; so does config, which writes the file back.
  const dev = { ...SERVE_OPTIONS, ...DEV_OPTIONS };
  assert.deepEqual(await readConfigFile(path, dev), {
    app: "app.ts",
    "state-dir": "state",
    workers: 2,
  });
  assert.deepEqual(await readConfigFile(path, SERVE_OPTIONS, true), {
    app: "app.ts",
    "state-dir": "state",
    workers: 2,
  });
  // New values win over the file's; removed keys go; no temp file stays.
  assert.deepEqual(
    await writeConfigFile(path, { workers: 3 }, SERVE_OPTIONS, ["app"]),
    { "state-dir": "state", workers: 3 },
  );
  assert.deepEqual(
    [...Deno.readDirSync(tmp.path)].map((entry) => entry.name),
    ["m2fetch.json"],
  );
});

Deno.test("--version and --help answer for every command, and do nothing else", async () => {
  await using tmp = await tempDir("m2v-");
  const commands = [
    ["examples/hello.ts"],
    ["config", "--app-path", tmp.path, "--workers", "2"],
    ["dev"],
    ["mongrel2-conf"],
    ["init", `${tmp.path}/app`],
  ];
  for (const command of commands) {
    const version = await runCli([...command, "--version"]);
    assert.equal(version.code, 0, version.stderr);
    assert.match(version.stdout, /^m2fetch \d+\.\d+\.\d+\n$/);
    const help = await runCli([...command, "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^m2fetch .*: serve a Web Fetch handler module/);
  }
  // config --version used to write m2fetch.json as well.
  assert.deepEqual([...Deno.readDirSync(tmp.path)], []);
});

Deno.test("dev refuses the wiring flags it sets itself", async () => {
  const { code, stderr } = await runCli([
    "dev",
    "--port",
    "0",
    "--send-spec",
    "tcp://127.0.0.1:5",
    "--upload-temp-store",
    "/tmp/upload.XXXXXX",
  ]);
  assert.equal(code, 2);
  assert.match(
    stderr,
    /dev wires m2fetch to the mongrel2 it starts, so --send-spec, --upload-temp-store cannot apply; to serve through your own mongrel2, leave out "dev"/,
  );
});

Deno.test("dev takes a state-dir from m2fetch.json relative to the file, and says it read the file", async () => {
  await using tmp = await tempDir("m2ds-");
  await Deno.writeTextFile(
    `${tmp.path}/app.ts`,
    "export default { fetch: () => new Response('ok') };\n",
  );
  await Deno.writeTextFile(
    `${tmp.path}/m2fetch.json`,
    JSON.stringify({ app: "app.ts", "state-dir": "state" }),
  );
  await using dev = await spawnCli(
    ["dev", "--port", "0", "--app-path", tmp.path],
    " is serving ",
    { cwd: "/" },
  );
  assert.match(dev.output(), new RegExp(`state in ${tmp.path}/state\\)`));
  assert.match(
    dev.output(),
    new RegExp(`Read options from ${tmp.path}/m2fetch\\.json`),
  );
  assert.equal((await dev.stop()).code, 0, dev.output());
});

Deno.test("dev leaves aside the production wiring in m2fetch.json and serves uploads through its own mongrel2", async () => {
  await using tmp = await tempDir("m2dw-");
  await Deno.writeTextFile(
    `${tmp.path}/app.ts`,
    "export default { fetch: async (r: Request) => new Response(`got ${(await r.arrayBuffer()).byteLength}`) };\n",
  );
  await Deno.writeTextFile(
    `${tmp.path}/m2fetch.json`,
    JSON.stringify({
      app: "app.ts",
      "send-spec": ["tcp://127.0.0.1:1"],
      "recv-spec": ["tcp://127.0.0.1:2"],
      "upload-temp-store": "/tmp/upload.XXXXXX",
      "mongrel2-chroot": "/srv/nowhere",
      "flow-control": "off",
    }),
  );
  await using dev = await spawnCli(
    ["dev", "--port", "0", "--state-dir", `${tmp.path}/state`, "app.ts"],
    " is serving ",
    { cwd: tmp.path },
  );
  const url = /at (http:\/\/[^ ]+\/)/.exec(dev.output())![1];
  // Over limits.content_length: spooled to dev's own upload store.
  const upload = await fetch(url, {
    method: "POST",
    body: new Uint8Array(100_000),
  });
  assert.equal(await upload.text(), "got 100000");
  assert.equal((await dev.stop()).code, 0, dev.output());
});

for (const workers of ["0", "2"]) {
  Deno.test(`the handler's Deno.args are what follows --, as under deno serve, else m2fetch.json's args (--workers ${workers})`, async () => {
    await using tmp = await tempDir("m2da-");
    const app = `${tmp.path}/app.ts`;
    await Deno.writeTextFile(
      app,
      "const args = [...Deno.args];\nexport default { fetch: () => Response.json({ args, now: Deno.args }) };\n",
    );
    const argsSeen = async (extra: string[], module = app) => {
      await using dev = await spawnCli(
        [
          "dev",
          "--port",
          "0",
          "--workers",
          workers,
          "--state-dir",
          `${tmp.path}/state`,
          module,
          ...extra,
        ],
        " is serving ",
      );
      const url = /at (http:\/\/[^ ]+\/)/.exec(dev.output())![1];
      const seen = await (await fetch(url)).json();
      assert.equal((await dev.stop()).code, 0, dev.output());
      return seen;
    };
    const hey = ["--greeting", "hey"];
    assert.deepEqual(await argsSeen([]), { args: [], now: [] });
    assert.deepEqual(await argsSeen(["--", ...hey]), { args: hey, now: hey });

    const saved = await runCli(
      ["config", "--app-path", tmp.path, app, "--", "--from", "file"],
    );
    assert.equal(saved.code, 0, saved.stderr);
    const file = JSON.parse(
      await Deno.readTextFile(`${tmp.path}/m2fetch.json`),
    );
    assert.deepEqual(file.args, ["--from", "file"]);
    assert.deepEqual(await argsSeen([]), {
      args: ["--from", "file"],
      now: ["--from", "file"],
    });
    // The command line's win, as with every option.
    assert.deepEqual(await argsSeen(["--", ...hey]), { args: hey, now: hey });
    // The file's belong to the file's module, not to another one.
    const other = `${tmp.path}/other.ts`;
    await Deno.copyFile(app, other);
    assert.deepEqual(await argsSeen([], other), { args: [], now: [] });
  });
}

Deno.test("README's option table lists every serve option with its default, and ↻ where a reload applies it", async () => {
  const readme = await Deno.readTextFile(
    new URL("../../README.md", import.meta.url),
  );
  const rows = new Map<string, { reloads: boolean; shown: string }>();
  for (const line of readme.split("\n")) {
    const row = /^\| `--([a-z0-9-]+)[^`]*`( ↻)?\s*\|\s*(.*?)\s*\|/.exec(line);
    if (row === null) continue;
    rows.set(row[1], { reloads: row[2] !== undefined, shown: row[3] });
  }
  assert.deepEqual(
    [...rows.keys()].sort(),
    [...Object.keys(SERVE_OPTIONS), "app-path"].sort(),
  );
  // As --help writes them: 10s, not 10000.
  const shown = (spec: OptionSpec): string => {
    const value = spec.default;
    if (value === undefined) return "none";
    if (spec.type === "boolean") return value ? "on" : "off";
    if (spec.type !== "duration" || value === 0) return `\`${value}\``;
    return `\`${value as number / 1000}s\``;
  };
  for (
    const [name, spec] of Object.entries(SERVE_OPTIONS) as [
      string,
      OptionSpec,
    ][]
  ) {
    const row = rows.get(name)!;
    assert.equal(row.reloads, spec.reloads === true, name);
    assert.equal(
      row.shown.replace(/ \(none\)$/, "").replace(/^$/, "none"),
      shown(spec),
      name,
    );
  }
});

Deno.test("README names each duration that has a floor of 100 ms", async () => {
  const readme = (await Deno.readTextFile(
    new URL("../../README.md", import.meta.url),
  )).replace(/\s+/g, " ");
  const sentence =
    /\(timers cannot wait longer\), and ([^;]*) are at least 100 ms;/
      .exec(readme);
  assert.ok(sentence !== null, "the sentence on durations' bounds");
  const named = [...sentence[1].matchAll(/`--([a-z0-9-]+)`/g)].map((m) => m[1]);
  const floored = (Object.entries(SERVE_OPTIONS) as [string, OptionSpec][])
    .filter(([, spec]) => spec.type === "duration" && spec.min === 100)
    .map(([name]) => name);
  assert.deepEqual(named.sort(), floored.sort());
});
