import assert from "node:assert/strict";
import {
  defaultMongrel2Settings,
  loadMongrel2Config,
  MAX_IPC_PATH_BYTES,
  renderMongrel2Config,
  resolveMongrel2Config,
} from "../../runtime/mongrel2/mod.ts";

const base = { dir: "/srv/m2", port: 6767 } as const;

Deno.test("resolveMongrel2Config() fills defaults with absolute real paths", () => {
  const config = resolveMongrel2Config({
    ...base,
    handlers: [{ route: "/" }, { route: "/j/", protocol: "json", name: "j" }],
  });
  assert.equal(config.bindAddress, "127.0.0.1");
  assert.equal(config.chroot, false);
  assert.equal(config.hostName, "localhost");
  assert.match(config.serverUuid, /^[0-9a-f-]{36}$/);
  const [first, second] = config.handlers;
  assert.equal(first.name, "app0");
  assert.equal(first.protocol, "tnetstring");
  assert.match(first.sendIdent, /^[0-9a-f-]{36}$/);
  assert.equal(first.recvIdent, first.sendIdent);
  assert.notEqual(second.sendIdent, first.sendIdent);
  assert.equal(first.sendSpec, "ipc:///srv/m2/run/app0_send");
  assert.equal(first.configSendSpec, first.sendSpec);
  assert.equal(second.recvSpec, "ipc:///srv/m2/run/j_recv");
  assert.deepEqual(config.paths.errorLog, {
    config: "/srv/m2/logs/error.log",
    real: "/srv/m2/logs/error.log",
  });
  assert.deepEqual(config.settings, {
    "zeromq.threads": 1,
    "server.daemonize": 0,
    "download.flow_control": 1,
    "upload.temp_store": "/srv/m2/tmp/upload.XXXXXX",
    "upload.temp_store_mode": "0644",
    "limits.content_length": 20480,
  });
});

Deno.test("resolveMongrel2Config() uses chroot-relative config paths when chrooted", () => {
  const config = resolveMongrel2Config({
    ...base,
    chroot: true,
    handlers: [{ route: "/", sendIdent: "a-1", recvIdent: "" }],
  });
  const [handler] = config.handlers;
  assert.equal(handler.configSendSpec, "ipc://run/app0_send");
  assert.equal(handler.sendSpec, "ipc:///srv/m2/run/app0_send");
  assert.equal(handler.recvIdent, "");
  assert.deepEqual(config.paths.pidFile, {
    config: "/run/mongrel2.pid",
    real: "/srv/m2/run/mongrel2.pid",
  });
  assert.equal(config.paths.control.config, "ipc://run/control");
  assert.equal(config.settings["upload.temp_store"], "/tmp/upload.XXXXXX");
  assert.deepEqual(
    defaultMongrel2Settings("/srv/m2", true),
    config.settings,
  );
});

Deno.test("resolveMongrel2Config() merges settings over the defaults", () => {
  const config = resolveMongrel2Config({
    ...base,
    settings: { "limits.content_length": 1024, "no_clobber_xff": "1" },
  });
  assert.equal(config.settings["limits.content_length"], 1024);
  assert.equal(config.settings["no_clobber_xff"], "1");
  assert.equal(config.settings["zeromq.threads"], 1);
});

Deno.test("resolveMongrel2Config() rejects bad options with clear errors", () => {
  const cases: [Parameters<typeof resolveMongrel2Config>[0], RegExp][] = [
    [{ ...base, dir: "relative" }, /must be an absolute path/],
    [{ ...base, port: 0 }, /port 0 is not an integer between 1 and 65535/],
    [{ ...base, port: 65536 }, /port 65536 is not an integer between 1/],
    [
      // A sibling of the state dir that shares its name as a prefix.
      {
        ...base,
        chroot: true,
        handlers: [{ route: "/", sendSpec: "ipc:///srv/m2x/send" }],
      },
      /"ipc:\/\/\/srv\/m2x\/send" lies outside the chroot \/srv\/m2,/,
    ],
    [
      {
        ...base,
        handlers: [{ route: "/" }],
        dirs: [{ route: "/", base: "s" }],
      },
      /route "\/" is used twice/,
    ],
    [
      { ...base, handlers: [{ route: "/", sendIdent: "has space" }] },
      /sendIdent "has space" may only contain/,
    ],
    [
      { ...base, handlers: [{ route: "/", name: "../x" }] },
      /handler name "..\/x" may only contain/,
    ],
    [
      { ...base, handlers: [{ route: "/", protocol: "xml" as "json" }] },
      /protocol "xml"/,
    ],
    [{ ...base, dirs: [{ route: "/s/", base: "/etc" }] }, /must be relative/],
    [
      { ...base, settings: { "a": { b: 1 } as unknown as string } },
      /setting "a" is a object, but only strings and integers/,
    ],
    [{ ...base, settings: { "a": 0.5 } }, /only accepts integers/],
    [{ ...base, settings: { "a": 'say "hi"' } }, /contains a quote/],
  ];
  for (const [options, message] of cases) {
    assert.throws(() => resolveMongrel2Config(options), message);
  }
  assert.equal(resolveMongrel2Config({ ...base, port: 65535 }).port, 65535);
});

