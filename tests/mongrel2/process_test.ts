import assert from "node:assert/strict";
import { Inbox, Outbox } from "../zmq_peer.ts";
import {
  loadMongrel2Config,
  Mongrel2Error,
  type Mongrel2Options,
  type Mongrel2Process,
  startMongrel2,
} from "../../runtime/mongrel2/mod.ts";
import { waitFor } from "../subprocess.ts";

const isRoot = Deno.uid() === 0;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "m2t-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function writeStaticFile(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/static`, { recursive: true });
  await Deno.writeTextFile(`${dir}/static/file.txt`, "hello from disk\n");
}

function isRunning(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // A zombie ("Z") has exited but was not reaped yet.
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

async function rawRequest(port: number, request: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(65536);
    let text = "";
    const decoder = new TextDecoder();
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) continue;
      const length = Number(/content-length: *(\d+)/i.exec(text)?.[1] ?? 0);
      if (text.length >= end + 4 + length) break;
    }
    return text;
  } finally {
    conn.close();
  }
}

async function checkDirRoute(m2: Mongrel2Process): Promise<void> {
  const response = await fetch(`${m2.url}/static/file.txt`);
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "hello from disk\n");
  // mongrel2 routes by Host; unknown hosts must fall back to the default host.
  const raw = await rawRequest(
    m2.port,
    "GET /static/file.txt HTTP/1.1\r\nHost: not-configured.example\r\n\r\n",
  );
  assert.match(raw, /^HTTP\/1\.1 200 OK\r\n/);
  assert.ok(raw.endsWith("hello from disk\n"));
}

async function checkHandlerRoute(m2: Mongrel2Process): Promise<void> {
  const [handler] = m2.handlers;
  assert.match(handler.sendSpec, /^ipc:\/\/\//);
  assert.ok(handler.sendSpec.startsWith(`ipc://${m2.dir}/run/`));
  await using requests = Inbox.connect("pull", handler.sendSpec);
  await using replies = Outbox.connect("xpub", handler.recvSpec);
  await replies.subscribed();
  const responsePromise = fetch(`${m2.url}/app/hello?x=1`);
  const text = new TextDecoder().decode(await requests.next());
  assert.ok(text.startsWith(`${handler.sendIdent} `), text);
  const [, id, path] = text.split(" ", 3);
  assert.match(id, /^\d+$/);
  assert.equal(path, "/app/hello");
  assert.ok(text.includes("3:GET,"), text); // tnetstring headers by default
  replies.send(
    `${handler.sendIdent} ${id.length}:${id}, ` +
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
  );
  const response = await responsePromise;
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "ok");
}

async function checkStartStop(
  options: Omit<Mongrel2Options, "dir">,
): Promise<void> {
  await withTempDir(async (dir) => {
    await writeStaticFile(dir);
    const m2 = await startMongrel2({
      dir,
      dirs: [{ route: "/static/", base: "static" }],
      handlers: [{ route: "/app/" }],
      ...options,
    });
    let stopped = false;
    try {
      assert.ok(isRunning(m2.pid));
      assert.equal(m2.url, `http://127.0.0.1:${m2.port}`);
      await checkDirRoute(m2);
      await checkHandlerRoute(m2);
      assert.match(await m2.errorLog(), /Mongrel2\/1\.12/);
      await m2.stop();
      stopped = true;
      assert.equal(isRunning(m2.pid), false);
      await m2.stop(); // idempotent
      // Not checking for a clean exit: mongrel2 1.12.2 may SIGSEGV during
      // its graceful shutdown when a client connection (fetch's keep-alive
      // pool here) outlives the handler sockets closed above.
      await m2.status;
    } finally {
      if (!stopped) await m2.stop();
    }
  });
}

Deno.test("startMongrel2() serves a Dir route and a handler route", async () => {
  await checkStartStop({});
});

Deno.test({
  name: "startMongrel2() works the same chrooted",
  ignore: !isRoot,
  fn: async () => {
    await checkStartStop({ chroot: true });
  },
});

