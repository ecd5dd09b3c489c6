/**
 * `deno task bench`: the end-to-end benchmark of m2fetch (issue 6).
 *
 * Starts a private mongrel2 (temp dir, ipc endpoints, free port) with a
 * handler route served by m2fetch (the `cli.ts` subprocess, so its memory
 * can be read from `/proc`) and a `Dir` route serving static files (the
 * ceiling for anything behind mongrel2), plus `deno serve` on its own port
 * (no proxy hop), and measures in one run, side by side:
 *
 * - hello world (examples/hello.ts; the Dir route serves the same body)
 *   with `wrk --latency` at several concurrencies: requests/s, p50, p99,
 *   server CPU per request; plus the "zmq floor" (bench/zmq_floor.ts), a
 *   handler doing no HTTP work over m2fetch's transport, which splits the
 *   gap to Dir into what the handler protocol costs and what m2fetch adds;
 * - a 1 GiB response streamed to curl (bench/stream_app.ts vs the same
 *   bytes as a file behind the Dir route), and m2fetch's peak RSS above idle;
 * - start-up: from spawning m2fetch to the first request served;
 * - the `deno bench` micro-benchmarks of the codecs, when present.
 *
 * It prints one table, checks the targets (PASS/MISS), and writes
 * `bench/results/latest.md` and `bench/results/throughput.svg`.
 *
 * ```sh
 * deno task bench              # 10 s per point
 * deno task bench --quick      # 3 s per point, fewer repetitions
 * deno task bench --help
 * ```
 *
 * Only ratios measured in the same run mean anything: the machine is shared.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { findFreePort, startMongrel2 } from "../runtime/mongrel2/mod.ts";
import { renderLineChart } from "./chart.ts";
import {
  commandOutput,
  curlDownload,
  delay,
  type Download,
  readCpuSeconds,
  readMemory,
  REPO_ROOT,
  type ServerProcess,
  spawnDeno,
  spawnDenoServe,
  spawnM2fetch,
  waitForOk,
} from "./processes.ts";
import { patternStream } from "./stream_app.ts";
import { runWrk, type WrkResult } from "./wrk.ts";

const HELLO_APP = "examples/hello.ts";
const STREAM_APP = "bench/stream_app.ts";
const HELLO_BODY = "Hello from m2fetch\n";
const MICRO_BENCHES = ["bench/codec_bench.ts", "bench/frame_bench.ts"];
const MIB = 1024 * 1024;

const USAGE = `deno task bench [options]

Benchmarks m2fetch behind a private mongrel2 against mongrel2 serving files
itself (Dir) and against deno serve, and writes bench/results/.

Options:
  --duration S        seconds per wrk point (default 10; --quick: 3)
  --warmup S          seconds of wrk warm-up before each point (default 2; --quick: 1)
  --connections LIST  wrk concurrencies (default 1,16,64,256)
  --rounds N          times every wrk point is measured; the report takes the
                      median (default 3; --quick: 1)
  --startup-runs N    start-up measurements (default 7; --quick: 3)
  --stream-runs N     1 GiB downloads per server (default 3; --quick: 1)
  --stream-mib N      size of the streamed response in MiB (default 1024)
  --quick             shorter points, fewer repetitions
  --no-micro          skip the deno bench micro-benchmarks
  --out DIR           where to write latest.md and throughput.svg
                      (default bench/results; "-" writes nothing)
  --help              this text
`;

/** The settings of one benchmark run. */
interface Settings {
  duration: number;
  warmup: number;
  connections: number[];
  rounds: number;
  startupRuns: number;
  streamRuns: number;
  streamBytes: number;
  micro: boolean;
  quick: boolean;
  out: string | null;
}

function positiveNumber(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new TypeError(`--${name} must be a positive number, got "${text}"`);
  }
  return value;
}

function positiveInteger(name: string, text: string): number {
  const value = positiveNumber(name, text);
  if (!Number.isInteger(value)) {
    throw new TypeError(`--${name} must be an integer, got "${text}"`);
  }
  return value;
}

