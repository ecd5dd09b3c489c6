/**
 * The processes the end-to-end benchmarks run and watch: m2fetch as the
 * `cli.ts` subprocess, `deno serve`, curl downloads, and what `/proc` says
 * about a process's memory and CPU time.
 *
 * @module
 */

/** The repository root (where `cli.ts` is). */
export const REPO_ROOT: string = new URL("..", import.meta.url).pathname
  .replace(/\/$/, "");

/** A server process started by {@linkcode spawnM2fetch} or {@linkcode spawnDenoServe}. */
export interface ServerProcess {
  /** The process id (the deno process itself, no wrapper). */
  readonly pid: number;
  /** Resolves once the process has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  /** The last few KiB the process wrote to stderr. */
  stderrTail(): string;
  /** SIGTERM, then SIGKILL after `timeoutMs` (default 5000); idempotent. */
  stop(timeoutMs?: number): Promise<void>;
}

const live = new Set<Deno.ChildProcess>();
let unloadHooked = false;

// A benchmark interrupted half-way must not leave servers behind.
function track(child: Deno.ChildProcess): void {
  live.add(child);
  child.status.then(() => live.delete(child));
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const running of live) {
      try {
        running.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  });
}

/**
 * Starts `deno ARGS` in the repository root with stderr kept for errors.
 *
 * @param args The deno arguments, e.g. `["run", "-A", "bench/zmq_floor.ts"]`.
 * @returns The running process.
 */
export function spawnDeno(args: string[]): ServerProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  track(child);
  let tail = "";
  const drained = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of child.stderr) {
        tail = (tail + decoder.decode(chunk, { stream: true })).slice(-8192);
      }
    } catch {
      // A closed pipe only shortens the tail.
    }
  })();
  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid,
    status: child.status,
    stderrTail: () => tail,
    stop(timeoutMs = 5000) {
      stopping ??= (async () => {
        signal(child, "SIGTERM");
        const timer = setTimeout(() => signal(child, "SIGKILL"), timeoutMs);
        try {
          await child.status;
        } finally {
          clearTimeout(timer);
        }
        await drained;
      })();
      return stopping;
    },
  };
}

function signal(child: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    child.kill(name);
  } catch {
    // It exited already.
  }
}

/** How to start m2fetch. */
export interface M2fetchOptions {
  /** The handler module, relative to the repository root. */
  app: string;
  /** mongrel2's `send_spec`. */
  sendSpec: string;
  /** mongrel2's `recv_spec`. */
  recvSpec: string;
  /** Extra arguments for `deno run`, before `cli.ts` (e.g. `--cpu-prof`). */
  denoArgs?: string[];
}

/**
 * Starts `deno run -A cli.ts --quiet --send-spec S --recv-spec R
 * --flow-control on APP` (the bench's mongrel2 counts credits, and each
 * m2fetch it starts meets keep-alive connections the last one served).
 *
 * @param options The app, endpoints and extra deno flags.
 * @returns The running process.
 */
export function spawnM2fetch(options: M2fetchOptions): ServerProcess {
  return spawnDeno([
    "run",
    "-A",
    ...(options.denoArgs ?? []),
    "cli.ts",
    "--quiet",
    "--send-spec",
    options.sendSpec,
    "--recv-spec",
    options.recvSpec,
    "--flow-control",
    "on",
    options.app,
  ]);
}

/**
 * Starts `deno serve --port PORT --host 127.0.0.1 APP`.
 *
 * @param app The module, relative to the repository root.
 * @param port A free port.
 * @returns The running process.
 */
export function spawnDenoServe(app: string, port: number): ServerProcess {
  return spawnDeno([
    "serve",
    "--port",
    String(port),
    "--host",
    "127.0.0.1",
    app,
  ]);
}

/**
 * Fetches `url` until it answers 200, then reads the body.
 *
 * Requests sent to mongrel2 before m2fetch is connected wait in mongrel2's
 * queue and are answered once it is, so the first attempt normally is the
 * one served; connection errors (a `deno serve` not yet listening) retry.
 *
 * @param url The URL.
 * @param options `timeoutMs` (default 15 000) and the `process` whose exit
 * ends the wait early.
 * @throws {Error} On timeout, or when the process exits first.
 */
export async function waitForOk(
  url: string,
  options: { timeoutMs?: number; process?: ServerProcess } = {},
): Promise<void> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 15_000);
  const exit = new AbortController();
  options.process?.status.then(() =>
    exit.abort(
      new Error(
        `The server exited before answering ${url}:\n${options.process?.stderrTail()}`,
      ),
    )
  );
  const signal = AbortSignal.any([timeout, exit.signal]);
  let last = "no attempt";
  while (!signal.aborted) {
    try {
      const response = await fetch(url, { signal });
      await response.arrayBuffer();
      if (response.ok) return;
      last = `status ${response.status}`;
    } catch (error) {
      if (exit.signal.aborted) throw exit.signal.reason;
      last = (error as Error).message;
    }
    await delay(5);
  }
  if (exit.signal.aborted) throw exit.signal.reason;
  throw new Error(`No 200 from ${url} in time (last: ${last})`);
}

