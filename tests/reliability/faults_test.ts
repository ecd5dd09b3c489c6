/**
 * Faults around m2fetch (issue 7): mongrel2 restarting under a running
 * m2fetch, m2fetch restarting under a running mongrel2, a client that stops
 * reading a large stream, and replies right after start-up (the PUB slow
 * joiner). m2fetch runs as a CLI subprocess, as in production.
 *
 * @module
 */

import assert from "node:assert/strict";
import { delay, RawClient, waitFor } from "../e2e/harness.ts";
import {
  rawRequest,
  rssOf,
  spawnM2fetch,
  startSite,
  statusOf,
} from "./site.ts";

const APP = "tests/reliability/stream_app.ts";
const decoder = new TextDecoder();
const SERVING = / serving /;

async function assertOk(port: number, path: string, label = path) {
  const response = await rawRequest(port, path);
  assert.equal(response.status, 200, `${label}: ${response.statusLine}`);
  assert.equal(decoder.decode(response.body), `ok ${path.split("?")[0]}\n`);
}

for (const tcp of [false, true]) {
  Deno.test(
    `mongrel2 restarted under a running m2fetch (${
      tcp ? "tcp://" : "ipc://"
    } endpoints): m2fetch reconnects and serves again`,
    async () => {
      await using site = await startSite({ tcp });
      // The default --idle-timeout (60 s) outlasts the test.
      await using m2fetch = spawnM2fetch(site, APP);
      assert.ok(await m2fetch.waitForOutput(SERVING), m2fetch.output());
      // mongrel2 numbers connections from 1 again after a restart: these put
      // the held client's id above those of the requests made after restarts,
      // so none of them replaces its state.
      for (let i = 0; i < 15; i++) await assertOk(site.port, `/before-${i}`);
      // A keep-alive client the crash cuts: mongrel2 sends no disconnect
      // notice for it; m2fetch forgets it because its mongrel2 went away.
      await using held = await RawClient.connect(site.port);
      await held.write("GET /held HTTP/1.1\r\nHost: localhost\r\n\r\n");
      assert.equal((await held.readResponse()).status, 200);
      assert.equal((await statusOf(m2fetch)).connections, 1);

      for (const [downMs, crash] of [[0, true], [1500, false]] as const) {
        await site.restart({ downMs, crash });
        // No retry: the request waits in mongrel2 until m2fetch reconnects.
        for (let i = 0; i < 5; i++) {
          await assertOk(site.port, `/after-${downMs}-${i}`);
        }
      }
      assert.match(m2fetch.output(), /went away; holding new replies/);
      assert.match(
        m2fetch.output(),
        /warn mongrel2 went away: dropped 1 connection\(s\) of its clients/,
      );
      assert.match(m2fetch.output(), /subscribed again/);
      // A response of many replies, each within mongrel2's credit window.
      const big = await rawRequest(site.port, "/big?mib=4");
      assert.equal(big.status, 200);
      assert.equal(big.body.length, 4 * 1024 * 1024);
      let status = await statusOf(m2fetch);
      assert.ok(
        await waitFor(
          async () => (status = await statusOf(m2fetch)).connections === 0,
          5000,
        ),
        `${status.connections} connections held`,
      );
      assert.equal(status.inFlight, 0);
      const exit = await m2fetch.stop();
      assert.equal(exit.code, 0, m2fetch.output());
    },
  );
}