function parseSettings(args: string[]): Settings | null {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      duration: { type: "string" },
      warmup: { type: "string" },
      connections: { type: "string" },
      rounds: { type: "string" },
      "startup-runs": { type: "string" },
      "stream-runs": { type: "string" },
      "stream-mib": { type: "string" },
      quick: { type: "boolean", default: false },
      "no-micro": { type: "boolean", default: false },
      out: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return null;
  const quick = values.quick;
  const connections = (values.connections ?? "1,16,64,256").split(",").map(
    (item) => positiveInteger("connections", item.trim()),
  );
  const out = values.out ?? `${REPO_ROOT}/bench/results`;
  return {
    duration: positiveNumber(
      "duration",
      values.duration ?? (quick ? "3" : "10"),
    ),
    warmup: positiveNumber("warmup", values.warmup ?? (quick ? "1" : "2")),
    connections: [...new Set(connections)].sort((a, b) => a - b),
    rounds: positiveInteger("rounds", values.rounds ?? (quick ? "1" : "3")),
    startupRuns: positiveInteger(
      "startup-runs",
      values["startup-runs"] ?? (quick ? "3" : "7"),
    ),
    streamRuns: positiveInteger(
      "stream-runs",
      values["stream-runs"] ?? (quick ? "1" : "3"),
    ),
    streamBytes: positiveInteger("stream-mib", values["stream-mib"] ?? "1024") *
      MIB,
    micro: !values["no-micro"],
    quick,
    out: out === "-" ? null : out,
  };
}

function log(message: string): void {
  console.error(`bench: ${message}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Rotates `items` left by `by`, so each server gets its turn at going first. */
function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

// ---------------------------------------------------------------------------
// Measurements

type ServerName = "m2fetch" | "Dir" | "deno serve" | "zmq floor";
/** The servers of the streaming test. */
const SERVERS: readonly ServerName[] = ["m2fetch", "Dir", "deno serve"];
/** The hello-world servers: the floor shows what the transport alone costs. */
const HELLO_SERVERS: readonly ServerName[] = [...SERVERS, "zmq floor"];

/** One wrk run. */
interface HelloRun extends WrkResult {
  server: ServerName;
  connections: number;
  round: number;
  /** CPU seconds per process during the measured run. */
  cpu: Record<string, number>;
}

/** The rounds of one server at one concurrency, combined. */
interface HelloPoint {
  server: ServerName;
  connections: number;
  /** Medians over the rounds. */
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Sums over the rounds. */
  requests: number;
  socketErrors: number;
  non2xx: number;
  cpu: Record<string, number>;
  /** The rounds as measured. */
  runs: HelloRun[];
}

function combine(runs: HelloRun[]): HelloPoint {
  const cpu: Record<string, number> = {};
  for (const run of runs) {
    for (const [name, seconds] of Object.entries(run.cpu)) {
      cpu[name] = (cpu[name] ?? 0) + seconds;
    }
  }
  const sum = (pick: (run: HelloRun) => number) =>
    runs.reduce((total, run) => total + pick(run), 0);
  return {
    server: runs[0].server,
    connections: runs[0].connections,
    requestsPerSecond: median(runs.map((r) => r.requestsPerSecond)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    requests: sum((r) => r.requests),
    socketErrors: sum((r) => r.socketErrors),
    non2xx: sum((r) => r.non2xx),
    cpu,
    runs,
  };
}

/** Processes whose CPU time counts for a server, by name. */
type CpuWatch = Record<string, number>;

/** Where a server is loaded and which processes serve it. */
interface Target {
  url: string;
  cpu: CpuWatch;
}

function cpuSnapshot(watch: CpuWatch): Record<string, number> {
  const snapshot: Record<string, number> = {};
  for (const [name, pid] of Object.entries(watch)) {
    snapshot[name] = readCpuSeconds(pid);
  }
  return snapshot;
}

async function measureHello(
  settings: Settings,
  targets: Record<ServerName, Target>,
): Promise<HelloPoint[]> {
  const runs: HelloRun[] = [];
  for (let round = 0; round < settings.rounds; round++) {
    for (const [index, connections] of settings.connections.entries()) {
      runs.push(
        ...await measureHelloPoint(
          settings,
          targets,
          connections,
          round,
          index + round,
        ),
      );
    }
  }
  const points: HelloPoint[] = [];
  for (const connections of settings.connections) {
    for (const server of HELLO_SERVERS) {
      points.push(
        combine(
          runs.filter((r) =>
            r.server === server && r.connections === connections
          ),
        ),
      );
    }
  }
  return points;
}

/** Measures every hello server once at one concurrency, taking turns. */
async function measureHelloPoint(
  settings: Settings,
  targets: Record<ServerName, Target>,
  connections: number,
  round: number,
  turn: number,
): Promise<HelloRun[]> {
  const runs: HelloRun[] = [];
  for (const server of rotate(HELLO_SERVERS, turn)) {
    const { url, cpu } = targets[server];
    log(
      `hello: ${server}, ${connections} connection(s), round ${
        round + 1
      }/${settings.rounds}`,
    );
    if (round === 0) {
      await runWrk({ url, connections, seconds: settings.warmup });
    }
    const before = cpuSnapshot(cpu);
    const result = await runWrk({
      url,
      connections,
      seconds: settings.duration,
    });
    const after = cpuSnapshot(cpu);
    const used: Record<string, number> = {};
    for (const name of Object.keys(cpu)) {
      used[name] = after[name] - before[name];
    }
    runs.push({ ...result, server, connections, round, cpu: used });
  }
  return runs;
}

/** Start-up times in milliseconds. */
interface StartupResult {
  m2fetch: number[];
  denoServe: number[];
}

async function measureStartup(
  settings: Settings,
  mongrel2Url: string,
  sendSpec: string,
  recvSpec: string,
): Promise<StartupResult> {
  const m2fetch: number[] = [];
  const denoServe: number[] = [];
  // Run 0 fills Deno's module and transpile caches and is not counted.
  for (let run = 0; run <= settings.startupRuns; run++) {
    log(`start-up: run ${run}${run === 0 ? " (warm-up, not counted)" : ""}`);
    let started = performance.now();
    const app = spawnM2fetch({ app: HELLO_APP, sendSpec, recvSpec });
    try {
      await waitForOk(`${mongrel2Url}/`, { process: app });
      if (run > 0) m2fetch.push(performance.now() - started);
    } finally {
      await app.stop();
    }
    const port = await findFreePort();
    started = performance.now();
    const serve = spawnDenoServe(HELLO_APP, port);
    try {
      await waitForOk(`http://127.0.0.1:${port}/`, { process: serve });
      if (run > 0) denoServe.push(performance.now() - started);
    } finally {
      await serve.stop();
    }
    // Let mongrel2 see the old handler go before the next one connects.
    await delay(100);
  }
  return { m2fetch, denoServe };
}

