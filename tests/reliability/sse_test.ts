/**
 * Long-lived responses (issue 7): a server-sent-events stream outlives
 * mongrel2's idle reaper thanks to m2fetch's `ctl keep-alive` pings, and a
 * client that leaves is noticed (`request.signal` aborts). The reaper is
 * made strict (`limits.min_ping` 3 s, checked every second, `kill_limit`
 * 0 so that any one check kills); a
 * control m2fetch that pings too rarely shows the reaper really kills.
 * bench/sse_hold.ts holds a stream for 5 minutes at mongrel2's defaults.
 *
 * @module
 */

import assert from "node:assert/strict";
import { within } from "../subprocess.ts";
import { delay, RawClient } from "../e2e/harness.ts";
import {
  rawRequest,
  type Site,
  spawnM2fetch,
  startSite,
  statusOf,
  type Subprocess,
} from "./site.ts";

const APP = "tests/reliability/stream_app.ts";
const REAPER = {
  "limits.min_ping": 3,
  "limits.tick_timer": 1,
  "limits.kill_limit": 0,
  // Only the ping check may kill: an event stream's client sends nothing
  // and its handler writes a few bytes a second.
  "limits.min_read_rate": 0,
  "limits.min_write_rate": 0,
};
const HOLD_MS = 12_000;

interface Stream {
  client: RawClient;
  events: number;
  ended: Promise<number>;
}

/** Opens /sse and counts `data:` events until the connection ends. */
async function openStream(site: Site): Promise<Stream> {
  const client = await RawClient.connect(site.port);
  await client.write("GET /sse?every=500 HTTP/1.1\r\nHost: localhost\r\n\r\n");
  const head = await client.readHead();
  assert.equal(head.status, 200);
  assert.match(head.head, /content-type: text\/event-stream/i);
  const stream: Stream = { client, events: 0, ended: Promise.resolve(0) };
  const started = performance.now();
  stream.ended = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const piece of client.readBody(head)) {
        stream.events += decoder.decode(piece).split("data: ").length - 1;
      }
    } catch {
      // Cut off: the reaper or the client closed it.
    }
    return performance.now() - started;
  })();
  return stream;
}

async function sseState(site: Site) {
  const response = await rawRequest(site.port, "/state");
  return JSON.parse(new TextDecoder().decode(response.body)) as {
    sseOpen: number;
    sseAborted: number;
  };
}

async function start(keepAlive: string): Promise<[Site, Subprocess]> {
  const site = await startSite({ settings: REAPER });
  const m2fetch = spawnM2fetch(site, APP, {
    args: ["--keep-alive-interval", keepAlive, "--idle-timeout", "1s"],
  });
  assert.ok(await m2fetch.waitForOutput(/ serving /), m2fetch.output());
  return [site, m2fetch];
}

Deno.test("an event stream outlives a 3 s min_ping through keep-alive pings; a client that leaves aborts request.signal", async () => {
  const [site, m2fetch] = await start("1s");
  const [controlSite, control] = await start("60s");
  await using _ = {
    async [Symbol.asyncDispose]() {
      await Promise.all([m2fetch.stop(), control.stop()]);
      await Promise.all([site.close(), controlSite.close()]);
    },
  };
  const kept = await openStream(site);
  const unpinged = await openStream(controlSite);

  // Without pings, the reaper cuts the stream within a few seconds.
  const cutAfter = await within(unpinged.ended, HOLD_MS, undefined);
  assert.ok(
    typeof cutAfter === "number" && cutAfter < 8000,
    "the control stream was not reaped: the reaper settings had no effect",
  );
  // With pings every second it is still open, well past min_ping.
  await delay(Math.max(0, HOLD_MS - cutAfter));
  const endedEarly = await within(kept.ended, 0, undefined);
  assert.equal(endedEarly, undefined, "the pinged stream was cut");
  const before = kept.events;
  await delay(1500);
  assert.ok(kept.events > before, "events stopped flowing");
  assert.ok(kept.events >= HOLD_MS / 500 - 4, `${kept.events} events`);
  console.log(
    `sse: unpinged stream reaped after ${
      (cutAfter / 1000).toFixed(1)
    } s; pinged stream open after ${
      ((HOLD_MS + 1500) / 1000).toFixed(1)
    } s with ${kept.events} events (min_ping 3 s)`,
  );

  // The client leaves: mongrel2's disconnect aborts the handler's signal.
  const { sseAborted } = await sseState(site);
  kept.client.close();
  await kept.ended;
  const deadline = performance.now() + 5000;
  let state = await sseState(site);
  while (state.sseAborted === sseAborted && performance.now() < deadline) {
    await delay(100);
    state = await sseState(site);
  }
  assert.equal(
    state.sseAborted,
    sseAborted + 1,
    "request.signal never aborted",
  );
  assert.equal(state.sseOpen, 0);
  // m2fetch forgets the connection.
  let status = await statusOf(m2fetch);
  const until = performance.now() + 5000;
  while (status.connections > 0 && performance.now() < until) {
    await delay(200);
    status = await statusOf(m2fetch);
  }
  assert.deepEqual([status.connections, status.inFlight], [0, 0]);
  unpinged.client.close();
});
