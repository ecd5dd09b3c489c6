/**
 * What --workers buys and costs (issue 5), through a real mongrel2, in one
 * run so that the ratios mean something on a shared machine:
 *
 * - a CPU-bound handler (a sort of 15 000 doubles, about 1 ms of CPU per
 *   request) with --workers 1 and --workers 2, and 0 for reference:
 *   requests/s and the 2-vs-1 ratio (the ideal on 2 cores is 2; the main
 *   thread's share of the CPU keeps it lower);
 * - the same handler in two --workers 0 processes on one endpoint: two
 *   handler threads with no hop between threads, the ceiling for the ratio
 *   on this machine (mongrel2, wrk and the kernel share the cores too);
 * - examples/hello.ts with --workers 0 and --workers 1: the cost of the
 *   worker hop per request;
 * - the same at wrk -c 1, one request at a time: what each request costs
 *   when no wake-up of a thread is shared with another request, which is
 *   how requests reach the main thread behind a CPU-bound handler.
 *
 * For every run it also prints the CPU seconds of each m2fetch thread over
 * the measured window (main, the handler workers, V8's own threads; summed
 * over processes), which is where the time goes when a ratio is low.
 *
 * ```sh
 * deno run -A bench/workers_bench.ts            # wrk -c 16, 10 s per point
 * deno run -A bench/workers_bench.ts --seconds 3
 * deno run -A bench/workers_bench.ts --tcp      # handler sockets on loopback TCP, not ipc
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { findFreePort, startMongrel2 } from "../runtime/mongrel2/mod.ts";
import {
  delay,
  readCpuSeconds,
  readMachineBusySeconds,
  readThreadCpuSeconds,
  REPO_ROOT,
  type ServerProcess,
  spawnDeno,
  waitForOk,
} from "./processes.ts";
import { runWrk, type WrkResult } from "./wrk.ts";

/**
 * The CPU handler: every request sorts the same 15 000 doubles, about 1 ms
 * of CPU on the 2-core machine this was written on (the report prints the
 * CPU per request measured with --workers 0). The sort is V8's C++ typed
 * array sort, so its cost does not depend on the JIT: an integer-hash loop
 * used before ran at about 140 µs once optimised and about 1 ms after V8
 * dropped the optimised code, switching between the two in the middle of a
 * measurement, in each worker on its own.
 */
const CPU_APP = `
const unsorted = new Float64Array(15000).map((_, i) => Math.sin(i) * 1e6);
const scratch = new Float64Array(unsorted.length);
export default {
  fetch() {
    scratch.set(unsorted);
    scratch.sort();
    return new Response("median " + scratch[scratch.length >> 1] + "\\n");
  },
};
`;

const CPU_ONE = "cpu 1 ms, --workers 1";
const CPU_TWO = "cpu 1 ms, --workers 2";
/**
 * Two --workers 0 processes on the one handler endpoint: two handler threads
 * with no hop between threads and no thread that only relays. mongrel2
 * pushes round-robin, which is safe for this handler's plain requests (not
 * for uploads or WebSockets: README, Deployment topologies), so this is the
 * ceiling for any way of running two handler threads on this machine.
 */
const CPU_CEILING = "cpu 1 ms, 2 processes";

interface Run {
  label: string;
  wrk: WrkResult;
  /** m2fetch's CPU seconds over the measured window. */
  cpu: number;
  /** mongrel2's CPU seconds over the same window. */
  mongrel2Cpu: number;
  /** The whole machine's busy CPU seconds (wrk and the kernel included). */
  machineCpu: number;
  threads: Record<string, number>;
}

function threadDelta(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  const delta: Record<string, number> = {};
  for (const [name, seconds] of Object.entries(after)) {
    const used = seconds - (before[name] ?? 0);
    if (used >= 0.05) delta[name] = used;
  }
  return delta;
}

/** One point of the plan: what runs, and how many processes of it. */
interface Point {
  label: string;
  app: string;
  workers: number;
  connections: number;
  /** m2fetch processes sharing the handler endpoint (1 but for the ceiling). */
  processes?: number;
}

/** Sums the per-thread CPU seconds of several processes by thread name. */
function threadCpuSeconds(pids: number[]): Record<string, number> {
  const total: Record<string, number> = {};
  for (const pid of pids) {
    for (const [name, seconds] of Object.entries(readThreadCpuSeconds(pid))) {
      total[name] = (total[name] ?? 0) + seconds;
    }
  }
  return total;
}