/** One streamed download. */
interface StreamRun extends Download {
  server: ServerName;
  /** CPU seconds per process during the download. */
  cpu: Record<string, number>;
}

/** The streaming results. */
interface StreamResult {
  bytes: number;
  runs: StreamRun[];
  idleRss: number;
  /** The most resident at any time: VmHWM and the samples. */
  peakRss: number;
  /** The highest VmRSS sample during each m2fetch download. */
  runPeaks: number[];
}

async function measureStream(
  settings: Settings,
  targets: Record<Exclude<ServerName, "zmq floor">, Target>,
  m2fetchPid: number,
): Promise<StreamResult> {
  // Settle, then take the idle footprint after one small warm-up stream.
  await delay(500);
  const idleRss = readMemory(m2fetchPid).rss;
  const runs: StreamRun[] = [];
  let peakRss = idleRss;
  const runPeaks: number[] = [];
  for (let run = 0; run < settings.streamRuns; run++) {
    for (const server of rotate(SERVERS, run)) {
      const { url, cpu } = targets[server as keyof typeof targets];
      log(
        `stream: ${server}, ${sizeLabel(settings.streamBytes)}, run ${run + 1}`,
      );
      let runPeak = 0;
      const sampler = server === "m2fetch"
        ? setInterval(() => {
          runPeak = Math.max(runPeak, readMemory(m2fetchPid).rss);
        }, 20)
        : undefined;
      const before = cpuSnapshot(cpu);
      let download: Download;
      try {
        download = await curlDownload(url);
      } finally {
        clearInterval(sampler);
      }
      if (server === "m2fetch") {
        runPeaks.push(runPeak);
        peakRss = Math.max(peakRss, runPeak);
      }
      const after = cpuSnapshot(cpu);
      if (download.status !== 200 || download.bytes !== settings.streamBytes) {
        throw new Error(
          `${server} answered ${url} with status ${download.status} and ${download.bytes} of ${settings.streamBytes} bytes`,
        );
      }
      const used: Record<string, number> = {};
      for (const name of Object.keys(cpu)) {
        used[name] = after[name] - before[name];
      }
      runs.push({ ...download, server, cpu: used });
    }
  }
  peakRss = Math.max(peakRss, readMemory(m2fetchPid).hwm);
  return { bytes: settings.streamBytes, runs, idleRss, peakRss, runPeaks };
}

/** One micro-benchmark result. */
interface MicroResult {
  file: string;
  group: string | null;
  name: string;
  avgNs: number;
  p75Ns: number;
  p99Ns: number;
}

async function measureMicro(): Promise<
  { files: string[]; results: MicroResult[]; error?: string }
