/**
 * Profiles the m2fetch process under load and prints where its time goes.
 *
 * Starts a private mongrel2, runs m2fetch (`deno run --cpu-prof -A cli.ts`)
 * behind it, loads it, stops it with SIGTERM (which writes the profile) and
 * summarises the `.cpuprofile`: top functions by self time, m2fetch's own
 * functions by inclusive time, and self time by area.
 *
 * ```sh
 * deno run -A bench/profile.ts                      # hello world, wrk -c64 for 10 s
 * deno run -A bench/profile.ts --scenario stream    # 1 GiB streamed to curl
 * deno run -A bench/profile.ts --keep DIR           # keep the .cpuprofile in DIR
 * ```
 *
 * The profile covers the whole process lifetime, start-up included (about
 * 0.3 s of it); V8's sampler adds some overhead of its own.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startMongrel2 } from "../runtime/mongrel2/mod.ts";
import {
  type CpuProfile,
  type ProfileEntry,
  summarizeProfile,
} from "./cpuprofile.ts";
import {
  curlDownload,
  readCpuSeconds,
  readThreadCpuSeconds,
  REPO_ROOT,
  spawnM2fetch,
  waitForOk,
} from "./processes.ts";
import { runWrk } from "./wrk.ts";

const USAGE = `deno run -A bench/profile.ts [options]

Options:
  --scenario NAME   hello (examples/hello.ts under wrk) or stream (1 GiB of
                    bench/stream_app.ts to curl); default hello
  --seconds S       wrk duration for hello (default 10)
  --connections N   wrk connections for hello (default 64)
  --stream-mib N    streamed size for stream (default 1024)
  --top N           rows per table (default 25)
  --keep DIR        copy the .cpuprofile into DIR
`;

function formatEntries(title: string, entries: ProfileEntry[]): string {
  const lines = [
    `${title}`,
    "| ms | share | function |",
    "| --: | --: | :-- |",
  ];
  for (const entry of entries) {
    lines.push(
      `| ${entry.ms.toFixed(0)} | ${(entry.share * 100).toFixed(1)}% | \`${
        entry.label.replaceAll("|", "\\|")
      }\` |`,
    );
  }
  return lines.join("\n");
}

function perUnit(seconds: number, units: number): string {
  return ((seconds / units) * 1e6).toFixed(1);
}

const PERF_EVENTS = [
  "syscalls:sys_enter_clone3",
  "syscalls:sys_enter_poll",
  "syscalls:sys_enter_getpid",
  "syscalls:sys_enter_epoll_wait",
  "context-switches",
];

/**
 * Counts thread spawns, polls and context switches of a process with
 * `perf stat` until `stop()`, or returns null when perf cannot run.
 */
