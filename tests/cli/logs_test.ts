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
import { startM2fetch } from "../subprocess.ts";

const APP = `
export default {
  fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/boom") throw new Error("the handler broke");
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
  assert.match(
    m2fetch.output(),
    / error .*\n.*Error: the handler broke\n\s+at /,
  );
  // Lines logged during the shutdown are out before the exit.
  assert.match(m2fetch.output(), / info Shutting down: /);
});

Deno.test("JSON logs: one object per line, with the access fields", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, { "app.ts": APP });
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`, {
    args: ["--log-format", "json"],
  });
  // Many requests in a burst: each has its line, none torn or merged.
  const count = 200;
  const statuses = await Promise.all(
    Array.from({ length: count }, (_, i) => get(`${site.url}/r${i}`)),
  );
  assert.ok(statuses.every((status) => status === 200));
  const status = await m2fetch.stop("SIGTERM");
  assert.equal(status.code, 0, m2fetch.output());
  const entries = m2fetch.output().split("\n").filter((line) =>
    line.startsWith("{")
  ).map((line) => JSON.parse(line));
  const access = entries.filter((entry) => entry.level === "access");
  assert.equal(access.length, count);
  const paths = new Set(access.map((entry) => entry.path));
  assert.equal(paths.size, count);
  const first = access.find((entry) => entry.path === "/r7");
  assert.equal(first.method, "GET");
  assert.equal(first.status, 200);
  assert.equal(first.bytes, 3);
  assert.equal(typeof first.durationMs, "number");
  assert.match(first.connectionId, /^\d+$/);
  assert.match(first.time, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
});