> {
  const files: string[] = [];
  for (const file of MICRO_BENCHES) {
    if (await Deno.stat(`${REPO_ROOT}/${file}`).then(() => true, () => false)) {
      files.push(file);
    }
  }
  if (files.length === 0) return { files, results: [] };
  log(`micro: deno bench ${files.join(" ")}`);
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["bench", "--json", ...files],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  let report: {
    benches: {
      origin: string;
      group: string | null;
      name: string;
      results: {
        ok?: { avg: number; p75: number; p99: number };
      }[];
    }[];
  };
  try {
    report = JSON.parse(text);
  } catch {
    return {
      files,
      results: [],
      error: `deno bench exited with code ${output.code}: ${
        new TextDecoder().decode(output.stderr).slice(-2000)
      }`,
    };
  }
  const results: MicroResult[] = [];
  for (const bench of report.benches) {
    const ok = bench.results[0]?.ok;
    if (ok === undefined) continue;
    results.push({
      file: bench.origin.slice(bench.origin.lastIndexOf("/") + 1),
      group: bench.group,
      name: bench.name,
      avgNs: ok.avg,
      p75Ns: ok.p75,
      p99Ns: ok.p99,
    });
  }
  return {
    files,
    results,
    error: output.success
      ? undefined
      : `deno bench exited with code ${output.code}`,
  };
}

/** Facts about the machine and the tools. */
interface Machine {
  cpus: number;
  cpuModel: string;
  kernel: string;
  deno: string;
  mongrel2: string;
  wrk: string;
  curl: string;
  commit: string;
  loadAverage: string;
}

async function describeMachine(mongrel2Server: string): Promise<Machine> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1].trim() ??
    "unknown";
  const wrk = await commandOutput("wrk", ["-v"], "unknown", true);
  const curl = await commandOutput("curl", ["--version"]);
  const head = await commandOutput("git", [
    "-C",
    REPO_ROOT,
    "rev-parse",
    "--short",
    "HEAD",
  ]);
  // Several people work in one tree: say when what ran is not the commit.
  const dirty = await commandOutput("git", [
    "-C",
    REPO_ROOT,
    "status",
    "--porcelain",
    "--untracked-files=all",
    "--",
    "cli.ts",
    "mod.ts",
    "runtime",
    "examples",
    "bench",
  ], "");
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: model,
    kernel: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: `${Deno.version.deno} (V8 ${Deno.version.v8})`,
    mongrel2: mongrel2Server,
    wrk: /^wrk (\S+)/m.exec(wrk)?.[1] ?? wrk.split("\n")[0],
    curl: curl.split(" ")[1] ?? curl,
    commit: dirty === ""
      ? head
      : `${head} plus ${
        dirty.split("\n").length
      } uncommitted file(s) in cli.ts, mod.ts, runtime/, examples/, bench/ (the working tree as it was)`,
    loadAverage: (await Deno.readTextFile("/proc/loadavg").catch(() => ""))
      .split(" ").slice(0, 3).join(" "),
  };
}

// ---------------------------------------------------------------------------
// Report

/** Everything one run measured. */
interface Results {
  settings: Settings;
  command: string;
  machine: Machine;
  startedAt: string;
  seconds: number;
  hello: HelloPoint[];
  startup: StartupResult;
  stream: StreamResult;
  micro: Awaited<ReturnType<typeof measureMicro>> | null;
}

interface Verdict {
  target: string;
  measured: string;
  pass: boolean;
}