async function measure(
  point: Point,
  mongrel2: { url: string; sendSpec: string; recvSpec: string; pid: number },
  seconds: number,
): Promise<Run> {
  const { label, app, workers, connections, processes = 1 } = point;
  const m2fetches: ServerProcess[] = [];
  const cpuEach = () => m2fetches.map((process) => readCpuSeconds(process.pid));
  const pids = () => m2fetches.map((process) => process.pid);
  try {
    for (let started = 0; started < processes; started++) {
      m2fetches.push(spawnDeno([
        "run",
        "-A",
        "cli.ts",
        "--quiet",
        "--workers",
        String(workers),
        "--send-spec",
        mongrel2.sendSpec,
        "--recv-spec",
        mongrel2.recvSpec,
        app,
      ]));
    }
    for (const process of m2fetches) {
      await waitForOk(`${mongrel2.url}/`, { process });
    }
    await runWrk({ url: `${mongrel2.url}/`, connections: 16, seconds: 2 });
    const cpuBefore = cpuEach();
    const mongrel2Before = readCpuSeconds(mongrel2.pid);
    const threadsBefore = threadCpuSeconds(pids());
    const machineBefore = readMachineBusySeconds();
    const wrk = await runWrk({
      url: `${mongrel2.url}/`,
      connections,
      seconds,
    });
    const used = cpuEach().map((seconds, index) => seconds - cpuBefore[index]);
    const cpu = used.reduce((sum, seconds) => sum + seconds, 0);
    const mongrel2Cpu = readCpuSeconds(mongrel2.pid) - mongrel2Before;
    const machineCpu = readMachineBusySeconds() - machineBefore;
    const threads = threadDelta(threadsBefore, threadCpuSeconds(pids()));
    // mongrel2 pushes round-robin to the processes connected when a request
    // comes: one that connected late would leave the others all the work.
    if (Math.min(...used) < cpu / processes / 2) {
      throw new Error(
        `${label}: the processes' CPU is uneven (${
          used.map((seconds) => seconds.toFixed(1)).join(" s, ")
        } s): one was not taking requests`,
      );
    }
    if (wrk.socketErrors > 0 || wrk.non2xx > 0) {
      throw new Error(
        `${label}: ${wrk.socketErrors} socket errors, ${wrk.non2xx} non-2xx`,
      );
    }
    return { label, wrk, cpu, mongrel2Cpu, machineCpu, threads };
  } finally {
    for (const process of m2fetches) await process.stop();
  }
}

function describe(run: Run, seconds: number): string {
  const threads = Object.entries(run.threads)
    .sort(([, a], [, b]) => b - a)
    .map(([name, used]) => `${name} ${(used / seconds * 100).toFixed(0)}%`)
    .join(", ");
  return `${run.label.padEnd(26)} ${
    run.wrk.requestsPerSecond.toFixed(0).padStart(7)
  } req/s  p50 ${run.wrk.p50Ms.toFixed(2).padStart(6)} ms  p99 ${
    run.wrk.p99Ms.toFixed(2).padStart(7)
  } ms  CPU ${(run.cpu / seconds * 100).toFixed(0)}% of one core (${
    (run.cpu / run.wrk.requests * 1e6).toFixed(0)
  } µs/request): ${threads}; mongrel2 ${
    (run.mongrel2Cpu / seconds * 100).toFixed(0)
  }%`;
}

/**
 * Where the machine's CPU went per request in a --workers 2 run, and what
 * that means for the 2-vs-1 ratio: the handler workers can only use what
 * the main thread, mongrel2, wrk and the kernel leave of the cores.
 */
