import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
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
  // json is a protocol mongrel2 knows: the recv_ident is the one warning.
  assert.equal(api.warnings.length, 1, api.warnings.join("\n"));
  assert.match(api.warnings[0], /empty recv_ident/);

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
  for (const route of ["no-colon", ":/", "localhost:"]) {
    throwsDiscovery(
      () => discoverHandler(db, { route }),
      new RegExp(`^Invalid route "${route}": expected HOST:PATTERN`),
    );
  }
  throwsDiscovery(
    () => discoverHandler(db, { route: "localhost:/", handler: "api-ident" }),
    /the route leads to handler web-ident/,
  );

  // Read-only: the database is byte-for-byte unchanged, no journal left.
  assert.deepEqual(await Deno.readFile(db), before);
  const names = [...Deno.readDirSync(dir)].map((entry) => entry.name).sort();
  assert.deepEqual(names, ["config.sqlite", "mongrel2.conf"]);
});

/** Two servers, each in its own chroot, sharing handler web; hosts that match another name. */
const TWO_SERVERS = `
web = Handler(send_spec='ipc://run/web_send', send_ident='web-ident',
              recv_spec='ipc://run/web_recv', recv_ident='web-ident',
              protocol='tnetstring')
twin = Handler(send_spec='tcp://[::]:9193', send_ident='web-ident',
               recv_spec='tcp://[::]:9194', recv_ident='web',
               protocol='json', raw_payload=1)
a = Server(uuid="aaaaaaaa-2222-3333-4444-555555555555",
           access_log="/logs/access.log", error_log="/logs/error.log",
           chroot="./a", pid_file="/run/mongrel2.pid",
           default_host="localhost", name="a", port=6767,
           hosts=[Host(name="localhost", matching="example.com",
                       routes={'/': web, '/twin/': twin})])
b = Server(uuid="bbbbbbbb-2222-3333-4444-555555555555",
           access_log="/logs/access.log", error_log="/logs/error.log",
           chroot="./b", pid_file="/run/mongrel2.pid",
           default_host="localhost", name="", port=6768,
           hosts=[Host(name="localhost", routes={'/': web, '/both/': web}),
                  Host(name="alias", matching="localhost",
                       routes={'/both/': twin})])
settings = {"upload.temp_store": "/tmp/upload.XXXXXX",
            "upload.temp_store_mode": "0644",
            "download.flow_control": 1}
servers = [a, b]
`;

Deno.test("discoverHandler() picks among several servers and hosts, and refuses what is ambiguous", async () => {
  await using tmp = await tempDir("m2d-");
  const dir = tmp.path;
  await Deno.writeTextFile(`${dir}/mongrel2.conf`, TWO_SERVERS);
  await m2shLoad(dir);
  const db = `${dir}/config.sqlite`;

  // A host's matching name picks it: only server a's host matches example.com.
  const web = discoverHandler(db, { route: "example.com:/" });
  assert.equal(web.server.name, "a");
  assert.equal(web.sendSpec, `ipc://${dir}/a/run/web_send`);
  assert.deepEqual(web.routes, [{
    host: "localhost",
    pattern: "/",
    server: "a",
    target: "handler",
  }]);

  // Given by its send_spec, a handler may come with its route; an IPv6
  // wildcard becomes IPv6 loopback. A recv_ident that is a prefix of the
  // send_ident is fine; raw_payload is not for HTTP.
  const twin = discoverHandler(db, {
    route: "example.com:/twin/",
    handler: "tcp://[::]:9193",
  });
  assert.equal(twin.configSendSpec, "tcp://[::]:9193");
  assert.equal(twin.sendSpec, "tcp://[::1]:9193");
  assert.equal(twin.recvSpec, "tcp://[::1]:9194");
  assert.deepEqual(twin.warnings, [
    "Handler web-ident has raw_payload=1, which only changes JSON socket messages; m2fetch serves HTTP",
  ]);

  // The same route on two servers (the unnamed one goes by its uuid).
  throwsDiscovery(
    () => discoverHandler(db, { route: "localhost:/" }),
    /^Cannot pick route localhost:\/ in .*: 2 routes match \(server a, handler web-ident; server bbbbbbbb-2222-3333-4444-555555555555, handler web-ident\); give the host name of one server$/,
  );
  // One server whose two hosts answer localhost:/both/ with two handlers.
  throwsDiscovery(
    () => discoverHandler(db, { route: "localhost:/both/" }),
    /^Cannot pick route localhost:\/both\/ in .*: 2 routes match \(server bbbbbbbb-.*, handler web-ident; server bbbbbbbb-.*, handler web-ident\)/,
  );
  // Two handlers share the send_ident.
  throwsDiscovery(
    () => discoverHandler(db, { handler: "web-ident" }),
    /^Cannot pick handler "web-ident" in .*: 2 handlers match \(web-ident at ipc:\/\/run\/web_send; web-ident at tcp:\/\/\[::\]:9193\); pick one by route/,
  );
  // One handler behind servers with different chroots binds in each.
  throwsDiscovery(
    () => discoverHandler(db, { handler: "ipc://run/web_send" }),
    new RegExp(
      `^Cannot pick a server for handler web-ident in .*: servers a \\(chroot ${dir}/a\\), bbbbbbbb-2222-3333-4444-555555555555 \\(chroot ${dir}/b\\) each bind its sockets in their own chroot`,
    ),
  );
});

