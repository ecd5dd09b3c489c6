/**
 * The results of one `deno task bench` run and how they are reported: the
 * data kept in `latest.json`, the targets (PASS/MISS), the markdown of
 * `latest.md` and the chart of `throughput.svg`.
 *
 * @module
 */

import { renderLineChart } from "./chart.ts";
import type { Download } from "./processes.ts";
import type { WrkResult } from "./wrk.ts";

/** The hello-world handler module, served by m2fetch and deno serve. */
export const HELLO_APP = "examples/hello.ts";
/** The streaming handler module. */
export const STREAM_APP = "bench/stream_app.ts";
/** What every hello-world server answers (the Dir route serves a file with it). */
export const HELLO_BODY = "Hello from m2fetch\n";
/** The `deno bench` files run when they exist. */
export const MICRO_BENCHES = ["bench/codec_bench.ts", "bench/frame_bench.ts"];
/** Bytes in a MiB. */
export const MIB = 1024 * 1024;

/** The settings of one benchmark run. */
export interface Settings {
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
  from: string | null;
}

/** The median of a non-empty list. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? sorted[middle]
    : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** The servers compared. */
export type ServerName = "m2fetch" | "Dir" | "deno serve" | "zmq floor";
/**
 * The servers of both tests: the floor shows what the transport and
 * mongrel2's handler protocol cost without any HTTP work.
 */
export const SERVERS: readonly ServerName[] = [
  "m2fetch",
  "Dir",
  "deno serve",
  "zmq floor",
];

/** One wrk run. */
export interface HelloRun extends WrkResult {
  server: ServerName;
  connections: number;
  round: number;
  /** CPU seconds per process during the measured run. */
  cpu: Record<string, number>;
}

/** The rounds of one server at one concurrency, combined. */
export interface HelloPoint {
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

/** Start-up times in milliseconds. */
export interface StartupResult {
  m2fetch: number[];
  denoServe: number[];
}

/** One streamed download. */
export interface StreamRun extends Download {
  server: ServerName;
  /** CPU seconds per process during the download. */
  cpu: Record<string, number>;
}

/** The streaming results. */
export interface StreamResult {
  bytes: number;
  runs: StreamRun[];
  idleRss: number;
  /** The most resident at any time: VmHWM and the samples. */
  peakRss: number;
  /** The highest VmRSS sample during each m2fetch download. */
  runPeaks: number[];
}

/** What `deno bench` reported, or why it did not. */
export interface MicroReport {
  /** The benchmark files that exist and ran. */
  files: string[];
  results: MicroResult[];
  error?: string;
}

/** One micro-benchmark result. */
export interface MicroResult {
  file: string;
  group: string | null;
  name: string;
  avgNs: number;
  p75Ns: number;
  p99Ns: number;
}

/** Facts about the machine and the tools. */
export interface Machine {
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

/** Everything one run measured. */
export interface Results {
  settings: Settings;
  command: string;
  machine: Machine;
  startedAt: string;
  seconds: number;
  hello: HelloPoint[];
  startup: StartupResult;
  stream: StreamResult;
  micro: MicroReport | null;
}

export interface Verdict {
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

/** Formats bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

/** Formats a size as whole GiB or MiB. */
export function sizeLabel(bytes: number): string {
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

/** Checks the targets of issue 6 against the results. */
export function verdicts(results: Results): Verdict[] {
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
      measured: results.stream.runs.some((r) => r.server === "zmq floor")
        ? `${ratio(streamRatio)} (floor ${
          ratio(
            streamMedian(results, "zmq floor") / streamMedian(results, "Dir"),
          )
        })`
        : ratio(streamRatio),
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
  // Results saved before the floor streamed have no floor runs.
  const measured = SERVERS.filter((server) =>
    results.stream.runs.some((r) => r.server === server)
  );
  const rows = measured.map((server) => {
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
        : server === "deno serve"
        ? "deno serve (bench/stream_app.ts), for reference"
        : "zmq floor (pre-built bytes, no HTTP work)",
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

/** Renders the results as the markdown of `latest.md`. */
export function report(results: Results): string {
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
    } above idle. With \`download.flow_control\` on, mongrel2 lets a handler have at most 100 KiB unwritten per connection and grants more as it writes: the floor answers every credits notice at once with pre-built bytes, so it shows how fast any handler on m2fetch's transport can stream through this mongrel2 on this machine.`,
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

/** Renders requests/s against concurrency as the SVG of `throughput.svg`. */
export function chart(results: Results): string {
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
    series: SERVERS.map((server) => ({
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
