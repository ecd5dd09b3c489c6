/**
 * The logs of a real m2fetch process behind a real mongrel2: one access line
 * per request with method, path, status, body bytes, duration and
 * connection id, in text and in JSON; a handler's error with its stack; and
 * every line written by the time the process has exited.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startSite, writeFiles } from "../lifecycle/helpers.ts";
import { spawnM2fetch, startM2fetch } from "../subprocess.ts";
import { STILL_LOADING_WARNING_MS } from "../../cli/serve.ts";
import { statusOf } from "../reliability/site.ts";

const APP = `
export default {
  fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/boom") throw new Error("the handler broke");
    if (path === "/slow") {
      return new Promise((resolve) =>
        setTimeout(() => resolve(new Response("late")), 5000)
      );
    }
    return new Response("x".repeat(path.length));
  },
};
`;

async function get(url: string): Promise<number> {
  const response = await fetch(url);
  await response.body?.cancel();
  return response.status;
}

Deno.test("text logs: an access line per request and an error with its stack", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, { "app.ts": APP });
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`);
  const paths = ["/a", "/abc", "/boom"];
  for (const path of paths) await get(`${site.url}${path}`);
  const status = await m2fetch.stop("SIGTERM");
  assert.equal(status.code, 0, m2fetch.output());
  const access = m2fetch.output().split("\n").filter((line) =>
    / access /.test(line)
  );
  assert.equal(access.length, 3, m2fetch.output());
  assert.match(
    access[0],
    /^\d{4}-\d\d-\d\dT[\d:.]+Z access GET \/a 200 2 \d+\.\dms conn=\d+$/,
  );
  assert.match(access[1], / access GET \/abc 200 4 /);
  assert.match(access[2], / access GET \/boom 500 /);
  // The error names its request, as the warnings do: under load the
  // access line may be far from it.
  assert.match(
    m2fetch.output(),
    / error Handler failed; answering 500 \(GET \/boom\)\nError: the handler broke\n\s+at /,
  );
  // Lines logged during the shutdown are out before the exit, the last
  // one saying it is done.
  assert.match(m2fetch.output(), / info Shutting down: /);
  assert.match(m2fetch.output(), / info Stopped\n$/);
});

Deno.test("a shutdown that runs out of time says how many requests it cut off", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, { "app.ts": APP });
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`, {
    args: ["--shutdown-timeout", "300ms"],
  });
  const slow = fetch(`${site.url}/slow`).then(
    (response) => response.text(),
    (error) => error,
  );
  while ((await statusOf(m2fetch)).inFlight === 0) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const status = await m2fetch.stop("SIGTERM");
  assert.equal(status.code, 0, m2fetch.output());
  assert.match(
    m2fetch.output(),
    / warn Shutdown timeout of 300 ms reached: cutting off 1 request\(s\) still in flight\n/,
  );
  assert.ok((await slow) instanceof Error, "the slow request was answered");
});

Deno.test("a handler module that never finishes loading is reported, not a silent hang", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, {
    "app.ts": `await new Promise(() => {});
export default { fetch: () => new Response("never") };
`,
  });
  await using m2fetch = spawnM2fetch(site, `${site.dir}/app.ts`);
  await m2fetch.waitForOutput(
    new RegExp(
      ` warn The handler module ${site.dir}/app\\.ts has not finished loading after ${
        STILL_LOADING_WARNING_MS / 1000
      } s \\(a top-level await that never settles`,
    ),
    STILL_LOADING_WARNING_MS + 10_000,
  );
  assert.doesNotMatch(m2fetch.output(), / info m2fetch .* serving /);
});
