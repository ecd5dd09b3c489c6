/**
 * The worker pool's supervision and bookkeeping, driven in this process
 * with real handler workers: the worker count, a start that fails,
 * replacements and their backoff, a replacement that fails to load or is
 * still loading, requests while a slot has no worker, a reload's module in
 * later replacements and its workers' ping clock, retiring old workers (one
 * that hangs, streamed bodies), close(), a response that comes too late, a
 * request that cannot cross, and requests' ends riding on later requests.
 *
 * Where a test must act while a slot is empty, it acts from the log line
 * that says so: the pool writes it synchronously as the worker dies, before
 * any replacement can start.
 *
 * @module
 */

import assert from "node:assert/strict";
import { factsHandlerOf } from "../../runtime/handler.ts";
import { createLogger } from "../../runtime/log.ts";
import { WorkerLoadError, WorkerPool } from "../../runtime/workers/pool.ts";
import { waitFor, within } from "../subprocess.ts";
import { workerThreads } from "../lifecycle/helpers.ts";
import {
  get,
  nextConnectionId,
  send,
  start,
  withPool,
} from "./pool_helpers.ts";

/** A module whose `/crash` answers, then throws an uncaught error. */
const CRASHES = `
export default {
  fetch(request) {
    if (new URL(request.url).pathname === "/crash") {
      setTimeout(() => { throw new Error("boom"); }, 20);
      return new Response("crashing");
    }
    return new Response("ok");
  },
};
`;

/** For modules that wait on a file the test writes: `exists(name)`. */
const EXISTS = `const exists = (name) =>
  Deno.stat(new URL(name, import.meta.url)).then(() => true, () => false);
`;

/** The delays of the replacements the log announced so far. */
function replacementDelays(lines: string[]): number[] {
  return lines.flatMap((line) => {
    const match = /replacing it in (\d+) ms/.exec(line);
    return match === null ? [] : [Number(match[1])];
  });
}

Deno.test("the pool refuses to start or reload with a worker count that is not a whole number of at least 1", async () => {
  for (const workers of [0, 1.5]) {
    await assert.rejects(
      WorkerPool.start({
        module: "examples/hello.ts",
        workers,
        logger: createLogger({ quiet: true }),
      }),
      RangeError,
    );
  }
  await withPool(CRASHES, async (pool) => {
    for (const workers of [0, 1.5]) {
      await assert.rejects(pool.reload(1000, { workers }), RangeError);
    }
    assert.deepEqual(await get(pool, "/"), { status: 200, text: "ok" });
  });
});

Deno.test("a module that fails to load fails the start with its error and leaves no worker or timer behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2ps-" });
  try {
    await Deno.writeTextFile(
      `${dir}/app.ts`,
      `throw new Error("cannot start: no database");\n`,
    );
    await assert.rejects(
      WorkerPool.start({
        module: `${dir}/app.ts`,
        workers: 2,
        logger: createLogger({ quiet: true }),
      }),
      (error) => {
        assert.ok(error instanceof WorkerLoadError, String(error));
        assert.match(error.message, /cannot start: no database/);
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a replacement that fails to load or crashes loading is replaced once in turn, each wait twice the last, until one loads", async () => {
  const lines: string[] = [];
  let dir = "";
  await withPool(
    `const mode = await Deno.readTextFile(new URL("./broken", import.meta.url))
  .catch(() => "");
if (mode === "throw") throw new Error("broken for now");
if (mode === "crash") {
  setTimeout(() => { throw new Error("crashed loading"); }, 10);
  await new Promise((resolve) => setTimeout(resolve, 1000));
}
${CRASHES}`,
    async (pool, where) => {
      dir = where;
      await Deno.writeTextFile(`${dir}/broken`, "throw");
      assert.equal((await get(pool, "/crash")).text, "crashing");
      assert.ok(
        await waitFor(
          () => lines.some((line) => line.includes(" replaced")),
          10_000,
        ),
        lines.join("\n"),
      );
      // One replacement for each death: the crash, the failed load, the
      // crash while loading (which also fails its load).
      assert.deepEqual(replacementDelays(lines), [100, 200, 400]);
      const log = lines.join("\n");
      assert.match(
        log,
        /failed to load: .*broken for now; replacing it in 200/,
      );
      assert.match(log, /crashed loading\); replacing it in 400/);
      assert.deepEqual(await get(pool, "/"), { status: 200, text: "ok" });
    },
    {
      log: (line) => {
        lines.push(line);
        // What the next replacement meets as it loads.
        const deaths = replacementDelays(lines).length;
        if (!line.includes("replacing it in")) return;
        if (deaths === 2) Deno.writeTextFileSync(`${dir}/broken`, "crash");
        if (deaths === 3) Deno.removeSync(`${dir}/broken`);
      },
    },
  );
});