function ms(value: number): string {
  return value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(2)} ms`;
}

function ratio(value: number): string {
  return `${value.toFixed(2)}×`;
}

function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

function sizeLabel(bytes: number): string {
  return bytes % (1024 * MIB) === 0
    ? `${bytes / (1024 * MIB)} GiB`
    : `${bytes / MIB} MiB`;
}

function table(header: string[], rows: string[][]): string {
  const align = header.map((_, i) => (i === 0 ? ":--" : "--:"));
  return [header, align, ...rows].map((row) => `| ${row.join(" | ")} |`).join(
    "\n",
  );
}

function point(
  results: Results,
  server: ServerName,
  connections: number,
): HelloPoint {
  const found = results.hello.find((p) =>
    p.server === server && p.connections === connections
  );
  if (found === undefined) {
    throw new Error(`No result for ${server} at ${connections} connections`);
  }
  return found;
}

function streamMedian(results: Results, server: ServerName): number {
  return median(
    results.stream.runs.filter((r) => r.server === server).map((r) =>
      r.bytes / r.seconds
    ),
  );
}

function verdicts(results: Results): Verdict[] {
  const at = results.settings.connections.includes(64)
    ? 64
    : results.settings.connections[results.settings.connections.length - 1];
  const m2 = point(results, "m2fetch", at);
  const dir = point(results, "Dir", at);
  const streamRatio = streamMedian(results, "m2fetch") /
    streamMedian(results, "Dir");
  const rssAbove = results.stream.peakRss - results.stream.idleRss;
  const startup = median(results.startup.m2fetch);
  return [
    {
      target: `requests/s at ${at} connections ≥ 0.9 × Dir`,
      measured: ratio(m2.requestsPerSecond / dir.requestsPerSecond),
      pass: m2.requestsPerSecond >= 0.9 * dir.requestsPerSecond,
    },
    {
      target: `p99 at ${at} connections ≤ 1.3 × Dir's p99`,
      measured: `${ratio(m2.p99Ms / dir.p99Ms)} (${ms(m2.p99Ms)} vs ${
        ms(dir.p99Ms)
      })`,
      pass: m2.p99Ms <= 1.3 * dir.p99Ms,
    },
    {
      target: `${
        sizeLabel(results.stream.bytes)
      } streamed response ≥ 0.7 × Dir`,
      measured: ratio(streamRatio),
      pass: streamRatio >= 0.7,
    },
    {
      target: "peak RSS while streaming ≤ 64 MiB above idle",
      measured: `${mib(rssAbove)} (idle ${mib(results.stream.idleRss)})`,
      pass: rssAbove <= 64 * MIB,
    },
    {
      target: "start-up to first request served < 500 ms (median)",
      measured: ms(startup),
      pass: startup < 500,
    },
  ];
}

/** The ratio `a / b` in each round. */
function perRound(
  a: HelloPoint,
  b: HelloPoint,
  pick: (run: HelloRun) => number,
): number[] {
  return a.runs.map((run) => {
    const other = b.runs.find((r) => r.round === run.round);
    return other === undefined ? NaN : pick(run) / pick(other);
  }).filter(Number.isFinite);
}

/** A ratio of medians, with the spread of the per-round ratios. */
function withRange(value: number, rounds: number[]): string {
  if (rounds.length < 2) return ratio(value);
  return `${ratio(value)} (${Math.min(...rounds).toFixed(2)}–${
    Math.max(...rounds).toFixed(2)
  })`;
}

function helloTable(results: Results): string {
  const rows = results.settings.connections.map((c) => {
    const m2 = point(results, "m2fetch", c);
    const dir = point(results, "Dir", c);
    const serve = point(results, "deno serve", c);
    const floor = point(results, "zmq floor", c);
    const cell = (p: HelloPoint) =>
      `${p.requestsPerSecond.toFixed(0)} / ${ms(p.p50Ms)} / ${ms(p.p99Ms)}`;
    return [
      String(c),
      cell(m2),
      cell(dir),
      cell(serve),
      withRange(
        m2.requestsPerSecond / dir.requestsPerSecond,
        perRound(m2, dir, (p) => p.requestsPerSecond),
      ),
      ratio(m2.requestsPerSecond / serve.requestsPerSecond),
      withRange(m2.p99Ms / dir.p99Ms, perRound(m2, dir, (p) => p.p99Ms)),
      `${cell(floor)} (${
        ratio(floor.requestsPerSecond / dir.requestsPerSecond)
      } Dir)`,
    ];
  });
  return table([
    "conns",
    "m2fetch req/s / p50 / p99",
    "Dir req/s / p50 / p99",
    "deno serve req/s / p50 / p99",
    "m2fetch/Dir req/s",
    "m2fetch/deno serve req/s",
    "m2fetch/Dir p99",
    "zmq floor req/s / p50 / p99",
  ], rows);
}

function cpuTable(results: Results): string {
  const rows = results.settings.connections.map((c) => {
    const m2 = point(results, "m2fetch", c);
    const dir = point(results, "Dir", c);
    const serve = point(results, "deno serve", c);
    const floor = point(results, "zmq floor", c);
    const perRequest = (p: HelloPoint, name: string) =>
      `${((p.cpu[name] / p.requests) * 1e6).toFixed(1)}`;
    const cores = (p: HelloPoint, name: string) =>
      `${
        (p.cpu[name] / (p.runs.length * results.settings.duration)).toFixed(2)
      }`;
    return [
      String(c),
      `${perRequest(m2, "m2fetch")} µs (${cores(m2, "m2fetch")} cores)`,
      `${perRequest(m2, "mongrel2")} µs (${cores(m2, "mongrel2")} cores)`,
      `${perRequest(dir, "mongrel2")} µs (${cores(dir, "mongrel2")} cores)`,
      `${perRequest(serve, "deno serve")} µs (${
        cores(serve, "deno serve")
      } cores)`,
      `${perRequest(floor, "zmq floor")} µs + mongrel2 ${
        perRequest(floor, "mongrel2")
      } µs`,
    ];
  });
  return table([
    "conns",
    "m2fetch process, behind mongrel2",
    "mongrel2, proxying to m2fetch",
    "mongrel2, Dir",
    "deno serve",
    "zmq floor process + mongrel2",
  ], rows);
}