function startPerfStat(
  pid: number,
): { stop(): Promise<Record<string, number> | null> } | null {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("perf", {
      args: ["stat", "-x,", "-e", PERF_EVENTS.join(","), "-p", String(pid)],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch {
    return null;
  }
  return {
    async stop() {
      try {
        child.kill("SIGINT");
      } catch {
        // perf already exited (e.g. no permission for tracepoints).
      }
      const output = await child.output();
      const counts: Record<string, number> = {};
      for (const line of new TextDecoder().decode(output.stderr).split("\n")) {
        const fields = line.split(",");
        if (fields.length < 3 || !/^\d+$/.test(fields[0])) continue;
        counts[fields[2].replace("syscalls:sys_enter_", "")] = Number(
          fields[0],
        );
      }
      return Object.keys(counts).length > 0 ? counts : null;
    },
  };
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      scenario: { type: "string", default: "hello" },
      seconds: { type: "string", default: "10" },
      connections: { type: "string", default: "64" },
      "stream-mib": { type: "string", default: "1024" },
      top: { type: "string", default: "25" },
      keep: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const scenario = values.scenario;
  if (scenario !== "hello" && scenario !== "stream") {
    console.error(`profile: unknown scenario "${scenario}"\n\n${USAGE}`);
    return 2;
  }
  const dir = await Deno.makeTempDir({ prefix: "m2prof" });
  try {
    await using mongrel2 = await startMongrel2({
      dir,
      handlers: [{ route: "/", protocol: "tnetstring" }],
    });
    const [handler] = mongrel2.handlers;
    const profileDir = `${dir}/profile`;
    const app = spawnM2fetch({
      app: scenario === "hello" ? "examples/hello.ts" : "bench/stream_app.ts",
      sendSpec: handler.sendSpec,
      recvSpec: handler.recvSpec,
      denoArgs: ["--cpu-prof", `--cpu-prof-dir=${profileDir}`],
    });
    let load: string;
    let cpu: { m2fetch: number; mongrel2: number };
    let unit: string;
    let units: number;
    const threads: Record<string, number> = {};
    let syscalls: Record<string, number> | null = null;
    try {
      const warmUrl = scenario === "hello"
        ? `${mongrel2.url}/`
        : `${mongrel2.url}/stream/1048576`;
      await waitForOk(warmUrl, { process: app });
      const counter = startPerfStat(app.pid);
      const threadsBefore = readThreadCpuSeconds(app.pid);
      const before = {
        m2fetch: readCpuSeconds(app.pid),
        mongrel2: readCpuSeconds(mongrel2.pid),
      };
      if (scenario === "hello") {
        const connections = Number(values.connections);
        const seconds = Number(values.seconds);
        console.error(
          `profile: wrk -c${connections} -d${seconds}s against m2fetch`,
        );
        const result = await runWrk({
          url: `${mongrel2.url}/`,
          connections,
          seconds,
        });
        unit = "request";
        units = result.requests;
        load = `wrk -c${connections} -d${seconds}s: ${
          result.requestsPerSecond.toFixed(0)
        } requests/s, ${result.requests} requests, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms`;
      } else {
        const bytes = Number(values["stream-mib"]) * 1024 * 1024;
        console.error(`profile: curl ${bytes} bytes from m2fetch`);
        const download = await curlDownload(
          `${mongrel2.url}/stream/${bytes}`,
        );
        unit = "MiB";
        units = download.bytes / 2 ** 20;
        load = `curl ${download.bytes} bytes in ${
          download.seconds.toFixed(2)
        } s (${
          (download.bytes / download.seconds / 2 ** 20).toFixed(0)
        } MiB/s)`;
      }
      cpu = {
        m2fetch: readCpuSeconds(app.pid) - before.m2fetch,
        mongrel2: readCpuSeconds(mongrel2.pid) - before.mongrel2,
      };
      const threadsAfter = readThreadCpuSeconds(app.pid);
      for (const [name, seconds] of Object.entries(threadsAfter)) {
        threads[name] = seconds - (threadsBefore[name] ?? 0);
      }
      syscalls = await counter?.stop() ?? null;
    } finally {
      await app.stop();
    }
    const files = [...Deno.readDirSync(profileDir)].filter((entry) =>
      entry.name.endsWith(".cpuprofile")
    );
    if (files.length === 0) {
      throw new Error(`m2fetch wrote no .cpuprofile:\n${app.stderrTail()}`);
    }
    const path = `${profileDir}/${files[0].name}`;
    if (values.keep !== undefined) {
      await Deno.mkdir(values.keep, { recursive: true });
      await Deno.copyFile(
        path,
        `${values.keep}/m2fetch-${scenario}.cpuprofile`,
      );
    }
    const profile = JSON.parse(await Deno.readTextFile(path)) as CpuProfile;
    const summary = summarizeProfile(profile, {
      root: REPO_ROOT,
      top: Number(values.top),
    });
    console.log(
      [
        `# m2fetch CPU profile: ${scenario}`,
        "",
        `Load: ${load}. CPU during the load: m2fetch ${
          cpu.m2fetch.toFixed(2)
        } s, mongrel2 ${cpu.mongrel2.toFixed(2)} s.`,
        `Sampled ${(summary.totalMs / 1000).toFixed(2)} s of the main thread, ${
          (summary.idleMs / 1000).toFixed(2)
        } s of it idle. Shares are of all sampled time.`,
        "",
        `Per ${unit} (${units.toFixed(0)} ${unit}s): m2fetch ${
          perUnit(cpu.m2fetch, units)
        } µs CPU, mongrel2 ${
          perUnit(cpu.mongrel2, units)
        } µs. By live thread: ${
          Object.entries(threads).filter(([, seconds]) => seconds > 0).map((
            [name, seconds],
          ) => `${name} ${perUnit(seconds, units)} µs`).join(", ")
        } (threads that ended during the load are in the total only).`,
        syscalls === null
          ? "(perf not available: no syscall counts.)"
          : `perf stat, per ${unit}: ${
            Object.entries(syscalls).map(([name, count]) =>
              `${name} ${(count / units).toFixed(2)}`
            ).join(", ")
          }.`,
        "",
        formatEntries("Self time by area:", summary.areas),
        "",
        formatEntries("Top functions by self time:", summary.self),
        "",
        formatEntries(
          "m2fetch functions by inclusive time (callees included):",
          summary.inclusive,
        ),
        "",
      ].join("\n"),
    );
    return 0;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
