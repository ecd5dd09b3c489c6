import assert from "node:assert/strict";
import {
  discoverHandler,
  DiscoveryError,
} from "../../runtime/mongrel2/discover.ts";
import { startMongrel2 } from "../../runtime/mongrel2/mod.ts";
import {
  CLI,
  m2shLoad,
  ROOT,
  runCli,
  runCommand,
  spawnCli,
  tempDir,
} from "./helpers.ts";
import { DENO } from "../subprocess.ts";

const isRoot = Deno.uid() === 0;

const TWO_HANDLERS = `
web = Handler(send_spec='ipc://run/web_send', send_ident='web-ident',
              recv_spec='ipc://run/web_recv', recv_ident='web-ident',
              protocol='tnetstring')
api = Handler(send_spec='tcp://*:9191', send_ident='api-ident',
              recv_spec='tcp://0.0.0.0:9192', recv_ident='',
              protocol='json')
main = Server(uuid="11111111-2222-3333-4444-555555555555",
              access_log="/logs/access.log", error_log="/logs/error.log",
              chroot="./", pid_file="/run/mongrel2.pid",
              default_host="localhost", name="main", port=6767,
              hosts=[Host(name="localhost", routes={
                '/': web,
                '/api/': api,
                '/static/': Dir(base='static/', index_file='index.html',
                                default_ctype='text/plain')})])
settings = {"upload.temp_store": "/tmp/upload.XXXXXX",
            "upload.temp_store_mode": "0644",
            "download.flow_control": 1,
            "limits.content_length": 5000}
servers = [main]
`;

const ECHO_APP = `export default {
  async fetch(request: Request): Promise<Response> {
    const body = new Uint8Array(await request.arrayBuffer());
    return new Response(
      \`\${request.method} \${new URL(request.url).pathname} \${body.length}\\n\`,
    );
  },
};
`;