function errorNotes(results: Results): string[] {
  return results.hello.filter((p) => p.socketErrors > 0 || p.non2xx > 0).map(
    (p) =>
      `- ${p.server} at ${p.connections} connections: ${p.socketErrors} socket errors, ${p.non2xx} non-2xx responses`,
  );
}

function streamTable(results: Results): string {
  const dir = streamMedian(results, "Dir");
  const rows = SERVERS.map((server) => {
    const runs = results.stream.runs.filter((r) => r.server === server);
    const rate = streamMedian(results, server);
    const cpu = Object.keys(runs[0].cpu).map((name) =>
      `${name} ${(median(runs.map((r) => r.cpu[name]))).toFixed(2)} s`
    ).join(", ");
    return [
      server === "m2fetch"
        ? "m2fetch (bench/stream_app.ts, 64 KiB chunks)"
        : server === "Dir"
        ? "mongrel2 Dir (the same bytes as a file)"
        : "deno serve (bench/stream_app.ts), for reference",
      `${median(runs.map((r) => r.seconds)).toFixed(2)} s`,
      `${(rate / MIB).toFixed(0)} MiB/s`,
      ratio(rate / dir),
      cpu,
    ];
  });
  return table([
    "server",
    "time (median)",
    "throughput",
    "vs Dir",
    "CPU time (median)",
  ], rows);
}

function startupTable(results: Results): string {
  const row = (name: string, values: number[]) => [
    name,
    ms(median(values)),
    ms(Math.min(...values)),
    ms(Math.max(...values)),
    values.map((v) => v.toFixed(0)).join(", "),
  ];
  return table(["", "median", "min", "max", "runs (ms)"], [
    row(
      "m2fetch (spawn → first response through mongrel2)",
      results.startup.m2fetch,
    ),
    row(
      "deno serve examples/hello.ts (spawn → first response)",
      results.startup.denoServe,
    ),
  ]);
}

function microTable(results: Results): string {
  const micro = results.micro;
  if (micro === null) return "Skipped (--no-micro).";
  if (micro.files.length === 0) {
    return `None of ${MICRO_BENCHES.join(", ")} exists yet.`;
  }
  const lines = [
    `\`deno bench ${micro.files.join(" ")}\`${
      micro.error ? ` — ${micro.error}` : ""
    }`,
    "",
  ];
  if (micro.results.length > 0) {
    lines.push(table(
      ["benchmark", "avg ns/iter", "p75 ns", "p99 ns"],
      micro.results.map((r) => [
        `${r.file}: ${r.group ? `[${r.group}] ` : ""}${r.name}`,
        r.avgNs.toFixed(1),
        r.p75Ns.toFixed(1),
        r.p99Ns.toFixed(1),
      ]),
    ));
  }
  return lines.join("\n");
}

