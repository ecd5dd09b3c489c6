/**
 * Soak run: many requests through a real mongrel2 into m2fetch (a CLI
 * subprocess, so its memory is its own), at 256 connections, with a mix
 * of GET, POST echo, 64 KiB streamed responses, thrown handler errors
 * (500) and 404s. wrk drives the load with a Lua script that checks every
 * response body against the one its kind must have.
 *
 * Prints the failed requests (socket errors plus responses that are none
 * of the expected ones: must be 0), m2fetch's RSS after the first 100,000
 * requests and after the run, its peak over each half of the run after
 * those 100,000 (the second within 10 % of the first), and
 * m2fetch's connection table at the end (read from its SIGUSR2 status
 * line; must empty once wrk's connections are gone). Exit code 1 when any
 * of the three fails.
 *
 * Run: `deno run -A bench/soak.ts [--requests 1000000] [--connections 256]`
 *
 * @module
 */

import { parseArgs } from "node:util";
import { delay } from "../tests/e2e/harness.ts";
import {
  rawRequest,
  rssOf,
  spawnM2fetch,
  startSite,
  statusOf,
} from "../tests/reliability/site.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    requests: { type: "string", default: "1000000" },
    connections: { type: "string", default: "256" },
    threads: { type: "string", default: "2" },
    warmup: { type: "string", default: "100000" },
  },
});
const TOTAL = Number(values.requests);
const CONNECTIONS = Number(values.connections);
const THREADS = Number(values.threads);
const WARMUP = Math.min(Number(values.warmup), TOTAL);
const APP = "tests/reliability/stream_app.ts";
const MiB = 2 ** 20;

/**
 * The wrk script: each thread sends the mix in turn and stops once it has
 * seen its share of responses; `done` prints the tallies of all threads.
 */
const SCRIPT = `
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local sent, seen, limit, marker, finished = 0, 0, 0, "", false
ok, echo, big, errors, missing, bad, sample = 0, 0, 0, 0, 0, 0, ""
local ECHO = string.rep("m2fetch soak ", 79) .. "!"
local reqs = {}
-- 60 % GET, 20 % POST, 10 % streamed 64 KiB, 5 % thrown error, 5 % 404.
local mix = {1,1,1,1,1,1,1,1,1,1,1,1,2,2,2,2,3,3,4,5}
function init(args)
  limit = tonumber(args[1])
  marker = args[2]
  reqs[1] = wrk.format("GET", "/ok")
  reqs[2] = wrk.format("POST", "/echo", {["Content-Type"] = "text/plain"}, ECHO)
  reqs[3] = wrk.format("GET", "/big?mib=0.0625")
  reqs[4] = wrk.format("GET", "/error")
  reqs[5] = wrk.format("GET", "/missing")
end
function request()
  sent = sent + 1
  return reqs[mix[(sent % 20) + 1]]
end
function response(status, headers, body)
  seen = seen + 1
  if status == 200 and body == "ok /ok\\n" then ok = ok + 1
  elseif status == 200 and body == ECHO then echo = echo + 1
  elseif status == 200 and #body == 65536 and string.sub(body, 1, 4) == "xxxx" then big = big + 1
  elseif status == 500 and body == "Internal Server Error" then errors = errors + 1
  elseif status == 404 and body == "not found\\n" then missing = missing + 1
  else
    bad = bad + 1
    if sample == "" then sample = status .. " " .. string.sub(body, 1, 60) end
  end
  if seen >= limit and not finished then
    -- wrk's main thread sleeps for -d whatever its threads do: leave a
    -- mark, and the soak interrupts wrk once every thread has left one.
    finished = true
    io.open(marker .. "/done-" .. id, "w"):close()
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  local t = {ok = 0, echo = 0, big = 0, errors = 0, missing = 0, bad = 0}
  local samples = ""
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
    local s = thread:get("sample")
    if s ~= "" then samples = s end
  end
  local e = summary.errors
  io.write(string.format(
    "SOAK ok=%d echo=%d big=%d errors=%d missing=%d bad=%d connect=%d read=%d write=%d timeout=%d requests=%d duration_us=%d p50_us=%d p99_us=%d sample=%q\\n",
    t.ok, t.echo, t.big, t.errors, t.missing, t.bad, e.connect, e.read, e.write,
    e.timeout, summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), samples))
end
`;

interface Phase {
  ok: number;
  echo: number;
  big: number;
  errors: number;
  missing: number;
  bad: number;
  connect: number;
  read: number;
  write: number;
  timeout: number;
  requests: number;
  duration_us: number;
  p50_us: number;
  p99_us: number;
  sample: string;
}