function throwsDiscovery(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof DiscoveryError, String(error));
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("discoverHandler() reads handlers, routes, chroot and settings from an m2sh-made config.sqlite", async () => {
  await using tmp = await tempDir("m2d-");
  const dir = tmp.path;
  await Deno.writeTextFile(`${dir}/mongrel2.conf`, TWO_HANDLERS);
  await m2shLoad(dir);
  const db = `${dir}/config.sqlite`;
  const before = await Deno.readFile(db);

  const web = discoverHandler(db, { handler: "web-ident" });
  assert.equal(web.sendSpec, `ipc://${dir}/run/web_send`);
  assert.equal(web.recvSpec, `ipc://${dir}/run/web_recv`);
  assert.equal(web.configSendSpec, "ipc://run/web_send");
  assert.equal(web.protocol, "tnetstring");
  assert.equal(web.recvIdent, "web-ident");
  assert.deepEqual(web.routes, [{
    host: "localhost",
    pattern: "/",
    server: "main",
    target: "handler",
  }]);
  assert.equal(web.server.root, dir);
  assert.equal(web.server.uuid, "11111111-2222-3333-4444-555555555555");
  assert.deepEqual(web.uploads, {
    template: "/tmp/upload.XXXXXX",
    mode: "0644",
    chroot: dir,
  });
  assert.equal(web.contentLength, 5000);
  assert.equal(web.flowControl, true);
  assert.deepEqual(web.warnings, []);

  // The same handler by route, and by its send_spec.
  assert.equal(
    discoverHandler(db, { route: "localhost:/" }).sendIdent,
    "web-ident",
  );
  assert.equal(
    discoverHandler(db, { handler: "ipc://run/web_send" }).sendIdent,
    "web-ident",
  );

  // Wildcard tcp binds become loopback connects; an empty recv_ident warns.
  const api = discoverHandler(db, { route: "localhost:/api/" });
  assert.equal(api.sendIdent, "api-ident");
  assert.equal(api.sendSpec, "tcp://127.0.0.1:9191");
  assert.equal(api.recvSpec, "tcp://127.0.0.1:9192");
  assert.equal(api.protocol, "json");
  assert.match(api.warnings.join("\n"), /empty recv_ident/);

  // A non-root mongrel2 ignores its chroot: paths are relative to its cwd.
  const unchrooted = discoverHandler(db, {
    handler: "web-ident",
    chrooted: false,
    cwd: "/srv/elsewhere",
  });
  assert.equal(unchrooted.sendSpec, "ipc:///srv/elsewhere/run/web_send");
  assert.equal(unchrooted.server.root, undefined);
  assert.deepEqual(unchrooted.uploads, {
    template: "/tmp/upload.XXXXXX",
    mode: "0644",
  });

  throwsDiscovery(
    () => discoverHandler(db),
    /it has 2, so pass --handler SEND_IDENT or --route HOST:PATTERN; the handlers there are: web-ident \(send_spec ipc:\/\/run\/web_send, routes localhost:\/\); api-ident/,
  );
  throwsDiscovery(
    () => discoverHandler(db, { handler: "nope" }),
    /Cannot find handler "nope" in .*: expected a send_ident or send_spec; the handlers there are: web-ident .*api-ident/,
  );
  throwsDiscovery(
    () => discoverHandler(db, { route: "localhost:/nope/" }),
    /Cannot find route localhost:\/nope\/ .*the routes there are localhost:\/ \(handler\), localhost:\/api\/ \(handler\), localhost:\/static\/ \(dir\)/,
  );
  throwsDiscovery(
    () => discoverHandler(db, { route: "localhost:/static/" }),
    /serves it with a dir, not a handler/,
  );
  throwsDiscovery(
    () => discoverHandler(db, { route: "no-colon" }),
    /expected HOST:PATTERN/,
  );
  throwsDiscovery(
    () => discoverHandler(db, { route: "localhost:/", handler: "api-ident" }),
    /the route leads to handler web-ident/,
  );

  // Read-only: the database is byte-for-byte unchanged, no journal left.
  assert.deepEqual(await Deno.readFile(db), before);
  const names = [...Deno.readDirSync(dir)].map((entry) => entry.name).sort();
  assert.deepEqual(names, ["config.sqlite", "mongrel2.conf"]);
});

/** The warnings for handler web-ident once TWO_HANDLERS has `from` → `to`. */
async function webWarnings(from: string, to: string): Promise<string[]> {
  await using tmp = await tempDir("m2d-");
  await Deno.writeTextFile(
    `${tmp.path}/mongrel2.conf`,
    TWO_HANDLERS.replace(from, to),
  );
  await m2shLoad(tmp.path);
  return discoverHandler(`${tmp.path}/config.sqlite`, {
    handler: "web-ident",
  }).warnings;
}

Deno.test("discoverHandler() warns that upload.stream=1 uploads are refused", async () => {
  assert.deepEqual(
    await webWarnings(
      '"download.flow_control": 1,',
      '"download.flow_control": 1, "upload.stream": 1,',
    ),
    [
      "upload.stream is 1: m2fetch does not take streamed uploads and answers 501 to bodies over 5000 bytes and to chunked requests (set upload.stream = 0 and upload.temp_store)",
    ],
  );
});

Deno.test("discoverHandler() warns about a limits.content_length below limits.buffer_size", async () => {
  assert.deepEqual(
    await webWarnings(
      '"limits.content_length": 5000',
      '"limits.content_length": 1000',
    ),
    [
      "limits.content_length is 1000, below limits.buffer_size (4096): mongrel2 1.12.2 then loses body bytes it has already read with the headers (set limits.content_length to 4096 or more)",
    ],
  );
});

