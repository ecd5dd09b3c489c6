/**
 * Request bodies that cross to a worker as streams: one the handler leaves
 * unread (an upload it refused) must not outlive its request, or its
 * channel and the chunk queued in it stay for good (a soak found 83 KB per
 * refused upload). Erroring the main thread's side does not free a
 * transferred stream in Deno; the worker cancels its side instead.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  factsHandlerOf,
  UnrepresentableRequestError,
} from "../../runtime/handler.ts";
import { createLogger } from "../../runtime/log.ts";
import { WorkerPool } from "../../runtime/workers/pool.ts";
import { waitFor } from "../subprocess.ts";
import { workerThreads } from "../lifecycle/helpers.ts";
import { nextConnectionId, send, withPool } from "./pool_helpers.ts";

Deno.test("a request body the worker's handler leaves unread is cancelled once the request ends", () =>
  withPool(
    `export default { fetch: () => new Response("no", { status: 403 }) };\n`,
    async (pool) => {
      let cancelled = false;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.enqueue(new Uint8Array(64 * 1024));
          return new Promise(() => {}); // more arrives later, or never
        },
        cancel() {
          cancelled = true;
        },
      });
      // Large, as an upload mongrel2 streams is.
      const { response, completed } = await send(pool, "/upload", {
        method: "POST",
        headers: { "content-length": "10000000" },
        body,
      });
      assert.equal(response.status, 403);
      await response.body?.cancel();
      assert.equal(cancelled, false, "cancelled before the request ended");
      completed.resolve(); // the response went out in full
      assert.ok(
        await waitFor(() => cancelled, 5000),
        "the unread body outlived its request",
      );
    },
  ));

Deno.test("a reload whose module hangs or loads in only some workers leaves the old code serving, and the next reload works", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2pr-" });
  const app = (body: string) =>
    `export default { fetch: () => new Response("${body}") };\n`;
  await Deno.writeTextFile(`${dir}/v1.ts`, app("v1"));
  await Deno.writeTextFile(
    `${dir}/hangs.ts`,
    `await new Promise(() => {});\n${app("hangs")}`,
  );
  // Loads once: the second worker to load it throws.
  await Deno.writeTextFile(
    `${dir}/once.ts`,
    `Deno.openSync("${dir}/lock", { createNew: true, write: true });\n${
      app("once")
    }`,
  );
  await Deno.writeTextFile(`${dir}/v2.ts`, app("v2"));
  const pool = await WorkerPool.start({
    module: `${dir}/v1.ts`,
    workers: 2,
    logger: createLogger({ quiet: true }),
  });
  // Workers a failed reload started are stopped: only the pool's own two
  // threads are left (a worker ends a little after it is terminated).
  const noneLeft = async () =>
    assert.ok(
      await waitFor(() => workerThreads(Deno.pid) <= 2, 5000),
      `${workerThreads(Deno.pid)} worker threads`,
    );
  const bodies = async () => {
    const seen = new Set<string>();
    for (let id = 1; id <= 6; id++) {
      const { response, completed } = await send(pool, `/${id}`);
      seen.add(await response.text());
      completed.resolve();
    }
    return [...seen];
  };
  try {
    await assert.rejects(
      pool.reload(1000, { module: `${dir}/hangs.ts`, loadTimeoutMs: 300 }),
      /did not finish loading within 0\.3 s/,
    );
    await noneLeft();
    assert.deepEqual(await bodies(), ["v1"]);
    await assert.rejects(
      pool.reload(1000, { module: `${dir}/once.ts` }),
      /AlreadyExists|exists/,
    );
    await noneLeft();
    assert.deepEqual(await bodies(), ["v1"]);
    // The first worker to load dies while the second still loads.
    await Deno.writeTextFile(
      `${dir}/dies.ts`,
      `try {
  Deno.openSync("${dir}/dies-lock", { createNew: true, write: true });
  setTimeout(() => { throw new Error("died after loading"); }, 100);
} catch {
  await new Promise((resolve) => setTimeout(resolve, 600));
}
${app("dies")}`,
    );
    await assert.rejects(
      pool.reload(1000, { module: `${dir}/dies.ts` }),
      /A new worker died right after loading the module/,
    );
    await noneLeft();
    assert.deepEqual(await bodies(), ["v1"]);
    await pool.reload(1000, { module: `${dir}/v2.ts` });
    assert.deepEqual(await bodies(), ["v2"]);
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a request body reaches the worker's handler as a byte stream, as under deno serve", () =>
  // examples/echo.ts counts an octet-stream body with a BYOB reader.
  withPool(
    `export { default } from "${
      new URL("../../examples/echo.ts", import.meta.url).href
    }";\n`,
    async (pool) => {
      // A small complete body crosses as bytes, a streamed one as a stream.
      const streamed = new Blob([new Uint8Array(300_000)]).stream()
        .pipeThrough(new TransformStream());
      for (
        const [body, bytes] of [
          [new TextEncoder().encode("hello"), 5],
          [streamed, 300_000],
        ] as const
      ) {
        const { response, completed } = await send(pool, "/up", {
          method: "POST",
          headers: {
            "content-type": "application/octet-stream",
            "content-length": String(bytes),
          },
          body,
        });
        assert.deepEqual(await response.json(), { bytes });
        completed.resolve();
      }
    },
  ));

Deno.test("a worker's response from fetch() goes out without the content-encoding fetch() decoded away", async () => {
  const gzipped = await new Response(
    new Blob(["plain text"]).stream().pipeThrough(
      new CompressionStream("gzip"),
    ),
  ).arrayBuffer();
  await using upstream = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () => new Response(gzipped, { headers: { "content-encoding": "gzip" } }),
  );
  await withPool(
    `export default { fetch: () => fetch("http://127.0.0.1:${upstream.addr.port}/") };\n`,
    async (pool) => {
      const { response, completed } = await send(pool, "/");
      assert.equal(response.headers.get("content-encoding"), null);
      assert.equal(response.headers.get("content-length"), null);
      assert.equal(await response.text(), "plain text");
      completed.resolve();
    },
  );
});

// With the op sanitizer on (Deno 2.9's default leaves timers out): the
// request's end, settled as the pool closes, must not start a timer to
// tell a worker that is gone.
Deno.test({
  name:
    "a worker's response body that has failed already reaches the main thread as a failing body",
  sanitizeOps: true,
}, () =>
  withPool(
    `export default {
  fetch: () =>
    new Response(new ReadableStream({ start(c) { c.error(new RangeError("boom")); } }), { status: 201 }),
};
`,
    async (pool) => {
      const { response, completed } = await send(pool, "/");
      // As on the main thread, the encoder then answers 500 in its place.
      assert.equal(response.status, 201);
      await assert.rejects(response.text(), /RangeError: boom/);
      completed.reject(new Error("not sent"));
    },
  ));

Deno.test("the pool refuses a request without mongrel2 facts, which its workers build requests from", () =>
  withPool(
    `export default { fetch: () => new Response("ok") };\n`,
    (pool) => {
      assert.throws(
        () =>
          pool.fetch(new Request("http://localhost/"), {
            remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 0 },
            completed: Promise.resolve(),
          }),
        /Cannot pass the request to a handler worker: it has no mongrel2 facts/,
      );
      return Promise.resolve();
    },
  ));

/**
 * Sends /slow, /quick and /slow in one turn (so they cross in one batch)
 * to a pool running `module`, whose /slow handler keeps the thread for
 * 300 ms, and checks that the quick response left before the second slow
 * handler's work: each request's work, and its response, come before the
 * next request is taken.
 */
