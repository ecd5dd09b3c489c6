/**
 * SIGHUP reload under load (issue 5): m2fetch as a real subprocess behind a
 * real mongrel2, 16 client loops, the handler module (and a module it
 * imports) edited on disk, then SIGHUP. No request may fail; responses
 * switch from the old code to the new one. A module broken before SIGHUP
 * leaves the old code serving, with a log line.
 *
 * With --workers N the new code loads in fresh workers, so edited imports
 * reload too. With --workers 0 the main thread re-imports the module under
 * a new URL: Deno caches every other module by URL for the life of the
 * process, so an edited import is NOT reloaded (asserted below).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  delay,
  Load,
  type Site,
  startM2fetch,
  startSite,
  type Subprocess,
  waitFor,
  workerThreads,
  writeFiles,
} from "./helpers.ts";

function appSource(version: string): string {
  return `
import { tag } from "./helper.ts";
export default {
  async fetch() {
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
    return new Response("${version} " + tag);
  },
};
`;
}

function helperSource(tag: string): string {
  return `export const tag = "${tag}";\n`;
}

const BODY = /^v[12] h[12]$/;

/** Counts the bodies seen from now on. */
function since(load: Load): () => Map<string, number> {
  const before = new Map(load.bodies);
  return () =>
    new Map(
      [...load.bodies].map(([body, count]) => [
        body,
        count - (before.get(body) ?? 0),
      ]).filter(([, count]) => (count as number) > 0) as [string, number][],
    );
}

/**
 * Runs `body` against m2fetch serving v1 of the app (and h1 of its import)
 * behind a fresh mongrel2, then asserts that m2fetch exits cleanly.
 */
async function serveV1(
  workers: number,
  body: (site: Site, m2fetch: Subprocess) => Promise<void>,
): Promise<void> {
  await using site = await startSite();
  await writeFiles(site.dir, {
    "app.ts": appSource("v1"),
    "helper.ts": helperSource("h1"),
  });
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`, {
    args: ["--workers", String(workers)],
  });
  await body(site, m2fetch);
  const status = await m2fetch.stop("SIGTERM");
  assert.equal(status.code, 0, m2fetch.output());
}

/** Stops the load and asserts that every request it sent succeeded. */
async function assertEveryRequestAnswered(load: Load): Promise<void> {
  assert.ok(await load.finish(10_000), load.summary());
  assert.equal(load.failed, 0, load.summary());
  assert.equal(load.completed, load.sent, load.summary());
}

async function reloadUnderLoad(
  workers: number,
  expectedAfter: string,
): Promise<void> {
  await serveV1(workers, async (site, m2fetch) => {
    const load = new Load(site.url, {
      check: (_n, status, body) =>
        status !== 200
          ? `status ${status}`
          : BODY.test(body)
          ? null
          : `unexpected body ${body}`,
    });
    load.start();
    try {
      assert.ok(
        await waitFor(() => load.completed >= 200, 20_000),
        load.summary(),
      );
      assert.deepEqual([...load.bodies.keys()], ["v1 h1"]);
      await writeFiles(site.dir, {
        "app.ts": appSource("v2"),
        "helper.ts": helperSource("h2"),
      });
      m2fetch.signal("SIGHUP");
      await m2fetch.waitForOutput(/Reloaded .*app\.ts/, 20_000);
      // Requests already running on the old code finish on it.
      await delay(200);
      const after = since(load);
      assert.ok(
        await waitFor(() => load.completed >= 200 + 400, 20_000),
        load.summary(),
      );
      await delay(300);
      const seen = after();
      assert.deepEqual(
        [...seen.keys()],
        [expectedAfter],
        `after the reload every response should be "${expectedAfter}": ${
          JSON.stringify(Object.fromEntries(seen))
        }`,
      );
      await assertEveryRequestAnswered(load);
    } finally {
      await load.finish(0);
    }
  });
}

Deno.test("SIGHUP with --workers 2 under load: no failures, new code and its edited import serve", async () => {
  await reloadUnderLoad(2, "v2 h2");
});

Deno.test("SIGHUP with --workers 0 under load: no failures, the module reloads but an edited import does not", async () => {
  // The main thread re-imports app.ts?m2fetch-reload=1; ./helper.ts keeps
  // its cached URL, so the old tag stays.
  await reloadUnderLoad(0, "v2 h1");
});

async function brokenReload(workers: number): Promise<void> {
  await serveV1(workers, async (site, m2fetch) => {
    const load = new Load(site.url, {
      check: (_n, status, body) =>
        status === 200 && body === "v1 h1"
          ? null
          : `status ${status}, body ${body}`,
    });
    load.start();
    try {
      assert.ok(
        await waitFor(() => load.completed >= 100, 20_000),
        load.summary(),
      );
      await writeFiles(site.dir, {
        "app.ts": "export default { fetch( {\n",
      });
      m2fetch.signal("SIGHUP");
      await m2fetch.waitForOutput(/Reload of .*app\.ts failed/, 20_000);
      assert.match(m2fetch.output(), /the old code and options keep serving/);
      const count = load.completed;
      assert.ok(
        await waitFor(() => load.completed >= count + 200, 20_000),
        load.summary(),
      );
      await assertEveryRequestAnswered(load);
    } finally {
      await load.finish(0);
    }
  });
}

Deno.test("SIGHUP with a syntax error (--workers 2): logged, the old code keeps serving, nothing fails", async () => {
  await brokenReload(2);
});

Deno.test("SIGHUP with a syntax error (--workers 0): logged, the old code keeps serving, nothing fails", async () => {
  await brokenReload(0);
});

Deno.test("SIGHUP while a crashed worker waits for its replacement: no worker left behind", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, {
    "app.ts": `export default {
  fetch(request) {
    if (new URL(request.url).pathname === "/crash") {
      setTimeout(() => { throw new Error("boom"); }, 10);
    }
    return new Response("ok");
  },
};
`,
  });
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`, {
    args: ["--workers", "2"],
  });
  const pid = m2fetch.process.pid;
  assert.equal(workerThreads(pid), 2);
  // Each crash doubles the wait before the next replacement (100, 200,
  // 400 ms): the fourth waits 800 ms, longer than a reload takes.
  for (let crash = 1; crash <= 4; crash++) {
    await (await fetch(`${site.url}/crash`)).text();
    await m2fetch.waitForOutput(
      new RegExp(`(replacing it in \\d+ ms[^]*){${crash}}`),
      10_000,
    );
    if (crash < 4) {
      await m2fetch.waitForOutput(
        new RegExp(`(Handler worker \\d replaced[^]*){${crash}}`),
        10_000,
      );
    }
  }
  m2fetch.signal("SIGHUP");
  await m2fetch.waitForOutput(/Reloaded /, 10_000);
  // Past the replacement's delay and start: still two workers.
  await delay(2000);
  assert.equal(workerThreads(pid), 2, m2fetch.output());
  assert.equal(await (await fetch(`${site.url}/`)).text(), "ok");
});
