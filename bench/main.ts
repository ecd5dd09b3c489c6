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
 *   bytes as a file behind the Dir route, and the floor streaming
 *   pre-built bytes as fast as mongrel2's credits allow), and m2fetch's
 *   peak RSS above idle;
 * - start-up: from spawning m2fetch to the first request served;
 * - the `deno bench` micro-benchmarks of the codecs, when present.
 *
 * It prints one report, checks the targets (PASS/MISS), and writes
 * `bench/results/latest.md`, `latest.json` and `throughput.svg`.
 *
 * ```sh
 * deno task bench              # 3 rounds of 10 s per wrk point
 * deno task bench --quick      # 1 round of 3 s per point, fewer repetitions
 * deno task bench --help
 * ```
 *
 * Only ratios measured in the same run mean anything: the machine is shared.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { findFreePort, startMongrel2 } from "../runtime/mongrel2/mod.ts";
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
import {
  chart,
  HELLO_APP,
  HELLO_BODY,
  type HelloPoint,
  type HelloRun,
  type Machine,
  median,
  MIB,
  MICRO_BENCHES,
  type MicroReport,
  type MicroResult,
  report,
  type Results,
  type ServerName,
  SERVERS,
  type Settings,
  sizeLabel,
  type StartupResult,
  STREAM_APP,
  type StreamResult,
  type StreamRun,
  verdicts,
} from "./report.ts";
import { runWrk } from "./wrk.ts";

const USAGE = `deno task bench [options]

Benchmarks m2fetch behind a private mongrel2 against mongrel2 serving files
itself (Dir) and against deno serve, and writes bench/results/.

Options:
  --duration S        seconds per wrk point (default 10; --quick: 3)
  --warmup S          seconds of wrk warm-up before a point's first round
                      (default 2; --quick: 1)
  --connections LIST  wrk concurrencies (default 1,16,64,256)
  --rounds N          times every wrk point is measured; the report takes the
                      median (default 3; --quick: 1)
  --startup-runs N    start-up measurements (default 7; --quick: 3)
  --stream-runs N     1 GiB downloads per server (default 3; --quick: 1)
  --stream-mib N      size of the streamed response in MiB (default 1024)
  --quick             shorter points, fewer repetitions
  --no-micro          skip the deno bench micro-benchmarks
  --out DIR           where to write latest.md, latest.json and throughput.svg
                      (default bench/results; "-" writes nothing)
  --from FILE         measure nothing: report a saved latest.json again
  --help              this text
`;

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
      from: { type: "string" },
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
    from: values.from ?? null,
  };
}

function log(message: string): void {
  console.error(`bench: ${message}`);
}

/** Rotates `items` left by `by`, so each server gets its turn at going first. */
function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

// ---------------------------------------------------------------------------
// Measurements

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

/** CPU seconds each watched process used since `before`. */
function cpuSince(
  watch: CpuWatch,
  before: Record<string, number>,
): Record<string, number> {
  const now = cpuSnapshot(watch);
  const used: Record<string, number> = {};
  for (const name of Object.keys(watch)) used[name] = now[name] - before[name];
  return used;
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
    for (const server of SERVERS) {
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
  for (const server of rotate(SERVERS, turn)) {
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
    const used = cpuSince(cpu, before);
    runs.push({ ...result, server, connections, round, cpu: used });
  }
  return runs;
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

async function measureStream(
  settings: Settings,
  targets: Record<ServerName, Target>,
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
      const used = cpuSince(cpu, before);
      if (download.status !== 200 || download.bytes !== settings.streamBytes) {
        throw new Error(
          `${server} answered ${url} with status ${download.status} and ${download.bytes} of ${settings.streamBytes} bytes`,
        );
      }
      runs.push({ ...download, server, cpu: used });
    }
  }
  peakRss = Math.max(peakRss, readMemory(m2fetchPid).hwm);
  return { bytes: settings.streamBytes, runs, idleRss, peakRss, runPeaks };
}

async function measureMicro(): Promise<MicroReport> {
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
  let parsed: {
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
    parsed = JSON.parse(text);
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
  for (const bench of parsed.benches) {
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
    "cli",
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
      } uncommitted file(s) in cli.ts, cli/, mod.ts, runtime/, examples/, bench/ (the working tree as it was)`,
    loadAverage: (await Deno.readTextFile("/proc/loadavg").catch(() => ""))
      .split(" ").slice(0, 3).join(" "),
  };
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

    // The same module under m2fetch (behind mongrel2) and deno serve.
    const startApp = async (app: string, probe: string) => {
      const m2fetch = spawnM2fetch({
        app,
        sendSpec: handler.sendSpec,
        recvSpec: handler.recvSpec,
      });
      running.push(m2fetch);
      const port = await findFreePort();
      const serve = spawnDenoServe(app, port);
      running.push(serve);
      const serveUrl = `http://127.0.0.1:${port}`;
      await waitForOk(`${mongrel2.url}${probe}`, { process: m2fetch });
      await waitForOk(`${serveUrl}${probe}`, { process: serve });
      return { m2fetch, serve, serveUrl };
    };

    const startFloor = async () => {
      const floor = spawnDeno([
        "run",
        "-A",
        "bench/zmq_floor.ts",
        floorHandler.sendSpec,
        floorHandler.recvSpec,
      ]);
      running.push(floor);
      await waitForOk(`${mongrel2.url}/floor/`, { process: floor });
      return floor;
    };

    // Hello world: one of each server, kept for all points.
    const { m2fetch: helloApp, serve, serveUrl } = await startApp(
      HELLO_APP,
      "/",
    );
    const floor = await startFloor();
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
    const {
      m2fetch: streamApp,
      serve: streamServe,
      serveUrl: streamServeUrl,
    } = await startApp(STREAM_APP, `/stream/${MIB}`);
    const streamFloor = await startFloor();
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
      "zmq floor": {
        url: `${mongrel2.url}/floor/stream/${settings.streamBytes}`,
        cpu: { "zmq floor": streamFloor.pid, mongrel2: mongrel2.pid },
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
  const results: Results = settings.from === null
    ? await run(settings)
    : JSON.parse(await Deno.readTextFile(settings.from));
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
    if (settings.from === null) {
      await Deno.writeTextFile(
        `${settings.out}/latest.json`,
        JSON.stringify(results, null, 1) + "\n",
      );
    }
    // Formatted as `deno fmt` would, so `deno task ok` stays clean.
    await new Deno.Command(Deno.execPath(), {
      args: [
        "fmt",
        "--quiet",
        `${settings.out}/latest.md`,
        `${settings.out}/latest.json`,
        `${settings.out}/throughput.svg`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).output();
    log(`wrote latest.md, latest.json and throughput.svg in ${settings.out}`);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
