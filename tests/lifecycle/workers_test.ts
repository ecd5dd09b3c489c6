/**
 * Worker supervision (issue 5), through a real mongrel2: a worker that
 * crashes or hangs is replaced and only the requests it held fail; a module
 * that cannot load stops start-up with one line; --timeout answers 504 and
 * aborts `request.signal` with a `TimeoutError`.
 *
 * `info.completed` in a worker settles as on the main thread, even when
 * no later request carries the news.
 *
 * The crash and hang tests, start-up failure and --timeout run the real
 * CLI; the in-process --timeout test checks the connection table ends
 * empty. Requests go over raw connections because the pool picks a
 * worker by mongrel2 connection id (id % workers): each raw client is one
 * connection, and `/whoami` tells which worker holds it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { within } from "../subprocess.ts";
import { RawClient, startHarness } from "../e2e/harness.ts";
import { statusOf } from "../reliability/site.ts";
import {
  delay,
  spawnM2fetch,
  startM2fetch,
  startSite,
  waitFor,
  writeFiles,
} from "./helpers.ts";

const APP = `
// Workers started once "slow-start" exists (the tests' replacements) take
// three seconds to load, which holds their slot empty that long.
try {
  Deno.statSync(new URL("./slow-start", import.meta.url));
  await new Promise((resolve) => setTimeout(resolve, 3000));
} catch { /* a normal start */ }
const me = crypto.randomUUID();
let aborted = "none";
let tracked = "none";
function track(info) {
  tracked = "pending";
  info.completed.then(() => tracked = "resolved", () => tracked = "rejected");
}
export default {
  async fetch(request, info) {
    const path = new URL(request.url).pathname;
    if (path === "/whoami") return new Response(me);
    if (path === "/track") {
      track(info);
      return new Response("tracking");
    }
    if (path === "/track-forever") {
      track(info);
      return new Response(new ReadableStream({
        async pull(controller) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          controller.enqueue(new TextEncoder().encode("tick\\n"));
        },
      }));
    }
    if (path === "/tracked") return new Response(tracked);
    if (path === "/slow") {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return new Response("slow done");
    }
    if (path === "/crash") {
      setTimeout(() => { throw new Error("boom"); }, 50);
      return new Response("crashing");
    }
    if (path === "/exit") {
      setTimeout(() => Deno.exit(3), 50);
      return new Response("exiting");
    }
    if (path === "/hang") {
      setTimeout(() => { while (true) {} }, 50);
      return new Response("hanging");
    }
    if (path === "/never") {
      request.signal.addEventListener("abort", () => {
        const reason = request.signal.reason;
        aborted = reason?.name ?? String(reason);
      });
      return await new Promise(() => {});
    }
    if (path === "/aborted") return new Response(aborted);
    return new Response("ok");
  },
};
`;

const decoder = new TextDecoder();

async function get(
  client: RawClient,
  path: string,
): Promise<{ status: number; body: string } | { error: string }> {
  try {
    await client.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const response = await client.readResponse({ timeoutMs: 15_000 });
    return { status: response.status, body: decoder.decode(response.body) };
  } catch (error) {
    return { error: String(error) };
  }
}

async function text(client: RawClient, path: string): Promise<string> {
  const result = await get(client, path);
  assert.ok(
    "status" in result && result.status === 200,
    `${path}: ${JSON.stringify(result)}`,
  );
  return (result as { body: string }).body;
}

/**
 * A worker that crashes (`fault` "/crash"), exits ("/exit") or hangs ("/hang") while slow
 * requests are in flight on both workers. m2fetch runs as a real process:
 * its workers must not share the test runner's process, where a test
 * file's crashing worker thread can disturb the other test files.
 */
async function faultWithRequestsInFlight(
  fault: "/crash" | "/hang" | "/exit",
) {
  await using site = await startSite();
  await writeFiles(site.dir, { "app.ts": APP });
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`, {
    args: ["--workers", "2", "--worker-timeout", "500ms"],
  });
  const port = Number(new URL(site.url).port);
  const clients: RawClient[] = [];
  try {
    // Six connections: which worker holds each?
    const owners: string[] = [];
    for (let i = 0; i < 6; i++) {
      const client = await RawClient.connect(port);
      clients.push(client);
      owners.push(await text(client, "/whoami"));
    }
    const workers = [...new Set(owners)];
    assert.equal(workers.length, 2, `connections spread over ${owners}`);
    const [victim] = workers;
    const onVictim = clients.filter((_, i) => owners[i] === victim);
    const faulty = onVictim.pop()!;
    // Slow requests in flight on both workers, then the fault.
    const slow = clients.filter((client) => client !== faulty).map((
      client,
    ) => ({
      victim: onVictim.includes(client),
      result: get(client, "/slow"),
    }));
    // Replacements from now on take three seconds to load.
    await Deno.writeTextFile(`${site.dir}/slow-start`, "");
    // Every slow request has reached its worker before the fault.
    while ((await statusOf(m2fetch)).inFlight < slow.length) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(await text(faulty, fault), fault.slice(1) + "ing");
    for (const { victim: lost, result } of slow) {
      const outcome = await result;
      if (lost) {
        // Bad Gateway, or a connection cut.
        assert.ok(
          "error" in outcome || outcome.status === 502,
          `a request held by the failed worker: ${JSON.stringify(outcome)}`,
        );
      } else {
        assert.deepEqual(outcome, { status: 200, body: "slow done" });
      }
    }
    // Until the replacement has loaded, the other worker takes the failed
    // slot's new requests: none fails.
    for (let i = 0; i < 6; i++) {
      const client = await RawClient.connect(port);
      clients.push(client);
      assert.equal(await text(client, "/"), "ok");
    }
    assert.doesNotMatch(m2fetch.output(), /replaced/, "too late to tell");
    assert.ok(
      await waitFor(() => m2fetch.output().includes("replaced"), 10_000),
      m2fetch.output(),
    );
    assert.ok(
      m2fetch.output().includes(
        {
          "/crash": "uncaught",
          "/exit": "called Deno.exit(3)",
          "/hang": "answered no ping for 500 ms",
        }[fault],
      ),
      m2fetch.output(),
    );
    // Only a hung thread may outlive its replacement (Deno cannot stop it).
    assert.equal(
      m2fetch.output().includes(
        " warn A worker that answers no ping may still be running",
      ),
      fault === "/hang",
      m2fetch.output(),
    );
    // Later requests succeed on fresh connections to both slots, and the
    // replacement is a new worker.
    for (const client of clients) client.close();
    clients.length = 0;
    const later = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const client = await RawClient.connect(port);
      clients.push(client);
      later.add(await text(client, "/whoami"));
      assert.equal(await text(client, "/"), "ok");
    }
    assert.equal(later.size, 2);
    assert.ok(!later.has(victim), "the failed worker still answers");
  } finally {
    for (const client of clients) client.close();
  }
  const status = await m2fetch.stop("SIGTERM");
  assert.equal(status.code, 0, m2fetch.output());
}