/** Memory of a process from `/proc/PID/status`, in bytes. */
export interface MemoryStatus {
  /** `VmRSS`: resident now. */
  rss: number;
  /** `VmHWM`: the most ever resident. */
  hwm: number;
}

/**
 * Reads `VmRSS` and `VmHWM` of a process.
 *
 * @param pid The process id.
 * @returns Both, in bytes.
 */
export function readMemory(pid: number): MemoryStatus {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
    if (match === null) throw new Error(`No ${name} for pid ${pid}`);
    return Number(match[1]) * 1024;
  };
  return { rss: kib("VmRSS"), hwm: kib("VmHWM") };
}

const CLOCK_TICKS = 100;

/**
 * Returns the CPU time a process has used so far (user + system), from
 * `/proc/PID/stat`, with the 10 ms resolution of the kernel's clock ticks.
 *
 * @param pid The process id.
 * @param procDir Where its `stat` is (a thread's `/proc/PID/task/TID`).
 * @returns Seconds.
 */
export function readCpuSeconds(
  pid: number,
  procDir = `/proc/${pid}`,
): number {
  const stat = Deno.readTextFileSync(`${procDir}/stat`);
  // The command name (field 2) may hold spaces; count from after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * Returns the CPU seconds the whole machine has spent busy (every state
 * but idle and I/O wait, summed over all CPUs) since boot, from
 * `/proc/stat`: the difference between two readings is what every
 * process, the load generator and the kernel used in between.
 *
 * @returns Busy CPU seconds.
 *
 * @example Usage
 * ```ts ignore
 * import { readMachineBusySeconds } from "./processes.ts";
 * const before = readMachineBusySeconds();
 * // ... load ...
 * console.log(`${(readMachineBusySeconds() - before).toFixed(2)} CPU s`);
 * ```
 */
export function readMachineBusySeconds(): number {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  // cpu user nice system idle iowait irq softirq steal ...
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = ticks;
  return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS;
}

/**
 * Returns the CPU time of each live thread of a process, summed by thread
 * name (`main` for the process's own thread; numbered names such as
 * `ZMQbg/IO/0` lose their number). Threads that already exited are not
 * listed: their time only shows in {@linkcode readCpuSeconds}.
 *
 * @param pid The process id.
 * @returns Seconds per thread name.
 */
export function readThreadCpuSeconds(pid: number): Record<string, number> {
  const seconds: Record<string, number> = {};
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    let comm: string;
    try {
      comm = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/comm`)
        .trim();
    } catch {
      continue; // The thread ended meanwhile.
    }
    const name = task.name === String(pid) ? "main" : comm.replace(/\d+$/, "");
    try {
      seconds[name] = (seconds[name] ?? 0) +
        readCpuSeconds(Number(task.name), `/proc/${pid}/task/${task.name}`);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return seconds;
}

/** A download measured by curl. */
export interface Download {
  /** HTTP status. */
  status: number;
  /** Body bytes received. */
  bytes: number;
  /** Seconds from start to the last byte. */
  seconds: number;
}

/**
 * Downloads `url` with `curl -o /dev/null`, as fast as the server sends.
 *
 * @param url The URL.
 * @returns Status, size and time as curl measured them.
 * @throws {Error} When curl fails.
 */
export async function curlDownload(url: string): Promise<Download> {
  const result = await new Deno.Command("curl", {
    args: [
      "--silent",
      "--show-error",
      "--output",
      "/dev/null",
      "--write-out",
      "%{http_code} %{size_download} %{time_total}",
      url,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!result.success) {
    throw new Error(
      `curl ${url} failed (exit ${result.code}): ${
        decoder.decode(result.stderr)
      }`,
    );
  }
  const [status, bytes, seconds] = decoder.decode(result.stdout).trim().split(
    " ",
  ).map(Number);
  return { status, bytes, seconds };
}

/**
 * Waits.
 *
 * @param ms Milliseconds.
 * @returns A promise that resolves after `ms`.
 */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs a command and returns its trimmed stdout, or `fallback` when it
 * cannot run or fails.
 *
 * @param command The program.
 * @param args Its arguments.
 * @param fallback What to return on failure.
 * @param anyExit Use the output whatever the exit code (`wrk -v` exits 1).
 * @returns The output (stdout and stderr).
 */
export async function commandOutput(
  command: string,
  args: string[],
  fallback = "unknown",
  anyExit = false,
): Promise<string> {
  try {
    const result = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    const text = (decoder.decode(result.stdout) + decoder.decode(result.stderr))
      .trim();
    return (result.success || anyExit) && text !== "" ? text : fallback;
  } catch {
    return fallback;
  }
}