Deno.test("discoverHandler() explains a missing file, a non-database and an empty database", async () => {
  await using tmp = await tempDir("m2d-");
  throwsDiscovery(
    () => discoverHandler(`${tmp.path}/missing.sqlite`),
    /Cannot read mongrel2 config .*missing\.sqlite: the file does not exist/,
  );
  await Deno.writeTextFile(`${tmp.path}/text.sqlite`, "not a database\n");
  throwsDiscovery(
    () => discoverHandler(`${tmp.path}/text.sqlite`),
    /Cannot use .*text\.sqlite as a mongrel2 config: .*not a database/,
  );
  await Deno.writeFile(`${tmp.path}/empty.sqlite`, new Uint8Array());
  throwsDiscovery(
    () => discoverHandler(`${tmp.path}/empty.sqlite`),
    /Cannot use .*empty\.sqlite as a mongrel2 config: no such table/,
  );
  throwsDiscovery(
    () => discoverHandler(tmp.path),
    /it is not a file/,
  );
});

Deno.test("cli: --handler without --mongrel2-config, and a missing database, are usage errors", async () => {
  const lone = await runCli(["--handler", "x", "examples/hello.ts"]);
  assert.equal(lone.code, 2);
  assert.match(lone.stderr, /Cannot use --handler without --mongrel2-config/);
  const missing = await runCli([
    "--mongrel2-config",
    "/nonexistent/config.sqlite",
    "examples/hello.ts",
  ]);
  assert.equal(missing.code, 2);
  assert.match(
    missing.stderr,
    /Cannot read mongrel2 config \/nonexistent\/config\.sqlite: the file does not exist/,
  );
});

Deno.test("cli: a config.sqlite m2fetch's user may not read says so, with owner and mode", async () => {
  await using tmp = await tempDir("m2d-");
  await Deno.writeTextFile(`${tmp.path}/mongrel2.conf`, TWO_HANDLERS);
  await m2shLoad(tmp.path);
  const database = `${tmp.path}/config.sqlite`;
  await Deno.chmod(database, 0o000);
  // Root would read it anyway: as root, run without the capabilities that
  // override file modes (the owner, root, then has no read permission).
  const caps = "-dac_override,-dac_read_search";
  const wrapper = isRoot
    ? ["setpriv", "--inh-caps", caps, "--bounding-set", caps]
    : [];
  const args = [
    "run",
    "-A",
    CLI,
    "--mongrel2-config",
    database,
    "--handler",
    "web-ident",
    "examples/hello.ts",
  ];
  const result = await runCommand(wrapper[0] ?? DENO, [
    ...wrapper.slice(1),
    ...(isRoot ? [DENO] : []),
    ...args,
  ], { cwd: ROOT, env: { NO_COLOR: "1" } });
  assert.equal(result.code, 2, result.stderr);
  // It used to be SQLite's "unable to open database file" alone.
  assert.match(
    result.stderr,
    new RegExp(
      `^m2fetch: Cannot open mongrel2 config ${database} read-only: permission denied: m2fetch runs as uid ${Deno.uid()}, the file is owned by uid ${Deno.uid()}, gid \\d+, mode 0000; make it readable by m2fetch's user`,
    ),
  );
});

async function serveThroughDiscovery(
  chroot: boolean,
  explicitStore = false,
): Promise<void> {
  await using tmp = await tempDir(chroot ? "m2dc-" : "m2dn-");
  const app = `${tmp.path}/app.ts`;
  await Deno.writeTextFile(app, ECHO_APP);
  await using m2 = await startMongrel2({
    dir: `${tmp.path}/site`,
    chroot,
    handlers: [{ route: "/", protocol: "tnetstring" }],
  });
  await using cli = await spawnCli([
    "--mongrel2-config",
    m2.databasePath,
    // As init's m2fetch.json has it: the store named, the chroot not.
    ...(explicitStore
      ? ["--upload-temp-store", String(m2.settings["upload.temp_store"])]
      : []),
    app,
  ]);
  const log = cli.output();
  assert.match(
    log,
    new RegExp(
      `Read handler ${
        m2.handlers[0].sendIdent
      } \\(route localhost:/ of server main${
        chroot ? `, chroot ${m2.dir}` : ""
      }\\)`,
    ),
  );
  assert.ok(log.includes(`requests from ${m2.handlers[0].sendSpec}`), log);
  const small = await fetch(`${m2.url}/hello`);
  assert.equal(await small.text(), "GET /hello 0\n");
  // Over limits.content_length: mongrel2 writes a temp file (inside the
  // chroot when chrooted) that m2fetch must find through the discovered
  // store and chroot.
  const big = await fetch(`${m2.url}/upload`, {
    method: "POST",
    body: new Uint8Array(50_000).fill(65),
  });
  assert.equal(await big.text(), "POST /upload 50000\n");
  const status = await cli.stop();
  assert.equal(status.code, 0, cli.output());
  const left = [...Deno.readDirSync(`${m2.dir}/tmp`)];
  assert.deepEqual(left, [], "upload temp files were not deleted");
}