Deno.test("startMongrel2() writes absolute real paths without chroot", async () => {
  await withTempDir(async (dir) => {
    await using m2 = await startMongrel2({
      dir,
      handlers: [{ route: "/", name: "web", sendIdent: "fixed-ident" }],
    });
    const config = await Deno.readTextFile(m2.configPath);
    assert.ok(config.includes(`send_spec="ipc://${m2.dir}/run/web_send"`));
    assert.ok(config.includes(`error_log="${m2.dir}/logs/error.log"`));
    assert.ok(config.includes(`"${m2.dir}/tmp/upload.XXXXXX"`));
    assert.deepEqual(m2.handlers, [{
      route: "/",
      protocol: "tnetstring",
      name: "web",
      sendSpec: `ipc://${m2.dir}/run/web_send`,
      recvSpec: `ipc://${m2.dir}/run/web_recv`,
      sendIdent: "fixed-ident",
      recvIdent: "fixed-ident",
    }]);
    assert.equal(m2.databasePath, `${m2.dir}/config.sqlite`);
    assert.equal(m2.resolvePath("/tmp/upload.abc"), "/tmp/upload.abc");
    assert.ok((await Deno.stat(`${m2.dir}/run/mongrel2.pid`)).isFile);
  });
});

Deno.test({
  name: "startMongrel2() maps chroot-relative paths back to the state dir",
  ignore: !isRoot,
  fn: async () => {
    await withTempDir(async (dir) => {
      await using m2 = await startMongrel2({
        dir,
        chroot: true,
        handlers: [{ route: "/", name: "web" }],
      });
      const config = await Deno.readTextFile(m2.configPath);
      assert.ok(config.includes(`send_spec="ipc://run/web_send"`));
      assert.ok(config.includes(`"upload.temp_store": "/tmp/upload.XXXXXX"`));
      assert.equal(m2.handlers[0].sendSpec, `ipc://${m2.dir}/run/web_send`);
      assert.equal(
        m2.resolvePath("/tmp/upload.abc"),
        `${m2.dir}/tmp/upload.abc`,
      );
      assert.ok((await Deno.stat(`${m2.dir}/logs/error.log`)).isFile);
    });
  },
});

Deno.test("startMongrel2() rejects a bad setting type before running m2sh", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      startMongrel2({
        dir,
        settings: { "limits.content_length": true as unknown as number },
      }),
      (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.match(
          error.message,
          /setting "limits\.content_length" is a boolean/,
        );
        return true;
      },
    );
    await assert.rejects(
      startMongrel2({ dir, settings: { "limits.content_length": 1.5 } }),
      /only accepts integers/,
    );
  });
});

