/**
 * SIGHUP re-reads the configuration as well as the handler module (issue
 * 5): m2fetch as a real subprocess behind a real mongrel2, its options in
 * the app directory's m2fetch.json. The options a reload can apply take
 * effect for new requests; the others keep their values with a warning; a
 * file that no longer parses leaves everything as it was. Signals that
 * arrive while the handler module is still loading neither kill m2fetch
 * nor get lost.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CLI, spawnCli, spawnDeno } from "../subprocess.ts";
import { startSite, waitFor, workerThreads, writeFiles } from "./helpers.ts";

function appSource(version: string): string {
  return `export default {
  async fetch(request) {
    if (new URL(request.url).pathname === "/slow") {
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
    await request.arrayBuffer();
    return new Response("${version}");
  },
};
`;
}

async function status(url: string, init?: RequestInit): Promise<string> {
  const response = await fetch(url, init);
  return `${response.status} ${await response.text()}`;
}

Deno.test("SIGHUP re-reads m2fetch.json: new module, workers, timeout, body limit and quiet apply; restart-only options wait", async () => {
  await using site = await startSite();
  const config = (options: Record<string, unknown>) =>
    JSON.stringify({
      "send-spec": site.sendSpec,
      "recv-spec": site.recvSpec,
      ...options,
    });
  await writeFiles(site.dir, {
    "v1.ts": appSource("v1"),
    "v2.ts": appSource("v2"),
    "m2fetch.json": config({ app: "v1.ts", workers: 1 }),
  });
  await using m2fetch = await spawnCli(["--app-path", site.dir]);
  const pid = m2fetch.process.pid;
  const upload = { method: "POST", body: "x".repeat(100) };
  assert.equal(await status(`${site.url}/slow`), "200 v1");
  assert.equal(await status(`${site.url}/`, upload), "200 v1");
  assert.equal(workerThreads(pid), 1);

  await writeFiles(site.dir, {
    "m2fetch.json": config({
      app: "v2.ts",
      workers: 2,
      timeout: "150ms",
      "max-body-size": "10",
      quiet: true,
      "worker-timeout": "20s",
    }),
  });
  m2fetch.signal("SIGHUP");
  await m2fetch.waitForOutput(/Reloaded .*v2\.ts: new requests use/);
  assert.match(
    m2fetch.output(),
    /warn Reload kept --worker-timeout as before: a new value takes effect when m2fetch restarts/,
  );
  const accessLines = () => m2fetch.output().match(/ access /g)?.length;
  const accessBefore = accessLines();
  assert.equal(await status(`${site.url}/`), "200 v2");
  assert.equal(await status(`${site.url}/slow`), "504 Gateway Timeout");
  assert.equal((await status(`${site.url}/`, upload)).slice(0, 3), "413");
  assert.ok(
    await waitFor(() => workerThreads(pid) === 2, 10_000),
    `expected 2 workers, found ${workerThreads(pid)}`,
  );
  // --quiet: no access lines, yet the status asked for still comes.
  m2fetch.signal("SIGUSR2");
  await m2fetch.waitForOutput(/status: \d+ connection/);
  assert.equal(accessLines(), accessBefore);

  // A file that no longer parses changes nothing.
  await writeFiles(site.dir, { "m2fetch.json": "{ broken" });
  m2fetch.signal("SIGHUP");
  await m2fetch.waitForOutput(
    /Reload of .*v2\.ts failed; the old code and options keep serving: .*m2fetch\.json/,
  );
  assert.equal(await status(`${site.url}/slow`), "504 Gateway Timeout");
  assert.equal(await status(`${site.url}/`), "200 v2");
  assert.equal((await m2fetch.stop("SIGTERM")).code, 0, m2fetch.output());
});

Deno.test("SIGHUP and SIGUSR2 while the handler module loads: m2fetch lives, and the reload runs once serving", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, {
    "app.ts": `await new Promise((resolve) => setTimeout(resolve, 1500));
export default { fetch: () => new Response("ok") };
`,
    "m2fetch.json": JSON.stringify({
      app: "app.ts",
      "send-spec": site.sendSpec,
      "recv-spec": site.recvSpec,
    }),
  });
  await using m2fetch = spawnDeno(["-A", CLI, "--app-path", site.dir]);
  // Logged once m2fetch listens for its signals, before the module loads.
  await m2fetch.waitForOutput("Read options from");
  m2fetch.signal("SIGUSR2");
  await m2fetch.waitForOutput("status: starting");
  m2fetch.signal("SIGHUP");
  await m2fetch.waitForOutput(" serving ");
  await m2fetch.waitForOutput(
    /Reloaded .*app\.ts \(SIGHUP during start-up\): new requests use/,
  );
  assert.equal(await status(`${site.url}/`), "200 ok");
  assert.equal(m2fetch.exited(), false);
  assert.equal((await m2fetch.stop("SIGTERM")).code, 0, m2fetch.output());
});