Deno.test("a worker that crashes mid-run is replaced; only its requests fail", async () => {
  await faultWithRequestsInFlight("/crash");
});

Deno.test("a worker whose handler calls Deno.exit() is replaced at once; only its requests fail", async () => {
  await faultWithRequestsInFlight("/exit");
});

Deno.test("a worker that hangs is caught by --worker-timeout and replaced; only its requests fail", async () => {
  await faultWithRequestsInFlight("/hang");
});

for (const workers of [0, 2]) {
  Deno.test(`a module that fails to load stops start-up with one line and a non-zero code (--workers ${workers})`, async () => {
    await using site = await startSite();
    await writeFiles(site.dir, {
      "app.ts": `throw new Error("cannot start: no database");\n`,
    });
    const started = performance.now();
    await using m2fetch = spawnM2fetch(site, `${site.dir}/app.ts`, {
      args: ["--workers", String(workers)],
    });
    const status = await within(m2fetch.status, 20_000, null);
    assert.ok(status !== null, `still running:\n${m2fetch.output()}`);
    assert.notEqual(status.code, 0);
    const lines = m2fetch.output().trim().split("\n");
    const errors = lines.filter((line) => line.startsWith("m2fetch: "));
    assert.equal(errors.length, 1, m2fetch.output());
    assert.match(errors[0], /cannot start: no database/);
    assert.doesNotMatch(m2fetch.output(), /replac/i);
    assert.ok(performance.now() - started < 20_000);
  });
}

Deno.test("--timeout 500ms: 504 and request.signal aborted with TimeoutError (in-process)", async () => {
  let reason: unknown = null;
  const aborted = Promise.withResolvers<void>();
  await using h = await startHarness((request) => {
    request.signal.addEventListener("abort", () => {
      reason = request.signal.reason;
      aborted.resolve();
    });
    return new Promise<Response>(() => {});
  }, { serve: { handlerTimeout: 500 } });
  const started = performance.now();
  const response = await h.fetch("/");
  await response.body?.cancel();
  assert.equal(response.status, 504);
  const took = performance.now() - started;
  assert.ok(took >= 450 && took < 3000, `answered after ${took} ms`);
  await aborted.promise;
  assert.ok(reason instanceof DOMException);
  assert.equal((reason as DOMException).name, "TimeoutError");
});

Deno.test("--timeout 500ms through the CLI with --workers 1: 504, TimeoutError in the worker", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, { "app.ts": APP });
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`, {
    args: ["--workers", "1", "--timeout", "500ms"],
  });
  const client = Deno.createHttpClient({});
  try {
    const started = performance.now();
    const response = await fetch(`${site.url}/never`, { client });
    await response.body?.cancel();
    assert.equal(response.status, 504);
    assert.ok(performance.now() - started >= 450);
    // The worker records the abort reason; ask until it has.
    let seen = "none";
    for (let i = 0; i < 50 && seen === "none"; i++) {
      seen = await (await fetch(`${site.url}/aborted`, { client })).text();
      if (seen === "none") {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    assert.equal(seen, "TimeoutError");
  } finally {
    client.close();
  }
  const status = await m2fetch.stop("SIGTERM");
  assert.equal(status.code, 0, m2fetch.output());
});

Deno.test("info.completed in a worker resolves when the response is sent and rejects when the client leaves", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, { "app.ts": APP });
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`, {
    args: ["--workers", "1"],
  });
  const client = Deno.createHttpClient({});
  const tracked = async () =>
    await (await fetch(`${site.url}/tracked`, { client })).text();
  try {
    const response = await fetch(`${site.url}/track`, { client });
    assert.equal(await response.text(), "tracking");
    // No request follows for a while: the news must still reach the
    // worker, so the next request reads the settled state at once.
    await delay(300);
    assert.equal(await tracked(), "resolved");

    const raw = await RawClient.connect(Number(new URL(site.url).port));
    await raw.write("GET /track-forever HTTP/1.1\r\nHost: x\r\n\r\n");
    await raw.readHead();
    await raw.readSome();
    raw.close();
    let state = "";
    assert.ok(
      await waitFor(
        async () => (state = await tracked()) === "rejected",
        10_000,
      ),
      `info.completed of an abandoned stream: ${state}`,
    );
  } finally {
    client.close();
  }
  const status = await m2fetch.stop("SIGTERM");
  assert.equal(status.code, 0, m2fetch.output());
});