function quickResponseNotHeldBehindSlow(module: string): Promise<void> {
  return withPool(module, async (pool) => {
    const arrivals: [string, number][] = [];
    const timed = async (path: string) => {
      const { response, completed } = await send(pool, path);
      arrivals.push([path, performance.now()]);
      await response.text();
      completed.resolve();
    };
    await Promise.all([timed("/slow"), timed("/quick"), timed("/slow")]);
    const [first, quick, second] = arrivals;
    assert.deepEqual(arrivals.map(([path]) => path), [
      "/slow",
      "/quick",
      "/slow",
    ]);
    assert.ok(
      second[1] - quick[1] >= 200,
      `the quick response came ${
        (second[1] - quick[1]).toFixed(0)
      } ms before the second slow one, ${
        (quick[1] - first[1]).toFixed(0)
      } ms after the first`,
    );
  });
}

Deno.test("requests that reach a worker together: a quick response does not wait for a slow handler's work after it", () =>
  quickResponseNotHeldBehindSlow(`export default {
  fetch(request) {
    if (new URL(request.url).pathname === "/slow") {
      const until = performance.now() + 300;
      while (performance.now() < until);
    }
    return new Response("done");
  },
};
`));

Deno.test("requests that reach a worker together: a quick response does not wait for the work a slow handler does after an await", () =>
  quickResponseNotHeldBehindSlow(`export default {
  async fetch(request) {
    await request.text();
    if (new URL(request.url).pathname === "/slow") {
      const until = performance.now() + 300;
      while (performance.now() < until);
    }
    return new Response("done");
  },
};
`));

