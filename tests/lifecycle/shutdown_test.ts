/**
 * Graceful shutdown under load (issue 5): m2fetch as a real subprocess
 * behind a real mongrel2, 16 client loops, SIGTERM or SIGINT mid-run.
 * m2fetch must exit 0 after finishing what it holds, and every request the
 * clients sent must either have been answered in full or still be waiting
 * in mongrel2 (whose PUSH socket holds requests while no handler is
 * connected); a fresh m2fetch on the same endpoints then answers those.
 * A request lost inside m2fetch would wait forever and fail the count.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  delay,
  Load,
  startM2fetch,
  startSite,
  waitFor,
  writeFiles,
} from "./helpers.ts";

/** 20–50 ms per request; the body names the request and is 2 KiB long. */
const SLOW_APP = `
export default {
  async fetch(request) {
    const n = new URL(request.url).searchParams.get("n");
    await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
    return new Response(\`ok \${n} \${"x".repeat(2048)}\`);
  },
};
`;

function expectedBody(n: number): string {
  return `ok ${n} ${"x".repeat(2048)}`;
}

async function shutdownUnderLoad(signal: "SIGTERM" | "SIGINT") {
  await using site = await startSite();
  await writeFiles(site.dir, { "app.ts": SLOW_APP });
  const app = `${site.dir}/app.ts`;
  const args = ["--workers", "1", "--shutdown-timeout", "10s"];
  const load = new Load(site.url, {
    clients: 16,
    check: (n, status, body) =>
      status !== 200
        ? `status ${status}`
        : body !== expectedBody(n)
        ? `wrong body (${body.length} bytes: ${body.slice(0, 30)}…)`
        : null,
  });
  try {
    {
      await using first = await startM2fetch(site, app, { args });
      load.start();
      assert.ok(
        await waitFor(() => load.completed >= 300, 20_000),
        `the load never got going: ${load.summary()}\n${first.output()}`,
      );
      const status = await first.stop(signal);
      assert.equal(
        status.code,
        0,
        `m2fetch exited with ${status.code} (signal ${status.signal}) after ${signal}\n${first.output()}`,
      );
      assert.match(first.output(), /Shutting down/);
    }
    // Nothing answers now: what is not answered waits in mongrel2.
    const atExit = { completed: load.completed, failed: load.failed };
    await delay(300);
    assert.equal(load.failed, 0, `requests failed: ${load.summary()}`);
    assert.equal(
      load.completed,
      atExit.completed,
      "a request completed with no m2fetch running",
    );
    // The clients kept sending while m2fetch finished its last responses,
    // so some requests are waiting in mongrel2 (at most one per client).
    const waiting = load.waiting;
    assert.ok(
      waiting > 0 && waiting <= 16,
      `expected 1-16 requests waiting in mongrel2: ${load.summary()}`,
    );
    await using second = await startM2fetch(site, app, { args });
    const answered = await waitFor(
      () => load.completed > atExit.completed,
      10_000,
    );
    assert.ok(
      answered,
      `the fresh m2fetch answered nothing: ${load.summary()}`,
    );
    const settled = await load.finish(10_000);
    assert.ok(
      settled,
      `requests were lost (sent but never answered after the restart): ${load.summary()}\n${second.output()}`,
    );
    assert.equal(load.failed, 0, load.summary());
    assert.equal(load.completed, load.sent, load.summary());
    const status = await second.stop("SIGTERM");
    assert.equal(status.code, 0, second.output());
  } finally {
    await load.finish(0);
  }
}

Deno.test("SIGTERM under load: exit 0, nothing lost, a fresh m2fetch answers what waited", async () => {
  await shutdownUnderLoad("SIGTERM");
});

Deno.test("SIGINT under load behaves the same", async () => {
  await shutdownUnderLoad("SIGINT");
});

Deno.test("one Ctrl-C delivered twice (the process group's and deno task's) still drains and exits 0", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, {
    "app.ts": `export default {
  async fetch() {
    console.log("handler started");
    await new Promise((resolve) => setTimeout(resolve, 300));
    return new Response("done");
  },
};
`,
  });
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`);
  const answer = fetch(site.url).then(
    (response) => response.text(),
    (error) => `no answer: ${error.message}`,
  );
  await m2fetch.waitForOutput("handler started");
  m2fetch.signal("SIGINT");
  // deno task's forward comes once the first has been taken, moments later.
  await m2fetch.waitForOutput("Shutting down");
  m2fetch.signal("SIGINT");
  const status = await m2fetch.status;
  assert.equal(status.code, 0, m2fetch.output());
  assert.doesNotMatch(m2fetch.output(), /again: exiting at once/);
  assert.equal(await answer, "done");
});

Deno.test("a second SIGTERM during the drain exits with 130 and says what it cut", async () => {
  await using site = await startSite();
  await writeFiles(site.dir, {
    "app.ts": `export default {
  fetch(request) {
    console.log("handler started");
    return new Promise(() => {}); // never answers
  },
};
`,
  });
  const client = new AbortController();
  await using m2fetch = await startM2fetch(site, `${site.dir}/app.ts`);
  const request = fetch(site.url, { signal: client.signal }).catch(() => null);
  try {
    await m2fetch.waitForOutput("handler started");
    m2fetch.signal("SIGTERM");
    await m2fetch.waitForOutput("Shutting down");
    // One within 250 ms would be the same signal delivered twice.
    await delay(400);
    m2fetch.signal("SIGTERM");
    const status = await m2fetch.status;
    assert.equal(status.code, 130, m2fetch.output());
    assert.match(
      m2fetch.output(),
      /SIGTERM again: exiting at once with 130, cutting the 1 response\(s\) still in flight/,
    );
  } finally {
    client.abort();
    await request;
  }
});
