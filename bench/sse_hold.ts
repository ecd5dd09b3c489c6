/**
 * Holds a server-sent-events stream through a real mongrel2 with its
 * default idle reaper (`limits.min_ping` 120 s, `tick_timer` 10 s,
 * `kill_limit` 2) for 5 minutes, with m2fetch (a CLI subprocess) at its
 * default `--keep-alive-interval` (30 s). A control stream behind a second
 * m2fetch that pings only every 10 minutes shows when the reaper kills a
 * stream nobody keeps alive. At the end the client leaves and the handler's
 * `request.signal` must abort. Not a test (it takes minutes); figures go in
 * docs/reliability.md.
 *
 * Run: `deno run -A bench/sse_hold.ts [--minutes 5] [--every 1000]`
 *
 * Exit code 1 when the kept stream was cut, events stopped, or the
 * disconnect was not noticed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { delay, RawClient } from "../tests/e2e/harness.ts";
import {
  rawRequest,
  type Site,
  spawnM2fetch,
  startSite,
  statusOf,
} from "../tests/reliability/site.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    minutes: { type: "string", default: "5" },
    every: { type: "string", default: "1000" },
  },
});
const HOLD_MS = Number(values.minutes) * 60_000;
const EVERY = Number(values.every);
const APP = "tests/reliability/stream_app.ts";

interface Stream {
  client: RawClient;
  events: number;
  lastEventAt: number;
  ended: Promise<number>;
}

async function openStream(site: Site): Promise<Stream> {
  const client = await RawClient.connect(site.port);
  await client.write(
    `GET /sse?every=${EVERY} HTTP/1.1\r\nHost: localhost\r\n\r\n`,
  );
  const head = await client.readHead();
  if (head.status !== 200) throw new Error(`status ${head.status}`);
  const started = performance.now();
  const stream: Stream = {
    client,
    events: 0,
    lastEventAt: started,
    ended: Promise.resolve(0),
  };
  stream.ended = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const piece of client.readBody(head)) {
        const n = decoder.decode(piece).split("data: ").length - 1;
        if (n > 0) {
          stream.events += n;
          stream.lastEventAt = performance.now();
        }
      }
    } catch {
      // Cut off.
    }
    return performance.now() - started;
  })();
  return stream;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

const site = await startSite();
const controlSite = await startSite();
const m2fetch = spawnM2fetch(site, APP, { keepOutput: false });
const control = spawnM2fetch(controlSite, APP, {
  args: ["--keep-alive-interval", "10m"],
  keepOutput: false,
});
let failed = false;
try {
  for (const process of [m2fetch, control]) {
    if (!await process.waitForOutput(/ serving /)) {
      throw new Error(`m2fetch did not start:\n${process.output()}`);
    }
  }
  console.log(
    `Holding an event stream (one event every ${EVERY} ms) for ${
      seconds(HOLD_MS)
    } at mongrel2's default reaper settings; control stream pings every 10 min`,
  );
  const started = performance.now();
  const kept = await openStream(site);
  const unpinged = await openStream(controlSite);
  let controlCut: number | null = null;
  let closingControl = false;
  unpinged.ended.then((ms) => {
    if (closingControl) return;
    controlCut = ms;
    console.log(
      `  control stream (no pings) cut by mongrel2 after ${seconds(ms)}`,
    );
  });
  let keptCut: number | null = null;
  kept.ended.then((ms) => keptCut = ms);
  while (performance.now() - started < HOLD_MS && keptCut === null) {
    await delay(Math.min(30_000, HOLD_MS));
    const { rss, connections } = await statusOf(m2fetch);
    console.log(
      `  ${
        seconds(performance.now() - started)
      }: kept stream open, ${kept.events} events, m2fetch ${connections} connection(s), RSS ${
        (rss / 2 ** 20).toFixed(1)
      } MiB`,
    );
  }
  const stale = performance.now() - kept.lastEventAt;
  if (keptCut !== null) {
    console.log(`FAIL: the kept stream was cut after ${seconds(keptCut)}`);
    failed = true;
  } else if (stale > 3 * EVERY + 1000) {
    console.log(`FAIL: no event for ${seconds(stale)}`);
    failed = true;
  } else {
    console.log(
      `kept stream open after ${
        seconds(performance.now() - started)
      } with ${kept.events} events; control ${
        controlCut === null
          ? "still open (reaper did not fire)"
          : `cut after ${seconds(controlCut)}`
      }`,
    );
  }

  // The client leaves: the handler must notice.
  const before = JSON.parse(
    new TextDecoder().decode((await rawRequest(site.port, "/state")).body),
  ).sseAborted;
  const left = performance.now();
  kept.client.close();
  let noticed = false;
  while (performance.now() - left < 10_000) {
    const state = JSON.parse(
      new TextDecoder().decode((await rawRequest(site.port, "/state")).body),
    );
    if (state.sseAborted > before) {
      noticed = true;
      break;
    }
    await delay(50);
  }
  console.log(
    noticed
      ? `client disconnect noticed (request.signal aborted) within ${
        seconds(performance.now() - left)
      }`
      : "FAIL: request.signal did not abort within 10 s of the client leaving",
  );
  failed ||= !noticed;
  closingControl = true;
  unpinged.client.close();
} finally {
  await Promise.all([m2fetch.stop(), control.stop()]);
  await Promise.all([site.close(), controlSite.close()]);
}
Deno.exit(failed ? 1 : 0);