async function runWrk(url: string, script: string, count: number) {
  const perThread = Math.ceil(count / THREADS);
  const markers = await Deno.makeTempDir({ prefix: "soak-" });
  const child = new Deno.Command("wrk", {
    args: [
      `-t${THREADS}`,
      `-c${CONNECTIONS}`,
      "-d3600s",
      "--timeout",
      "10s",
      "-s",
      script,
      url,
      "--",
      String(perThread),
      markers,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let exited = false;
  child.status.then(() => exited = true);
  while (!exited && [...Deno.readDirSync(markers)].length < THREADS) {
    await delay(100);
  }
  if (!exited) child.kill("SIGINT");
  const output = await child.output();
  await Deno.remove(markers, { recursive: true });
  const text = new TextDecoder().decode(output.stdout) +
    new TextDecoder().decode(output.stderr);
  const line = /^SOAK (.*)$/m.exec(text)?.[1];
  if (line === undefined) throw new Error(`wrk printed no tally:\n${text}`);
  const phase: Record<string, string | number> = {};
  for (const match of line.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) {
    phase[match[1]] = match[2].startsWith('"')
      ? JSON.parse(match[2])
      : Number(match[2]);
  }
  return phase as unknown as Phase;
}

function failures(phase: Phase): number {
  return phase.bad + phase.connect + phase.read + phase.write + phase.timeout;
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

const site = await startSite();
const m2fetch = spawnM2fetch(site, APP, {
  keepOutput: false,
  args: ["--idle-timeout", "10s"],
});
const scriptPath = await Deno.makeTempFile({ suffix: ".lua" });
let exitCode = 0;
try {
  await Deno.writeTextFile(scriptPath, SCRIPT);
  if (!await m2fetch.waitForOutput(/ serving /)) {
    throw new Error(`m2fetch did not start:\n${m2fetch.output()}`);
  }
  await rawRequest(site.port, "/ok");
  const pid = m2fetch.process.pid;
  const idle = rssOf(pid);
  console.log(
    `soak: ${TOTAL} requests at ${CONNECTIONS} connections (wrk -t${THREADS}) through mongrel2 into m2fetch (pid ${pid}, idle RSS ${
      mib(idle)
    }); mix 60 % GET, 20 % POST 1 KiB echo, 10 % 64 KiB stream, 5 % thrown error (500), 5 % 404`,
  );

  let peak = idle;
  let sampling = true;
  /** RSS samples taken while the phase after the warm-up runs. */
  const restSamples: { at: number; rss: number }[] = [];
  let inRest = false;
  const sampler = (async () => {
    while (sampling) {
      const now = rssOf(pid);
      peak = Math.max(peak, now);
      if (inRest) restSamples.push({ at: performance.now(), rss: now });
      await delay(250);
    }
  })();

  const phases: [string, number][] = [["first", WARMUP]];
  if (TOTAL > WARMUP) phases.push(["rest", TOTAL - WARMUP]);
  const results: Phase[] = [];
  const rss: number[] = [];
  for (const [name, count] of phases) {
    inRest = name === "rest";
    const phase = await runWrk(site.mongrel2.url, scriptPath, count);
    inRest = false;
    results.push(phase);
    await delay(1000);
    rss.push(rssOf(pid));
    const seconds = phase.duration_us / 1e6;
    console.log(
      `  ${name} ${count}: ${phase.requests} responses in ${
        seconds.toFixed(1)
      } s (${(phase.requests / seconds).toFixed(0)} req/s, p50 ${
        (phase.p50_us / 1000).toFixed(1)
      } ms, p99 ${
        (phase.p99_us / 1000).toFixed(1)
      } ms): ok ${phase.ok}, echo ${phase.echo}, stream ${phase.big}, 500 ${phase.errors}, 404 ${phase.missing}; failed ${
        failures(phase)
      } (bad ${phase.bad}${
        phase.sample ? ` e.g. ${JSON.stringify(phase.sample)}` : ""
      }, connect ${phase.connect}, read ${phase.read}, write ${phase.write}, timeout ${phase.timeout}); m2fetch RSS ${
        mib(rss[rss.length - 1])
      }`,
    );
  }
  sampling = false;
  await sampler;

  const failed = results.reduce((sum, phase) => sum + failures(phase), 0);
  const done = results.reduce((sum, phase) => sum + phase.requests, 0);
  // A leak shows as a higher peak in the second half of the run after the
  // warm-up than in its first; single samples at the phase ends swing
  // by 20 % or more with where V8's collector happens to be.
  const middle = restSamples.length > 0
    ? (restSamples[0].at + restSamples[restSamples.length - 1].at) / 2
    : 0;
  const peakOf = (samples: { rss: number }[]) =>
    Math.max(0, ...samples.map((sample) => sample.rss));
  const firstHalf = peakOf(restSamples.filter((sample) => sample.at < middle));
  const secondHalf = peakOf(
    restSamples.filter((sample) => sample.at >= middle),
  );
  const growth = firstHalf > 0 ? secondHalf / firstHalf - 1 : 0;
  let status = await statusOf(m2fetch);
  const until = performance.now() + 20_000;
  while (
    (status.connections > 0 || status.inFlight > 0) &&
    performance.now() < until
  ) {
    await delay(500);
    status = await statusOf(m2fetch);
  }
  console.log(`failed requests: ${failed} of ${done}`);
  console.log(
    `m2fetch RSS: idle ${mib(idle)}, after the first ${WARMUP} ${
      mib(rss[0])
    }, after the run ${mib(rss[rss.length - 1])}, peak ${mib(peak)}`,
  );
  if (restSamples.length > 0) {
    console.log(
      `m2fetch RSS peak over the rest of the run: first half ${
        mib(firstHalf)
      }, second half ${mib(secondHalf)} (${(growth * 100).toFixed(1)} %)`,
    );
  }
  console.log(
    `connection table at the end: ${status.connections} connection(s), ${status.inFlight} request(s) in flight`,
  );
  if (failed > 0) exitCode = 1;
  if (Math.abs(growth) > 0.1) exitCode = 1;
  if (status.connections > 0 || status.inFlight > 0) exitCode = 1;
  const stopped = await m2fetch.stop();
  if (stopped.code !== 0) {
    console.log(`m2fetch exited with ${stopped.code}:\n${m2fetch.output()}`);
    exitCode = 1;
  }
  console.log(exitCode === 0 ? "soak: PASS" : "soak: FAIL");
} finally {
  await m2fetch.stop();
  await site.close();
  await Deno.remove(scriptPath).catch(() => {});
}
Deno.exit(exitCode);