function report(results: Results): string {
  const { settings, machine } = results;
  const checks = verdicts(results);
  const notes = errorNotes(results);
  return [
    "# m2fetch benchmark results",
    "",
    `Generated by \`${results.command}\` on ${results.startedAt} (${
      results.seconds.toFixed(0)
    } s${settings.quick ? ", --quick" : ""}).`,
    "The machine is shared and noisy: compare the ratios, measured side by side in this run, not the absolute numbers.",
    "",
    "## Targets",
    "",
    table(
      ["target", "measured", "result"],
      checks.map((c) => [c.target, c.measured, c.pass ? "PASS" : "MISS"]),
    ),
    "",
    "## Hello world",
    "",
    `\`${HELLO_APP}\` under m2fetch behind mongrel2, the same 19-byte body from mongrel2's Dir route, and \`deno serve ${HELLO_APP}\` (no proxy hop). ` +
    "The zmq floor (bench/zmq_floor.ts) answers behind the same mongrel2 with pre-encoded bytes over m2fetch's ZeroMQ transport and does no HTTP work: the gap between it and Dir is the handler protocol's, the gap between m2fetch and it is m2fetch's own. " +
    `\`wrk -t2 -cN -d${settings.duration}s --latency\` (\`-t1\` for one connection), ${settings.rounds} round(s) over all points, the first after a ${settings.warmup} s warm-up at the same concurrency; the servers take turns going first. ` +
    "Each cell is the median over the rounds; the ratios are of those medians, with the range of the per-round ratios in brackets.",
    "",
    helloTable(results),
    "",
    "![requests/s against concurrency](throughput.svg)",
    "",
    "CPU time per request (and cores busy) during the same runs:",
    "",
    cpuTable(results),
    "",
    ...(notes.length > 0 ? ["wrk reported errors:", "", ...notes, ""] : []),
    `## ${sizeLabel(results.stream.bytes)} streamed response`,
    "",
    `\`curl -o /dev/null\`, ${settings.streamRuns} run(s) per server, taking turns. m2fetch idle RSS ${
      mib(results.stream.idleRss)
    } (a fresh process after one 1 MiB warm-up stream), peak ${
      mib(results.stream.peakRss)
    } (VmHWM and 20 ms VmRSS samples): ${
      mib(results.stream.peakRss - results.stream.idleRss)
    } above idle; highest sample per run: ${
      results.stream.runPeaks.map((peak) => mib(peak - results.stream.idleRss))
        .join(", ")
    } above idle.`,
    "",
    streamTable(results),
    "",
    "## Start-up",
    "",
    `${settings.startupRuns} runs after one uncounted warm-up run; a request is sent right after spawning and mongrel2 holds it until m2fetch connects.`,
    "",
    startupTable(results),
    "",
    "## Micro-benchmarks",
    "",
    microTable(results),
    "",
    "## Machine",
    "",
    table(["", ""], [
      ["CPUs (nproc)", String(machine.cpus)],
      ["CPU model", machine.cpuModel],
      ["kernel", machine.kernel],
      ["deno", machine.deno],
      ["mongrel2", machine.mongrel2],
      ["wrk", machine.wrk],
      ["curl", machine.curl],
      ["m2fetch commit", machine.commit],
      ["load average at start", machine.loadAverage],
    ]),
    "",
  ].join("\n");
}

function chart(results: Results): string {
  const colors: Record<ServerName, string> = {
    "m2fetch": "#d9480f",
    "Dir": "#1971c2",
    "deno serve": "#2b8a3e",
    "zmq floor": "#868e96",
  };
  const names: Record<ServerName, string> = {
    "m2fetch": "mongrel2 + m2fetch",
    "Dir": "mongrel2 Dir (ceiling)",
    "deno serve": "deno serve (no proxy)",
    "zmq floor": "zmq floor (no HTTP work)",
  };
  return renderLineChart({
    title: "Hello world: requests/s against concurrency",
    subtitle:
      `wrk -d${results.settings.duration}s, median of ${results.settings.rounds}, ${results.machine.cpus} × ${results.machine.cpuModel}, deno ${Deno.version.deno}, ${results.machine.mongrel2}, ${
        results.startedAt.slice(0, 10)
      }`,
    xLabel: "concurrent connections (wrk -c)",
    yLabel: "requests/s",
    series: HELLO_SERVERS.map((server) => ({
      name: names[server],
      color: colors[server],
      dashed: server === "zmq floor",
      points: results.hello.filter((p) => p.server === server).map((p) => ({
        x: p.connections,
        y: p.requestsPerSecond,
      })),
    })),
  });
}

// ---------------------------------------------------------------------------
// The run

async function writeFileFrom(
  path: string,
  stream: ReadableStream<Uint8Array>,
): Promise<void> {
  const file = await Deno.open(path, {
    write: true,
    create: true,
    truncate: true,
  });
  await stream.pipeTo(file.writable);
}