Deno.test("discoverHandler() explains a database edited by hand: no servers, no routes, a route to a missing handler", async () => {
  await using tmp = await tempDir("m2d-");
  await Deno.writeTextFile(`${tmp.path}/mongrel2.conf`, TWO_HANDLERS);
  await m2shLoad(tmp.path);
  const edited = async (name: string, sql: string) => {
    const path = `${tmp.path}/${name}.sqlite`;
    await Deno.copyFile(`${tmp.path}/config.sqlite`, path);
    const db = new DatabaseSync(path);
    try {
      db.exec(sql);
    } finally {
      db.close();
    }
    return path;
  };

  const noServers = await edited("no_servers", "DELETE FROM server");
  throwsDiscovery(
    () => discoverHandler(noServers, { handler: "web-ident" }),
    /^Cannot use .*no_servers\.sqlite as a mongrel2 config: it has no servers/,
  );
  const noRoutes = await edited(
    "no_routes",
    "DELETE FROM route WHERE target_type = 'handler'",
  );
  throwsDiscovery(
    () => discoverHandler(noRoutes),
    /^Cannot find a handler in .*: no route leads to a Handler \(the handlers there are: web-ident \(send_spec ipc:\/\/run\/web_send, no route\); api-ident/,
  );
  throwsDiscovery(
    () => discoverHandler(noRoutes, { handler: "web-ident" }),
    /^Cannot serve handler web-ident of .*: no route leads to it, so mongrel2 never binds its sockets$/,
  );
  const noHandler = await edited(
    "no_handler",
    "DELETE FROM handler WHERE send_ident = 'web-ident'",
  );
  throwsDiscovery(
    () => discoverHandler(noHandler, { route: "localhost:/" }),
    /^Cannot use route localhost:\/ of .*: its handler \(id \d+\) is missing from the handler table$/,
  );
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

Deno.test("discoverHandler() takes mongrel2's defaults for unset settings, and places a relative upload store", async () => {
  await using tmp = await tempDir("m2d-");
  const TWO_HANDLERS_SETTINGS = /^settings = \{[^}]*\}$/m;
  assert.match(TWO_HANDLERS, TWO_HANDLERS_SETTINGS);
  const loaded = async (name: string, settings: string) => {
    const dir = `${tmp.path}/${name}`;
    await Deno.mkdir(dir);
    await Deno.writeTextFile(
      `${dir}/mongrel2.conf`,
      TWO_HANDLERS.replace(TWO_HANDLERS_SETTINGS, `settings = ${settings}`),
    );
    await m2shLoad(dir);
    return `${dir}/config.sqlite`;
  };

  // None set: mongrel2's code defaults, and what they cost.
  const bare = discoverHandler(await loaded("bare", "{}"), {
    handler: "web-ident",
  });
  assert.equal(bare.flowControl, false);
  assert.equal(bare.contentLength, 20480);
  assert.equal(bare.uploads, undefined);
  assert.deepEqual(bare.warnings, [
    "download.flow_control is off: m2fetch cannot see how much a slow client has read (set download.flow_control = 1)",
    "upload.temp_store is not set: mongrel2 answers 413 to bodies over 20480 bytes (limits.content_length) and to chunked requests",
  ]);

  // A relative store is relative to the chroot, or to mongrel2's working
  // directory; its files are 0600 unless set. limits.content_length equal
  // to limits.buffer_size (4096 by default) is enough.
  const relative = await loaded(
    "relative",
    `{"download.flow_control": 1, "limits.content_length": 4096,
      "upload.temp_store": "tmp/upload.XXXXXX"}`,
  );
  const chrooted = discoverHandler(relative, { handler: "web-ident" });
  assert.deepEqual(chrooted.uploads, {
    template: "/tmp/upload.XXXXXX",
    mode: "0600",
    chroot: `${tmp.path}/relative`,
  });
  assert.deepEqual(chrooted.warnings, [
    `upload.temp_store_mode is 0600: an m2fetch running as another user than mongrel2 cannot read uploads (use "0644")`,
  ]);
  const unchrooted = discoverHandler(relative, {
    handler: "web-ident",
    chrooted: false,
    cwd: "/srv/site",
  });
  assert.deepEqual(unchrooted.uploads, {
    template: "/srv/site/tmp/upload.XXXXXX",
    mode: "0600",
  });

  // Group-readable is readable enough (m2fetch in mongrel2's group).
  const groupReadable = await loaded(
    "group",
    `{"download.flow_control": 1, "upload.temp_store": "/tmp/upload.XXXXXX",
      "upload.temp_store_mode": "0640"}`,
  );
  assert.deepEqual(
    discoverHandler(groupReadable, { handler: "web-ident" }).warnings,
    [],
  );
  // A socket path of 107 bytes is within the unix socket limit; 108 is not.
  const socketWarnings = (cwdBytes: number) =>
    discoverHandler(groupReadable, {
      handler: "web-ident",
      chrooted: false,
      cwd: `/${"d".repeat(cwdBytes - 1)}`,
    }).warnings;
  // "/run/web_send" is 13 bytes, "/run/web_recv" too.
  assert.deepEqual(socketWarnings(107 - 13), []);
  assert.deepEqual(
    socketWarnings(108 - 13).map((line) => line.replace(/ipc:\/\/\S+/, "P")),
    [
      "The socket path of P is 108 bytes, over the 107-byte unix socket limit: connecting will fail",
      "The socket path of P is 108 bytes, over the 107-byte unix socket limit: connecting will fail",
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