Deno.test({
  name:
    "cli: --mongrel2-config alone wires a chrooted mongrel2 (as root): requests, replies and uploads",
  ignore: !isRoot,
  fn: () => serveThroughDiscovery(true),
});

Deno.test({
  name:
    "cli: --mongrel2-config with the store given explicitly still takes the discovered chroot (as root)",
  ignore: !isRoot,
  fn: () => serveThroughDiscovery(true, true),
});

Deno.test("cli: --mongrel2-config alone wires an unchrooted mongrel2", () =>
  serveThroughDiscovery(false));

Deno.test("cli: flags given explicitly win over what --mongrel2-config discovers", async () => {
  await using tmp = await tempDir("m2dx-");
  await Deno.writeTextFile(`${tmp.path}/mongrel2.conf`, TWO_HANDLERS);
  await m2shLoad(tmp.path);
  // The explicit store is still a path inside the discovered chroot.
  await Deno.mkdir(`${tmp.path}/var/tmp`, { recursive: true });
  await using cli = await spawnCli([
    "--mongrel2-config",
    `${tmp.path}/config.sqlite`,
    "--route",
    "localhost:/",
    "--recv-spec",
    "tcp://127.0.0.1:9",
    "--upload-temp-store",
    "/var/tmp/m2fetch-test.XXXXXX",
    "--flow-control",
    "off",
    "examples/hello.ts",
  ]);
  const log = cli.output();
  assert.match(
    log,
    new RegExp(
      `Read handler web-ident \\(route localhost:/ of server main, chroot ${tmp.path}\\) from ${tmp.path}/config\\.sqlite: --send-spec ipc://${tmp.path}/run/web_send, --mongrel2-chroot ${tmp.path}\\n`,
    ),
  );
  assert.ok(
    log.includes(
      `requests from ipc://${tmp.path}/run/web_send, replies to tcp://127.0.0.1:9, uploads from /var/tmp/m2fetch-test.XXXXXX in mongrel2's chroot ${tmp.path}`,
    ),
    log,
  );
  // A spec that differs from the database's is said out loud.
  assert.ok(
    log.includes(
      `warn Using --recv-spec tcp://127.0.0.1:9 (given by a flag or m2fetch.json) instead of ipc://${tmp.path}/run/web_recv, which ${tmp.path}/config.sqlite gives for this handler`,
    ),
    log,
  );
  assert.ok(
    log.includes(
      `warn Using --upload-temp-store /var/tmp/m2fetch-test.XXXXXX (given by a flag or m2fetch.json) instead of `,
    ),
    log,
  );
  assert.ok(
    log.includes(
      `warn Using --flow-control off (given by a flag or m2fetch.json) instead of on, which ${tmp.path}/config.sqlite gives for this handler: drop one of them if that is not meant (replies sized for the wrong mode make mongrel2 close connections)`,
    ),
    log,
  );
  assert.doesNotMatch(log, /Using --send-spec/);
  assert.equal((await cli.stop()).code, 0, cli.output());
});