Deno.test("a request for a crashed worker's slot while no worker holds it is answered 502 at once", async () => {
  let answer: Promise<number> | undefined;
  let pool: WorkerPool | undefined;
  await withPool(CRASHES, async (started) => {
    pool = started;
    assert.equal((await get(pool, "/crash")).text, "crashing");
    assert.ok(await waitFor(() => answer !== undefined, 10_000));
    assert.equal(await within(answer!, 5000, "no answer"), 502);
  }, {
    log: (line) => {
      // Written as the worker dies: its replacement waits out its backoff.
      if (line.includes("replacing it in") && answer === undefined) {
        answer = send(pool!, "/").then(({ response, completed }) => {
          completed.resolve();
          return response.status;
        });
      }
    },
  });
});

Deno.test("a request that comes while the only worker's replacement loads waits for it", async () => {
  const lines: string[] = [];
  await withPool(
    `if (await Deno.stat(new URL("./slow", import.meta.url)).then(() => true, () => false)) {
  await new Promise((resolve) => setTimeout(resolve, 1000));
}
${CRASHES}`,
    async (pool, dir) => {
      await Deno.writeTextFile(`${dir}/slow`, "");
      assert.equal((await get(pool, "/crash")).text, "crashing");
      assert.ok(
        await waitFor(
          () => lines.some((line) => line.includes("replacing it in")),
          10_000,
        ),
        "the worker did not crash",
      );
      // 502 until the replacement starts, then it waits for its module.
      let result = { status: 502, text: "" };
      for (let i = 0; i < 200 && result.status === 502; i++) {
        result = await get(pool, "/");
        if (result.status === 502) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      assert.deepEqual(result, { status: 200, text: "ok" });
    },
    { log: (line) => lines.push(line) },
  );
});

Deno.test("a crashed worker's replacement after a reload runs the reloaded module", async () => {
  const lines: string[] = [];
  await withPool(CRASHES, async (pool, dir) => {
    await Deno.writeTextFile(
      `${dir}/v2.ts`,
      CRASHES.replace(`new Response("ok")`, `new Response("v2")`),
    );
    await pool.reload(1000, { module: `${dir}/v2.ts` });
    assert.equal((await get(pool, "/")).text, "v2");
    assert.equal((await get(pool, "/crash")).text, "crashing");
    assert.ok(
      await waitFor(
        () => lines.some((line) => line.includes(" replaced")),
        10_000,
      ),
      lines.join("\n"),
    );
    assert.equal((await get(pool, "/")).text, "v2");
  }, { log: (line) => lines.push(line) });
});

Deno.test("a reload whose new workers took longer to load than the ping limit keeps them", async () => {
  const lines: string[] = [];
  await withPool(CRASHES, async (pool, dir) => {
    await Deno.writeTextFile(
      `${dir}/slow.ts`,
      `await new Promise((resolve) => setTimeout(resolve, 2500));
${CRASHES.replace(`new Response("ok")`, `new Response("slow")`)}`,
    );
    await pool.reload(1000, { module: `${dir}/slow.ts` });
    // A few heartbeats (every 250 ms) after the reload.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.deepEqual(await get(pool, "/"), { status: 200, text: "slow" });
    assert.doesNotMatch(lines.join("\n"), /answered no ping/);
  }, { log: (line) => lines.push(line), unresponsiveTimeout: 1000 });
});

Deno.test("an old worker that hangs while it drains after a reload is caught by the ping limit, not left to the drain time", async () => {
  const lines: string[] = [];
  await withPool(
    `const nap = new Int32Array(new SharedArrayBuffer(4));
const exists = (name) => {
  try {
    Deno.statSync(new URL(name, import.meta.url));
    return true;
  } catch {
    return false;
  }
};
export default {
  fetch(request) {
    if (new URL(request.url).pathname !== "/hang") return new Response("ok");
    // Never answers; holds the thread from "hang-now" until "release".
    const timer = setInterval(() => {
      if (!exists("./hang-now")) return;
      clearInterval(timer);
      while (!exists("./release")) Atomics.wait(nap, 0, 0, 10);
    }, 20);
    return new Promise(() => {});
  },
};
`,
    async (pool, dir) => {
      try {
        const held = send(pool, "/hang");
        await pool.reload(30_000);
        await Deno.writeTextFile(`${dir}/hang-now`, "");
        const { response, completed } = await within(held, 10_000, null) ??
          assert.fail("the hung old worker's request was not answered");
        assert.equal(response.status, 502);
        await response.body?.cancel();
        completed.resolve();
        const log = lines.join("\n");
        assert.match(log, /answered no ping for 500 ms/);
        // Retired, it has no slot to be replaced in.
        assert.doesNotMatch(log, /replacing it/);
      } finally {
        // terminate() cannot end a thread that never yields (Deno 2.9):
        // the test lets it go, not to leave a thread behind.
        await Deno.writeTextFile(`${dir}/release`, "");
        assert.ok(
          await waitFor(() => workerThreads(Deno.pid) <= 1, 5000),
          "the hung worker's thread did not end",
        );
      }
    },
    { log: (line) => lines.push(line), unresponsiveTimeout: 500 },
  );
});

Deno.test("an old worker whose streamed responses ended or were cancelled stops as soon as a reload retires it", async () => {
  const lines: string[] = [];
  await withPool(
    `export default {
  fetch() {
    // Three chunks, each a turn apart: the body crosses as a stream.
    let sent = 0;
    return new Response(new ReadableStream({
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        if (sent++ === 3) controller.close();
        else controller.enqueue(new TextEncoder().encode("chunk\\n"));
      },
    }));
  },
};
`,
    async (pool) => {
      const whole = await send(pool, "/");
      assert.equal(await whole.response.text(), "chunk\n".repeat(3));
      whole.completed.resolve();
      const cut = await send(pool, "/");
      await cut.response.body!.cancel();
      cut.completed.reject(new Error("the client left"));
      await pool.reload(30_000);
      let stopped: RegExpExecArray | null = null;
      assert.ok(
        await waitFor(
          () =>
            (stopped = /old code stopped after (\d+) ms/.exec(
              lines.join("\n"),
            )) !== null,
          10_000,
        ),
        lines.join("\n"),
      );
      assert.ok(Number(stopped![1]) < 5000, stopped![0]);
    },
    { log: (line) => lines.push(line) },
  );
});

Deno.test("close() answers 502 for requests still held by current and retired workers, and leaves no timer", async () => {
  await withPool(
    `export default { fetch: () => new Promise(() => {}) };\n`,
    async (pool) => {
      const retired = send(pool, "/");
      await pool.reload(30_000);
      const current = send(pool, "/");
      // Both requests have reached their workers' pending lists.
      await new Promise((resolve) => setTimeout(resolve, 100));
      await pool.close();
      for (const held of [retired, current]) {
        const { response, completed } = await within(held, 5000, null) ??
          assert.fail("a request held at close() was not answered");
        assert.equal(response.status, 502);
        await response.body?.cancel();
        completed.resolve();
      }
    },
  );
});

// The op sanitizer (on for every test) fails this one if an old worker's
// drain still waits on a timer once close() has returned.
Deno.test("close() while an old worker drains after a reload leaves no timer behind", async () => {
  await withPool(
    `export default {
  fetch: (request) =>
    new URL(request.url).pathname === "/never"
      ? new Promise(() => {})
      : new Response("ok"),
};
`,
    async (pool) => {
      const held = send(pool, "/never");
      await pool.reload(30_000);
      assert.deepEqual(await get(pool, "/"), { status: 200, text: "ok" });
      await pool.close();
      assert.equal((await held).response.status, 502);
    },
  );
});

Deno.test("a pool closed while a reload's new workers load does not take them: the reload fails and stops them", async () => {
  await withPool(CRASHES, async (pool, dir) => {
    await Deno.writeTextFile(
      `${dir}/waits.ts`,
      `${EXISTS}
while (!(await exists("./go"))) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}
${CRASHES}`,
    );
    const reloading = pool.reload(1000, { module: `${dir}/waits.ts` });
    await pool.close();
    await Deno.writeTextFile(`${dir}/go`, "");
    await assert.rejects(reloading, /The pool was closed/);
  });
});

Deno.test("a response that comes after its request ended (a 504 went out) is cancelled, and the handler's stream with it", async () => {
  await withPool(
    `${EXISTS}
let cancelled = false;
export default {
  async fetch(request) {
    if (new URL(request.url).pathname === "/cancelled") {
      return new Response(String(cancelled));
    }
    while (!(await exists("./go"))) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return new Response(new ReadableStream({
      pull: () => new Promise(() => {}),
      cancel() {
        cancelled = true;
      },
    }));
  },
};
`,
    async (pool, dir) => {
      const late = start(pool, "/late");
      // The server answered for it meanwhile, as for --timeout.
      late.completed.resolve();
      await Deno.writeTextFile(`${dir}/go`, "");
      let cancelled = "false";
      assert.ok(
        await waitFor(
          async () =>
            (cancelled = (await get(pool, "/cancelled")).text) === "true",
          5000,
        ),
        `the late response's stream was never cancelled: ${cancelled}`,
      );
    },
  );
});

Deno.test("a request whose message cannot cross to its worker fails instead of waiting for good", async () => {
  const lines: string[] = [];
  await withPool(CRASHES, async (pool) => {
    const facts = factsHandlerOf(pool.fetch)!;
    // A stream locked on this thread cannot be transferred.
    const body = new ReadableStream<Uint8Array>();
    body.getReader();
    const completed = Promise.withResolvers<void>();
    const response = Promise.resolve(facts({
      connectionId: String(nextConnectionId()),
      sender: "pool-test",
      pattern: "/",
      path: "/",
      headers: {
        METHOD: "POST",
        URI: "/",
        VERSION: "HTTP/1.1",
        REMOTE_ADDR: "127.0.0.1",
        host: "localhost",
        "content-length": "100000",
      },
    }, {
      signal: new AbortController().signal,
      body,
      completed: completed.promise,
      acceptKey: undefined,
    }, undefined));
    const outcome = await within(
      response.then(() => "answered", (error) => String(error)),
      5000,
      "no answer",
    );
    assert.match(outcome, /DataCloneError|locked|transfer/i);
    completed.reject(new Error("not sent"));
    assert.match(
      lines.join("\n"),
      /Cannot pass a request message to a handler worker/,
    );
    assert.deepEqual(await get(pool, "/"), { status: 200, text: "ok" });
  }, { log: (line) => lines.push(line) });
});

Deno.test("a request's end reaches the worker on the next request of the pool, before its handler runs", async () => {
  await withPool(
    `let tracked = "none";
export default {
  async fetch(request, info) {
    if (new URL(request.url).pathname === "/track") {
      tracked = "pending";
      info.completed.then(() => tracked = "resolved");
      return new Response("tracking");
    }
    // A turn later, whatever came with this request has been settled.
    await new Promise((resolve) => setTimeout(resolve, 0));
    return new Response(tracked);
  },
};
`,
    async (pool) => {
      assert.deepEqual(await get(pool, "/track"), {
        status: 200,
        text: "tracking",
      });
      // Once the pool has the news, the next request carries it, before
      // the timer that carries it when no request comes (10 ms).
      await new Promise((resolve) => setTimeout(resolve, 0));
      assert.equal((await get(pool, "/tracked")).text, "resolved");
    },
  );
});