Deno.test("resolveMongrel2Config() enforces the unix socket path limit", () => {
  // "/" + dir + "/run/" + "app0_send" must stay within 107 bytes.
  const fits = "/" + "d".repeat(MAX_IPC_PATH_BYTES - "//run/app0_send".length);
  assert.equal(
    resolveMongrel2Config({ dir: fits, port: 1, handlers: [{ route: "/" }] })
      .handlers[0].sendSpec.length,
    "ipc://".length + MAX_IPC_PATH_BYTES,
  );
  assert.throws(
    () =>
      resolveMongrel2Config({
        dir: `${fits}x`,
        port: 1,
        handlers: [{ route: "/" }],
      }),
    (error: unknown) =>
      error instanceof RangeError &&
      /is 108 bytes, longer than the 107-byte unix socket limit/.test(
        error.message,
      ),
  );
});

Deno.test("renderMongrel2Config() prints handlers, dirs, server and settings", () => {
  const text = renderMongrel2Config({
    ...base,
    serverUuid: "f400bf85-4538-4f7a-8908-67e313d515c2",
    handlers: [{ route: "/app/", sendIdent: "ident-1", protocol: "json" }],
    dirs: [{ route: "/static/", base: "static", indexFile: "i.html" }],
  });
  assert.ok(text.includes(`send_spec="ipc:///srv/m2/run/app0_send"`));
  assert.ok(text.includes(`send_ident="ident-1"`));
  assert.ok(text.includes(`recv_ident="ident-1"`));
  assert.ok(text.includes(`protocol="json"`));
  assert.ok(
    text.includes(
      `Dir(base="static/", index_file="i.html", default_ctype="text/plain")`,
    ),
  );
  assert.ok(text.includes(`uuid="f400bf85-4538-4f7a-8908-67e313d515c2"`));
  assert.ok(text.includes(`chroot="",`));
  assert.ok(text.includes(`default_host="localhost"`));
  assert.ok(text.includes(`port=6767,`));
  assert.ok(text.includes(`"/app/": handler_0,\n        "/static/": dir_0\n`));
  assert.ok(text.includes(`"limits.content_length": 20480\n}`));
  assert.ok(text.includes(`"upload.temp_store_mode": "0644"`));
  assert.ok(text.endsWith("servers = [main]\n"));
  // The comment on sharing one m2fetch goes with recv_ident = send_ident
  // only: not with an empty one, nor with a shorter prefix.
  const sharing = "# recv_ident = send_ident: ";
  assert.ok(text.includes(sharing));
  for (const recvIdent of ["", "ident"]) {
    const other = renderMongrel2Config({
      ...base,
      handlers: [{ route: "/", sendIdent: "ident-1", recvIdent }],
    });
    assert.ok(other.includes(`recv_ident="${recvIdent}"`));
    assert.ok(!other.includes(sharing), recvIdent);
  }
  // Rendering a resolved config prints the same idents.
  const resolved = resolveMongrel2Config({
    ...base,
    handlers: [{ route: "/" }],
  });
  assert.ok(
    renderMongrel2Config(resolved).includes(resolved.handlers[0].sendIdent),
  );
});

Deno.test("renderMongrel2Config() output is accepted by m2sh load", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2c-" });
  try {
    for (const chroot of [false, true]) {
      const config = resolveMongrel2Config({
        dir,
        port: 6767,
        chroot,
        handlers: [
          { route: "/json", protocol: "json" },
          { route: "/tnet", protocol: "tnetstring", recvIdent: "" },
        ],
        dirs: [{ route: "/static/", base: "static/" }],
        settings: { "limits.content_length": 1024 },
      });
      await Deno.writeTextFile(
        `${dir}/mongrel2.conf`,
        renderMongrel2Config(config),
      );
      const db = await loadMongrel2Config(dir, {
        serverUuid: config.serverUuid,
      });
      assert.equal(db, `${dir}/config.sqlite`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