Deno.test("the server's way into the pool: the worker builds the Request, refuses one it cannot build, and gets a POST's inline body", () =>
  withPool(
    `export default { fetch: async (r) => new Response(r.method + " " + await r.text()) };\n`,
    async (pool) => {
      const facts = factsHandlerOf(pool.fetch);
      assert.ok(facts, "the pool carries no facts handler for the server");
      const call = (method: string, body: Uint8Array) => {
        const completed = Promise.withResolvers<void>();
        const response = facts({
          connectionId: String(nextConnectionId()),
          sender: "pool-test",
          pattern: "/",
          path: "/",
          headers: {
            METHOD: method,
            URI: "/",
            VERSION: "HTTP/1.1",
            REMOTE_ADDR: "127.0.0.1",
            host: "localhost",
            "content-length": String(body.length),
          },
        }, {
          signal: new AbortController().signal,
          body,
          completed: completed.promise,
          acceptKey: undefined,
        }, undefined);
        return { response, completed };
      };
      // A view into a bigger message, as the server hands it over.
      const message = new TextEncoder().encode("headers...hello");
      const posted = call("POST", message.subarray(10));
      const response = await posted.response;
      assert.equal(await response.text(), "POST hello");
      posted.completed.resolve();
      const refused = call("TRACE", new Uint8Array());
      await assert.rejects(Promise.resolve(refused.response), (error) => {
        assert.ok(error instanceof UnrepresentableRequestError, String(error));
        assert.equal(error.message, "Method is forbidden");
        return true;
      });
      refused.completed.resolve();
    },
  ));

// The op sanitizer (on explicitly: Deno 2.9's default leaves timers out)
// fails this test if the replacement's timer outlives the pool, holding an
// embedder's process up to 10 s past close().
Deno.test({
  name:
    "a pool closed while a crashed worker's replacement waits out its backoff leaves no timer behind",
  sanitizeOps: true,
}, async () => {
  const lines: string[] = [];
  const pool = await WorkerPool.start({
    module: new URL("./crash_app.ts", import.meta.url).pathname,
    workers: 1,
    logger: createLogger({ write: (line) => lines.push(line) }),
  });
  try {
    const { response, completed } = await send(pool, "/crash");
    assert.equal(await response.text(), "crashing\n");
    completed.resolve();
    assert.ok(
      await waitFor(
        () => lines.some((line) => line.includes("replacing it in")),
        5000,
      ),
      "the worker did not crash",
    );
  } finally {
    await pool.close();
  }
});