Deno.test("loadMongrel2Config() reports m2sh's output when the config is broken", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/mongrel2.conf`,
      'settings = {"limits.content_length": 1.5}\nservers = []\n',
    );
    await assert.rejects(
      loadMongrel2Config(dir),
      (error: unknown) => {
        assert.ok(error instanceof Mongrel2Error);
        assert.match(error.message, /^Cannot load the mongrel2 config/);
        assert.match(error.output, /INVALID CHARACTER AT '\.'/);
        return true;
      },
    );
  });
});

Deno.test("startMongrel2() explains an early exit with mongrel2's output, a port in use first, and not with an earlier run's log", async () => {
  await withTempDir(async (dir) => {
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = taken.addr.port;
    // What an earlier run in the same directory logged is not the reason.
    await Deno.mkdir(`${dir}/logs`);
    await Deno.writeTextFile(
      `${dir}/logs/error.log`,
      "a line an earlier run left\n",
    );
    await assert.rejects(
      startMongrel2({ dir, port }),
      (error: unknown) => {
        assert.ok(error instanceof Mongrel2Error);
        const [first] = error.message.split("\n");
        assert.equal(
          first,
          `Cannot start mongrel2 in ${dir}: it cannot listen on 127.0.0.1:${port}: another process already listens on port ${port} (for dev, pick another --port, or --port 0 for a free one)`,
        );
        assert.match(error.output, /Can't announce on TCP port/);
        assert.doesNotMatch(error.message, /an earlier run left/);
        return true;
      },
    );
  });
});

Deno.test("startMongrel2() says which program is missing, and how to get it", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      startMongrel2({ dir, m2shPath: `${dir}/no-m2sh` }),
      (error: unknown) => {
        assert.ok(error instanceof Mongrel2Error);
        assert.match(
          error.message,
          /^Cannot load the mongrel2 config: there is no .*\/no-m2sh; install mongrel2, which brings mongrel2 and m2sh \(Debian: apt-get install mongrel2-core\)/,
        );
        return true;
      },
    );
    await assert.rejects(
      startMongrel2({ dir, mongrel2Path: "no-such-mongrel2" }),
      (error: unknown) => {
        assert.ok(error instanceof Mongrel2Error);
        assert.match(
          error.message,
          /^Cannot start mongrel2: there is no "no-such-mongrel2" on PATH; install mongrel2/,
        );
        return true;
      },
    );
  });
});

Deno.test("startMongrel2() says when it cannot write the directory it runs in", async () => {
  await withTempDir(async (dir) => {
    // Root writes anywhere, but not under a file.
    await Deno.writeTextFile(`${dir}/file`, "");
    await assert.rejects(
      startMongrel2({ dir: `${dir}/file/state` }),
      (error: unknown) => {
        assert.ok(error instanceof Mongrel2Error);
        assert.match(
          error.message,
          /^Cannot start mongrel2 in .*\/file\/state: cannot write its files there \(Not a directory .*\); use a writable directory \(for dev, --state-dir\)$/,
        );
        return true;
      },
    );
  });
});

Deno.test("startMongrel2() refuses a dir whose mongrel2 still runs, and leaves that one serving", async () => {
  await withTempDir(async (dir) => {
    await writeStaticFile(dir);
    const options: Mongrel2Options = {
      dir,
      handlers: [{ route: "/app/" }],
      dirs: [{ route: "/static/", base: "static/" }],
    };
    await using first = await startMongrel2(options);
    await assert.rejects(
      startMongrel2(options),
      (error: unknown) => {
        assert.ok(error instanceof Mongrel2Error);
        assert.match(
          error.message,
          new RegExp(`still running \\(pid ${first.pid}\\).*--state-dir`),
        );
        return true;
      },
    );
    // Its sockets and config are untouched: both routes still work.
    await checkHandlerRoute(first);
    const file = await fetch(`${first.url}/static/file.txt`);
    assert.equal(await file.text(), "hello from disk\n");
    await first.stop();
    // Once it has stopped, the dir can be used again.
    await using second = await startMongrel2(options);
    assert.equal(
      await (await fetch(`${second.url}/static/file.txt`)).text(),
      "hello from disk\n",
    );
  });
});

Deno.test("startMongrel2() refuses a dir whose starter lives, whatever mongrel2's parent is", async () => {
  await withTempDir(async (dir) => {
    // mongrel2 under a shell that does not exec it: its parent is not
    // deno (as under a wrapper, or with deno as a container's pid 1).
    const wrapper = `${dir}/mongrel2-wrapper`;
    await Deno.writeTextFile(
      wrapper,
      "#!/bin/sh\nmongrel2 \"$@\" &\nchild=$!\ntrap 'kill -INT $child' INT TERM\nwait $child\nwait $child\n",
    );
    await Deno.chmod(wrapper, 0o755);
    const options: Mongrel2Options = {
      dir: `${dir}/state`,
      handlers: [{ route: "/app/" }],
      mongrel2Path: wrapper,
    };
    await using first = await startMongrel2(options);
    await assert.rejects(startMongrel2(options), /still running/);
    await checkHandlerRoute(first);
  });
});

Deno.test("startMongrel2() stops the mongrel2 a killed starter left in the dir, and serves", async () => {
  await withTempDir(async (dir) => {
    const options: Mongrel2Options = { dir, handlers: [{ route: "/app/" }] };
    // A starter that dies by SIGKILL cannot stop its mongrel2.
    const module = new URL("../../runtime/mongrel2/mod.ts", import.meta.url);
    const starter = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { startMongrel2 } from "${module.href}";
        const m2 = await startMongrel2(${JSON.stringify(options)});
        console.log(m2.pid);
        await new Promise(() => {});`,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = starter.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    const leftover = Number((await reader.read()).value);
    reader.releaseLock();
    starter.kill("SIGKILL");
    await starter.status;
    assert.ok(isRunning(leftover), "the starter's mongrel2 outlives it");

    await using second = await startMongrel2(options);
    assert.equal(second.replaced, leftover);
    assert.ok(!isRunning(leftover));
    await checkHandlerRoute(second);
  });
});