for (const flowControl of [1, 0]) {
  Deno.test(`mongrel2 crashed with requests in flight (download.flow_control=${flowControl}): clients of the new one on reused ids get their own answers`, async () => {
    await using site = await startSite({
      settings: { "download.flow_control": flowControl },
    });
    await using m2fetch = spawnM2fetch(site, APP);
    assert.ok(await m2fetch.waitForOutput(SERVING), m2fetch.output());
    // Requests in flight on the first connection ids mongrel2 gave out.
    const held: RawClient[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const client = await RawClient.connect(site.port);
        held.push(client);
        await client.write(
          "GET /late?ms=2500 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        );
      }
      assert.ok(
        await waitFor(
          async () => (await statusOf(m2fetch)).inFlight === 3,
          5000,
        ),
        m2fetch.output(),
      );
      await site.restart({ crash: true });
      // The new mongrel2 numbers its connections from 1 again.
      for (let i = 0; i < 5; i++) await assertOk(site.port, `/new-${i}`);
      assert.match(
        m2fetch.output(),
        /warn mongrel2 went away: dropped 3 connection\(s\) of its clients/,
      );
      // Past the moment the old answers were due: none went anywhere.
      await delay(3000);
      for (let i = 5; i < 8; i++) await assertOk(site.port, `/new-${i}`);
      assert.doesNotMatch(m2fetch.output(), /access GET \/late 200/);
    } finally {
      for (const client of held) client.close();
    }
    const status = await m2fetch.stop();
    assert.equal(status.code, 0, m2fetch.output());
  });
}

Deno.test("m2fetch restarted under a running mongrel2: requests sent while it was down are served when it is back", async () => {
  await using site = await startSite();
  const first = spawnM2fetch(site, APP);
  assert.ok(await first.waitForOutput(SERVING), first.output());
  await assertOk(site.port, "/first");
  assert.equal((await first.stop()).code, 0, first.output());

  const clients: RawClient[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      const client = await RawClient.connect(site.port);
      clients.push(client);
      await client.write(
        `GET /queued-${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`,
      );
    }
    await delay(500);
    await using second = spawnM2fetch(site, APP);
    const responses = await Promise.all(
      clients.map((client) => client.readResponse({ timeoutMs: 20_000 })),
    );
    responses.forEach((response, i) => {
      assert.equal(response.status, 200);
      assert.equal(decoder.decode(response.body), `ok /queued-${i}\n`);
    });
    await assertOk(site.port, "/second");
    assert.equal((await second.stop()).code, 0, second.output());
  } finally {
    for (const client of clients) client.close();
  }
});

Deno.test("a client that stops reading a 200 MiB stream: memory stays bounded, the connection is cut after --write-timeout, the table empties", async () => {
  await using site = await startSite();
  await using m2fetch = spawnM2fetch(site, APP, {
    args: ["--write-timeout", "2s", "--idle-timeout", "1s"],
  });
  assert.ok(await m2fetch.waitForOutput(SERVING), m2fetch.output());
  await assertOk(site.port, "/warm");
  const pid = m2fetch.process.pid;
  const baseline = rssOf(pid);

  await using client = await RawClient.connect(site.port);
  await client.write("GET /big?mib=200 HTTP/1.1\r\nHost: localhost\r\n\r\n");
  const head = await client.readHead();
  assert.equal(head.status, 200);
  let read = 0;
  while (read < 1024 * 1024) {
    const piece = await client.readSome(65536);
    assert.notEqual(piece, null);
    read += piece!.length;
  }
  // Stop reading; watch m2fetch's memory until it gives up on the client.
  let peak = baseline;
  const deadline = performance.now() + 15_000;
  let gaveUp = false;
  while (performance.now() < deadline) {
    peak = Math.max(peak, rssOf(pid));
    if (/took no response bytes for 2000 ms/.test(m2fetch.output())) {
      gaveUp = true;
      break;
    }
    await delay(100);
  }
  assert.ok(gaveUp, m2fetch.output().slice(-2000));
  // The rest of what was buffered, then a clean end of stream.
  const rest = await client.waitForClose(10_000);
  assert.notEqual(rest, null, "the connection stayed open");
  const total = read + rest!.length;
  assert.ok(total < 200 * 1024 * 1024, `${total} bytes: the stream ended`);
  const grew = peak - baseline;
  console.log(
    `slow reader: client got ${
      (total / 2 ** 20).toFixed(1)
    } MiB of 200; m2fetch RSS ${
      (baseline / 2 ** 20).toFixed(0)
    } MiB at rest, peak +${(grew / 2 ** 20).toFixed(1)} MiB`,
  );
  assert.ok(grew < 48 * 2 ** 20, `m2fetch grew by ${grew} bytes`);

  // The connection table empties, and the next request is served.
  let status = await statusOf(m2fetch);
  const until = performance.now() + 10_000;
  while (status.connections > 0 && performance.now() < until) {
    await delay(250);
    status = await statusOf(m2fetch);
  }
  assert.deepEqual([status.connections, status.inFlight], [0, 0]);
  await assertOk(site.port, "/after");
  assert.equal((await m2fetch.stop()).code, 0, m2fetch.output());
});