function breakdown(run: Run, oneWorkerRate: number, seconds: number): string {
  const cores = navigator.hardwareConcurrency;
  const per = (cpuSeconds: number) => cpuSeconds / run.wrk.requests * 1e6;
  const workers = per(run.threads["worker-"] ?? 0);
  const machine = per(run.machineCpu);
  const m2fetchRest = per(run.cpu) - workers;
  const mongrel2 = per(run.mongrel2Cpu);
  const rest = machine - per(run.cpu) - mongrel2;
  // With every core busy, the rate is cores / (CPU per request).
  const ceiling = cores * 1e6 / (machine - m2fetchRest) / oneWorkerRate;
  const allowed = cores * 1e6 / (1.7 * oneWorkerRate) - workers;
  return [
    `machine CPU per request with --workers 2: ${machine.toFixed(0)} µs (${
      (run.machineCpu / seconds / cores * 100).toFixed(0)
    }% of ${cores} cores busy): handler workers ${
      workers.toFixed(0)
    } µs, the rest of m2fetch ${m2fetchRest.toFixed(0)} µs, mongrel2 ${
      mongrel2.toFixed(0)
    } µs, wrk and the kernel ${rest.toFixed(0)} µs`,
    `1.7x leaves ${
      allowed.toFixed(0)
    } µs per request for everything but the handler workers; with the rest of m2fetch at zero the ratio could reach ${
      ceiling.toFixed(2)
    }x`,
  ].join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "10" },
      tcp: { type: "boolean", default: false },
    },
  });
  const seconds = Number(values.seconds);
  const dir = await Deno.makeTempDir({ prefix: "m2wb-" });
  await Deno.writeTextFile(`${dir}/cpu_app.ts`, CPU_APP);
  // --tcp: the handler sockets on loopback TCP instead of unix sockets.
  const specs = values.tcp
    ? {
      sendSpec: `tcp://127.0.0.1:${await findFreePort()}`,
      recvSpec: `tcp://127.0.0.1:${await findFreePort()}`,
    }
    : {};
  const mongrel2 = await startMongrel2({
    dir,
    handlers: [{ route: "/", protocol: "tnetstring", ...specs }],
  });
  const [route] = mongrel2.handlers;
  const site = {
    url: mongrel2.url,
    sendSpec: route.sendSpec,
    recvSpec: route.recvSpec,
    pid: mongrel2.pid,
  };
  console.log(
    `workers bench: wrk -c 16, ${seconds} s per point, handler sockets on ${
      values.tcp ? "tcp" : "ipc"
    }, ${navigator.hardwareConcurrency} CPUs; the CPU handler sorts 15 000 doubles per request`,
  );
  const runs: Run[] = [];
  try {
    const hello = `${REPO_ROOT}/examples/hello.ts`;
    const cpuApp = `${dir}/cpu_app.ts`;
    const plan: Point[] = [
      { label: CPU_ONE, app: cpuApp, workers: 1, connections: 16 },
      { label: CPU_TWO, app: cpuApp, workers: 2, connections: 16 },
      {
        label: "cpu 1 ms, --workers 0",
        app: cpuApp,
        workers: 0,
        connections: 16,
      },
      {
        label: CPU_CEILING,
        app: cpuApp,
        workers: 0,
        connections: 16,
        processes: 2,
      },
      { label: "hello, --workers 0", app: hello, workers: 0, connections: 16 },
      { label: "hello, --workers 1", app: hello, workers: 1, connections: 16 },
      {
        label: "hello, --workers 0, -c 1",
        app: hello,
        workers: 0,
        connections: 1,
      },
      {
        label: "hello, --workers 1, -c 1",
        app: hello,
        workers: 1,
        connections: 1,
      },
    ];
    for (const point of plan) {
      const run = await measure(point, site, seconds);
      runs.push(run);
      console.log(describe(run, seconds));
      await delay(500);
    }
  } finally {
    await mongrel2.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const rate = (label: string) =>
    runs.find((run) => run.label === label)!.wrk.requestsPerSecond;
  const perRequest = (label: string, thread?: string) => {
    const run = runs.find((r) => r.label === label)!;
    const cpu = thread === undefined ? run.cpu : run.threads[thread] ?? 0;
    return cpu / run.wrk.requests * 1e6;
  };
  const ratio = rate(CPU_TWO) / rate(CPU_ONE);
  const ceiling = rate(CPU_CEILING) / rate(CPU_ONE);
  console.log(
    `\nCPU handler, --workers 2 / --workers 1: ${
      ratio.toFixed(2)
    }x (target >= 1.7 on 2 cores)`,
  );
  console.log(
    `two --workers 0 processes / --workers 1: ${
      ceiling.toFixed(2)
    }x, the most two handler threads reach here with no hop between threads at all; --workers 2 gets ${
      (ratio / ceiling * 100).toFixed(0)
    }% of it`,
  );
  console.log(breakdown(
    runs.find((run) => run.label === CPU_TWO)!,
    rate(CPU_ONE),
    seconds,
  ));
  console.log(
    `hello, --workers 1 / --workers 0: ${
      (rate("hello, --workers 1") / rate("hello, --workers 0")).toFixed(2)
    }x the requests/s; the worker hop costs ${
      (perRequest("hello, --workers 1") - perRequest("hello, --workers 0"))
        .toFixed(0)
    } µs of CPU per request`,
  );
  const mainThread = (label: string) => perRequest(label, "main").toFixed(0);
  console.log(
    `the main thread's CPU per request, hello with --workers 0 / 1: ${
      mainThread("hello, --workers 0")
    } / ${mainThread("hello, --workers 1")} µs at wrk -c 16, ${
      mainThread("hello, --workers 0, -c 1")
    } / ${
      mainThread("hello, --workers 1, -c 1")
    } µs at -c 1 (one request at a time: no wake-up is shared, as behind a CPU-bound handler)`,
  );
}

if (import.meta.main) await main();