Deno.test("startMongrel2() takes a killed starter its parent has not reaped (a zombie) for gone", async () => {
  await withTempDir(async (dir) => {
    const options: Mongrel2Options = { dir, handlers: [{ route: "/app/" }] };
    const module = new URL("../../runtime/mongrel2/mod.ts", import.meta.url);
    const script = `import { startMongrel2 } from "${module.href}";
    const m2 = await startMongrel2(${JSON.stringify(options)});
    console.log(Deno.pid, m2.pid);
    await new Promise(() => {});`;
    // The starter's parent becomes \`sleep\`, which never reaps a child.
    const parent = new Deno.Command("sh", {
      args: [
        "-c",
        '"$0" eval "$1" & exec sleep 60',
        Deno.execPath(),
        script,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    let leftover = 0;
    try {
      const reader = parent.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      let starter: number;
      [starter, leftover] = String((await reader.read()).value)
        .trim().split(" ").map(Number);
      reader.releaseLock();
      Deno.kill(starter, "SIGKILL");
      assert.ok(
        await waitFor(
          async () =>
            (await Deno.readTextFile(`/proc/${starter}/stat`)).split(") ")[1]
              .startsWith("Z "),
          5000,
        ),
        "the killed starter stays a zombie",
      );
      await using second = await startMongrel2(options);
      assert.equal(second.replaced, leftover);
      assert.ok(!isRunning(leftover));
      await checkHandlerRoute(second);
    } finally {
      // A failed run must not leave the leftover serving.
      if (leftover > 0 && isRunning(leftover)) Deno.kill(leftover, "SIGKILL");
      parent.kill("SIGKILL");
      await parent.status;
      await parent.stdout.cancel().catch(() => {});
    }
  });
});

Deno.test("startMongrel2() rejects a state dir too long for unix sockets", async () => {
  await withTempDir(async (base) => {
    const dir = `${base}/${"d".repeat(100)}`;
    await assert.rejects(
      startMongrel2({ dir, handlers: [{ route: "/" }] }),
      (error: unknown) => {
        assert.ok(error instanceof RangeError);
        assert.match(error.message, /107-byte unix socket limit/);
        return true;
      },
    );
  });
});

Deno.test("startMongrel2() exposes stdout and stderr when piped", async () => {
  await withTempDir(async (dir) => {
    const m2 = await startMongrel2({ dir, stdout: "piped" });
    assert.ok(m2.stdout && m2.stderr);
    const stderr = new Response(m2.stderr).text();
    const stdout = new Response(m2.stdout).text();
    await m2.stop();
    assert.match(await stderr, /Starting Mongrel2\/1\.12/);
    assert.equal(typeof await stdout, "string");
  });
});

Deno.test("Mongrel2Process is async-disposable and idempotent after exit", async () => {
  await withTempDir(async (dir) => {
    let pid = 0;
    {
      await using m2 = await startMongrel2({ dir });
      pid = m2.pid;
      Deno.kill(m2.pid, "SIGKILL");
      await m2.status;
    }
    assert.equal(isRunning(pid), false);
  });
});