Deno.test("the PUB slow joiner loses nothing: requests queued before start-up and fired right after it are all answered", async () => {
  await using site = await startSite();
  const clients: RawClient[] = [];
  try {
    const send = async (path: string) => {
      const client = await RawClient.connect(site.port);
      clients.push(client);
      await client.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    };
    for (let i = 0; i < 20; i++) await send(`/early-${i}`);
    await using m2fetch = spawnM2fetch(site, APP);
    assert.ok(await m2fetch.waitForOutput(SERVING), m2fetch.output());
    for (let i = 0; i < 20; i++) await send(`/prompt-${i}`);
    const responses = await Promise.all(
      clients.map((client) => client.readResponse({ timeoutMs: 20_000 })),
    );
    const paths = responses.map((r) => decoder.decode(r.body));
    assert.deepEqual(
      paths,
      [
        ...Array.from({ length: 20 }, (_, i) => `ok /early-${i}\n`),
        ...Array.from({ length: 20 }, (_, i) => `ok /prompt-${i}\n`),
      ],
    );
    assert.equal((await m2fetch.stop()).code, 0, m2fetch.output());
  } finally {
    for (const client of clients) client.close();
  }
});

Deno.test("a mongrel2 that stops taking replies is dropped after --mongrel2-stall-timeout, and served again once it resumes", async () => {
  // Without flow control nothing holds a body back but the transport.
  await using site = await startSite({
    settings: { "download.flow_control": 0 },
  });
  await using m2fetch = spawnM2fetch(site, APP, {
    args: ["--mongrel2-stall-timeout", "1s", "--flow-control", "off"],
  });
  assert.ok(await m2fetch.waitForOutput(SERVING), m2fetch.output());
  await assertOk(site.port, "/warm");
  const pid = m2fetch.process.pid;
  const baseline = rssOf(pid);
  await using client = await RawClient.connect(site.port);
  await client.write(
    "GET /big?mib=64&after=500 HTTP/1.1\r\nHost: localhost\r\n\r\n",
  );
  assert.ok(
    await waitFor(async () => (await statusOf(m2fetch)).inFlight === 1, 5000),
  );
  // Hung, as far as m2fetch can tell: the response goes nowhere.
  Deno.kill(site.mongrel2.pid, "SIGSTOP");
  let peak = baseline;
  try {
    const deadline = performance.now() + 15_000;
    while (
      !/took none of the replies for 1 s/.test(m2fetch.output()) &&
      performance.now() < deadline
    ) {
      peak = Math.max(peak, rssOf(pid));
      await delay(50);
    }
  } finally {
    Deno.kill(site.mongrel2.pid, "SIGCONT");
  }
  assert.match(
    m2fetch.output(),
    / warn mongrel2 at \S+ took none of the replies for 1 s \(\d+\.\d MiB wait\): taking it for hung and dropping the connection and its clients' requests/,
  );
  console.log(
    `stalled mongrel2: m2fetch RSS peak +${
      ((peak - baseline) / 2 ** 20).toFixed(1)
    } MiB before it dropped the connection`,
  );
  // Back on its feet, mongrel2 subscribes again and is served.
  assert.ok(
    await waitFor(() => /subscribed again/.test(m2fetch.output()), 15_000),
    m2fetch.output(),
  );
  await assertOk(site.port, "/after");
  assert.equal((await m2fetch.stop()).code, 0, m2fetch.output());
});