async function run(settings: Settings): Promise<Results> {
  const startedAt = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const started = performance.now();
  const dir = await Deno.makeTempDir({ prefix: "m2bench" });
  const running: ServerProcess[] = [];
  const stopAll = async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
  };
  try {
    await Deno.mkdir(`${dir}/static`);
    await Deno.writeTextFile(`${dir}/static/hello.txt`, HELLO_BODY);
    log(
      `writing the ${sizeLabel(settings.streamBytes)} file for the Dir route`,
    );
    await writeFileFrom(
      `${dir}/static/big.bin`,
      patternStream(settings.streamBytes),
    );
    await using mongrel2 = await startMongrel2({
      dir,
      handlers: [
        { route: "/", protocol: "tnetstring" },
        { route: "/floor/", protocol: "tnetstring" },
      ],
      dirs: [{ route: "/static/", base: "static/" }],
    });
    const [handler, floorHandler] = mongrel2.handlers;
    const probe = await fetch(`${mongrel2.url}/static/hello.txt`);
    if ((await probe.text()) !== HELLO_BODY) {
      throw new Error("mongrel2's Dir route does not serve the hello body");
    }
    const machine = await describeMachine(
      probe.headers.get("server") ?? "mongrel2 (version unknown)",
    );
    log(`mongrel2 ${mongrel2.url} (pid ${mongrel2.pid}) in ${dir}`);

    const startup = await measureStartup(
      settings,
      mongrel2.url,
      handler.sendSpec,
      handler.recvSpec,
    );

    // Hello world: one m2fetch and one deno serve, both kept for all points.
    const helloApp = spawnM2fetch({
      app: HELLO_APP,
      sendSpec: handler.sendSpec,
      recvSpec: handler.recvSpec,
    });
    running.push(helloApp);
    const servePort = await findFreePort();
    const serve = spawnDenoServe(HELLO_APP, servePort);
    running.push(serve);
    const serveUrl = `http://127.0.0.1:${servePort}`;
    const floor = spawnDeno([
      "run",
      "-A",
      "bench/zmq_floor.ts",
      floorHandler.sendSpec,
      floorHandler.recvSpec,
    ]);
    running.push(floor);
    await waitForOk(`${mongrel2.url}/`, { process: helloApp });
    await waitForOk(`${serveUrl}/`, { process: serve });
    await waitForOk(`${mongrel2.url}/floor/`, { process: floor });
    for (
      const url of [
        `${mongrel2.url}/`,
        `${serveUrl}/`,
        `${mongrel2.url}/floor/`,
      ]
    ) {
      const body = await (await fetch(url)).text();
      if (body !== HELLO_BODY) throw new Error(`${url} answered "${body}"`);
    }
    const hello = await measureHello(settings, {
      "m2fetch": {
        url: `${mongrel2.url}/`,
        cpu: { m2fetch: helloApp.pid, mongrel2: mongrel2.pid },
      },
      "Dir": {
        url: `${mongrel2.url}/static/hello.txt`,
        cpu: { mongrel2: mongrel2.pid },
      },
      "deno serve": { url: `${serveUrl}/`, cpu: { "deno serve": serve.pid } },
      "zmq floor": {
        url: `${mongrel2.url}/floor/`,
        cpu: { "zmq floor": floor.pid, mongrel2: mongrel2.pid },
      },
    });
    await stopAll();
    await delay(100);

    // Streaming: a fresh m2fetch, so its idle and peak RSS are its own.
    const streamApp = spawnM2fetch({
      app: STREAM_APP,
      sendSpec: handler.sendSpec,
      recvSpec: handler.recvSpec,
    });
    running.push(streamApp);
    const streamPort = await findFreePort();
    const streamServe = spawnDenoServe(STREAM_APP, streamPort);
    running.push(streamServe);
    const streamServeUrl = `http://127.0.0.1:${streamPort}`;
    await waitForOk(`${mongrel2.url}/stream/${MIB}`, { process: streamApp });
    await waitForOk(`${streamServeUrl}/stream/${MIB}`, {
      process: streamServe,
    });
    const stream = await measureStream(settings, {
      "m2fetch": {
        url: `${mongrel2.url}/stream/${settings.streamBytes}`,
        cpu: { m2fetch: streamApp.pid, mongrel2: mongrel2.pid },
      },
      "Dir": {
        url: `${mongrel2.url}/static/big.bin`,
        cpu: { mongrel2: mongrel2.pid },
      },
      "deno serve": {
        url: `${streamServeUrl}/stream/${settings.streamBytes}`,
        cpu: { "deno serve": streamServe.pid },
      },
    }, streamApp.pid);
    await stopAll();

    const micro = settings.micro ? await measureMicro() : null;
    return {
      settings,
      command: ["deno task bench", ...Deno.args].join(" "),
      machine,
      startedAt,
      seconds: (performance.now() - started) / 1000,
      hello,
      startup,
      stream,
      micro,
    };
  } finally {
    await stopAll();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function main(args: string[]): Promise<number> {
  let settings: Settings | null;
  try {
    settings = parseSettings(args);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (settings === null) {
    console.log(USAGE);
    return 0;
  }
  const results = await run(settings);
  const text = report(results);
  console.log(text);
  for (const check of verdicts(results)) {
    console.log(
      `${check.pass ? "PASS" : "MISS"}  ${check.target}: ${check.measured}`,
    );
  }
  if (settings.out !== null) {
    await Deno.mkdir(settings.out, { recursive: true });
    await Deno.writeTextFile(`${settings.out}/latest.md`, text);
    await Deno.writeTextFile(`${settings.out}/throughput.svg`, chart(results));
    log(`wrote ${settings.out}/latest.md and ${settings.out}/throughput.svg`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
