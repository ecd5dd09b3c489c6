/**
 * Child processes for the tests: `deno run …` (usually `cli.ts`) as a
 * subprocess whose stdout and stderr are captured, waited on for a line,
 * signalled and stopped ({@linkcode spawnDeno}, {@linkcode spawnCli},
 * {@linkcode spawnM2fetch}, {@linkcode startM2fetch}), `cli.ts` run to
 * completion ({@linkcode runCli}, {@linkcode runCommand}), and the small
 * polling helpers they use ({@linkcode waitFor}, {@linkcode delay}).
 *
 * Every test that runs m2fetch as a process goes through
 * {@linkcode spawnDeno}, so output capture, echoing and the SIGTERM →
 * SIGKILL escalation behave the same everywhere.
 *
 * @example
 * ```ts ignore
 * import { spawnCli } from "./subprocess.ts";
 * await using cli = await spawnCli(["examples/hello.ts"]);
 * console.log(cli.output());
 * ```
 *
 * @module
 */

/** The repository root (absolute, no trailing slash). */
export const ROOT: string = new URL("..", import.meta.url).pathname.replace(
  /\/$/,
  "",
);

/** The repository's `cli.ts`. */
export const CLI = `${ROOT}/cli.ts`;

/** The `deno` executable running these tests. */
export const DENO: string = Deno.execPath();

/** How much output a process started with `keepOutput: false` keeps. */
const OUTPUT_TAIL = 20_000;

/** How long `stop()` waits after its signal before it sends SIGKILL. */
const KILL_AFTER_MS = 15_000;

/**
 * Resolves after `ms` milliseconds.
 *
 * @param ms The delay.
 * @returns A promise.
 *
 * @example
 * ```ts
 * import { delay } from "./subprocess.ts";
 * await delay(1);
 * ```
 */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Settles like `promise`, or with `fallback` if `ms` pass first. The timer
 * is cleared either way: a `delay()` raced against a promise stays pending
 * after the test, which the op sanitizer reports.
 *
 * @param promise What to wait for.
 * @param ms The longest wait.
 * @param fallback The value when time runs out.
 * @returns The promise's value, or `fallback`.
 *
 * @example
 * ```ts
 * import { within } from "./subprocess.ts";
 * console.assert(await within(new Promise(() => {}), 1, "late") === "late");
 * ```
 */
export async function within<T, U>(
  promise: Promise<T>,
  ms: number,
  fallback: U,
): Promise<T | U> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<U>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Settles like `promise`, or rejects with an error saying `why()` if `ms`
 * pass first (built on {@linkcode within}, so its timer is cleared too).
 *
 * @param promise What to wait for.
 * @param ms The longest wait.
 * @param why What was being waited for, for the error message.
 * @returns The promise's value.
 * @throws {Error} When time runs out.
 *
 * @example
 * ```ts
 * import { withDeadline } from "./subprocess.ts";
 * console.assert(await withDeadline(Promise.resolve(1), 10, () => "one") === 1);
 * ```
 */
export async function withDeadline<T>(
  promise: Promise<T>,
  ms: number,
  why: () => string,
): Promise<T> {
  const timedOut = Symbol("timed out");
  const settled = await within(promise, ms, timedOut);
  if (settled === timedOut) throw new Error(why());
  return settled as T;
}

/**
 * Polls `condition` every 20 ms until it holds or `timeoutMs` passes.
 *
 * @param condition What to wait for (may be async).
 * @param timeoutMs The longest wait.
 * @returns Whether the condition held in time.
 *
 * @example
 * ```ts
 * import { waitFor } from "./subprocess.ts";
 * console.assert(await waitFor(() => true, 100));
 * ```
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) return false;
    await delay(20);
  }
  return true;
}

/**
 * Whether a process is alive (a zombie counts as gone).
 *
 * @param pid The process id.
 * @returns Whether it runs.
 *
 * @example
 * ```ts
 * import { isRunning } from "./subprocess.ts";
 * console.assert(isRunning(Deno.pid));
 * ```
 */
export function isRunning(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) [ZX]/.test(stat);
  } catch {
    return false;
  }
}

/**
 * What {@linkcode runCommand} returns.
 *
 * @example
 * ```ts
 * import type { CommandResult } from "./subprocess.ts";
 * const result: CommandResult = { code: 0, stdout: "", stderr: "" };
 * console.assert(result.code === 0);
 * ```
 */
export interface CommandResult {
  /** The exit code. */
  code: number;
  /** stdout, decoded as UTF-8. */
  stdout: string;
  /** stderr, decoded as UTF-8. */
  stderr: string;
}

/**
 * Runs a command to completion with stdin closed and its output captured.
 *
 * @param command The executable.
 * @param args Its arguments.
 * @param options Working directory and extra environment variables.
 * @returns Exit code and output.
 *
 * @example
 * ```ts ignore
 * import { runCommand } from "./subprocess.ts";
 * const { code, stdout } = await runCommand("curl", ["-sS", "http://x/"]);
 * ```
 */
export async function runCommand(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  const output = await new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * Runs `deno run -A cli.ts ARGS` to completion (with `NO_COLOR=1`).
 *
 * @param args The arguments.
 * @param cwd The working directory. Default: the repository root.
 * @returns Exit code and output.
 *
 * @example
 * ```ts ignore
 * import { runCli } from "./subprocess.ts";
 * const { code, stdout } = await runCli(["--version"]);
 * ```
 */
export function runCli(args: string[], cwd = ROOT): Promise<CommandResult> {
  return runCommand(DENO, ["run", "-A", CLI, ...args], {
    cwd,
    env: { NO_COLOR: "1" },
  });
}

/**
 * Options for {@linkcode spawnDeno} and the helpers built on it.
 *
 * @example
 * ```ts
 * import type { SpawnOptions } from "./subprocess.ts";
 * const options: SpawnOptions = { keepOutput: false };
 * console.assert(options.keepOutput === false);
 * ```
 */
export interface SpawnOptions {
  /** The working directory. Default: the repository root. */
  cwd?: string;
  /**
   * Echo the output to stderr. Default: when `M2FETCH_TEST_LOG=1` or
   * `M2FETCH_E2E_LOG=1`.
   */
  echo?: boolean;
  /**
   * Keep all output in memory (default), or only its last 20 000
   * characters (long runs).
   */
  keepOutput?: boolean;
  /**
   * A command that runs deno, like `["setpriv", …]`: deno's path and
   * arguments are appended to it.
   */
  wrapper?: string[];
}

/**
 * A `deno run` subprocess with its stdout and stderr captured together.
 *
 * @example
 * ```ts ignore
 * import { spawnDeno } from "./subprocess.ts";
 * await using child = spawnDeno(["-A", "cli.ts", "examples/hello.ts"]);
 * await child.waitForOutput(" serving ");
 * console.log((await child.stop()).code);
 * ```
 */
export interface Subprocess extends AsyncDisposable {
  /** The child process. */
  readonly process: Deno.ChildProcess;
  /** Resolves with the exit status once it exited and its output was read. */
  readonly status: Promise<Deno.CommandStatus>;
  /** stdout and stderr so far. */
  output(): string;
  /** Whether it has exited. */
  exited(): boolean;
  /**
   * Resolves `true` once the output matches; throws (with the output) when
   * the process exits or `timeoutMs` (default 30 s) passes first. The
   * `true` lets a caller write `assert.ok(await p.waitForOutput(…))`.
   */
  waitForOutput(pattern: string | RegExp, timeoutMs?: number): Promise<true>;
  /** Sends a signal (ignored once exited). */
  signal(signal: Deno.Signal): void;
  /**
   * Sends `signal` (default SIGTERM), SIGKILL after 15 s, and resolves with
   * the exit status once all output is read.
   */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

function wantsEcho(): boolean {
  return Deno.env.get("M2FETCH_TEST_LOG") === "1" ||
    Deno.env.get("M2FETCH_E2E_LOG") === "1";
}

/**
 * Starts `deno run RUN_ARGS` (permission flags included in `runArgs`)
 * with `NO_COLOR=1`; it does not wait for anything.
 *
 * @param runArgs The arguments after `deno run`.
 * @param options Working directory, echo, output retention.
 * @returns The running process.
 *
 * @example
 * ```ts ignore
 * import { CLI, spawnDeno } from "./subprocess.ts";
 * await using child = spawnDeno(["--allow-net", CLI, "--help"]);
 * console.log((await child.status).code, child.output());
 * ```
 */
export function spawnDeno(
  runArgs: string[],
  options: SpawnOptions = {},
): Subprocess {
  const [command, ...wrapperArgs] = [...options.wrapper ?? [], DENO];
  const child = new Deno.Command(command, {
    args: [...wrapperArgs, "run", ...runArgs],
    cwd: options.cwd ?? ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let text = "";
  const keep = options.keepOutput ?? true;
  const echo = options.echo ?? wantsEcho();
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      if (!keep && text.length > OUTPUT_TAIL) text = text.slice(-OUTPUT_TAIL);
      if (echo) Deno.stderr.writeSync(chunk);
    }
  };
  const pumped = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let exit: Deno.CommandStatus | null = null;
  const status = child.status.then(async (result) => {
    exit = result;
    await pumped;
    return result;
  });
  const signal = (name: Deno.Signal) => {
    if (exit !== null) return;
    try {
      child.kill(name);
    } catch {
      // Exited meanwhile.
    }
  };
  const matches = (pattern: string | RegExp) =>
    typeof pattern === "string" ? text.includes(pattern) : pattern.test(text);
  const waitForOutput = async (
    pattern: string | RegExp,
    timeoutMs = 30_000,
  ): Promise<true> => {
    await waitFor(() => matches(pattern) || exit !== null, timeoutMs);
    if (matches(pattern)) return true;
    const exited = exit === null ? "" : ` (it exited with ${exit.code})`;
    throw new Error(
      `Expected ${pattern} in the output of deno run ${
        runArgs.join(" ")
      }${exited}:\n${text}`,
    );
  };
  const stop = async (name: Deno.Signal = "SIGTERM") => {
    signal(name);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        signal("SIGKILL");
        resolve();
      }, KILL_AFTER_MS);
    });
    await Promise.race([status, killed]);
    clearTimeout(timer);
    return await status;
  };
  return {
    process: child,
    status,
    output: () => text,
    exited: () => exit !== null,
    waitForOutput,
    signal,
    stop,
    [Symbol.asyncDispose]: async () => void await stop(),
  };
}

/**
 * Waits until `process` printed `ready`; on failure stops it and throws
 * with its output.
 *
 * @param process A process from {@linkcode spawnDeno}.
 * @param ready What its output shows once it serves.
 * @param timeoutMs The longest wait. Default 30 s.
 * @returns The same process.
 *
 * @example
 * ```ts ignore
 * import { CLI, spawnDeno, whenReady } from "./subprocess.ts";
 * await using cli = await whenReady(
 *   spawnDeno(["-A", CLI, "examples/hello.ts"]),
 *   " serving ",
 * );
 * ```
 */
export async function whenReady(
  process: Subprocess,
  ready: string | RegExp,
  timeoutMs?: number,
): Promise<Subprocess> {
  try {
    await process.waitForOutput(ready, timeoutMs);
  } catch (error) {
    await process.stop();
    throw error;
  }
  return process;
}

/**
 * Starts `deno run -A cli.ts ARGS` and resolves once its output shows
 * `ready`.
 *
 * @param args The CLI arguments.
 * @param ready What the output shows once it serves. Default `" serving "`.
 * @param options Working directory, echo, output retention.
 * @returns The running process.
 *
 * @example
 * ```ts ignore
 * import { spawnCli } from "./subprocess.ts";
 * await using cli = await spawnCli(["--app-path", "/srv/app"]);
 * ```
 */
export function spawnCli(
  args: string[],
  ready: string | RegExp = " serving ",
  options: SpawnOptions = {},
): Promise<Subprocess> {
  return whenReady(spawnDeno(["-A", CLI, ...args], options), ready);
}

/** The endpoints of a mongrel2 handler, as m2fetch's flags want them. */
export interface HandlerSpecs {
  /** The handler's send_spec (m2fetch's `--send-spec`). */
  readonly sendSpec: string;
  /** The handler's recv_spec (m2fetch's `--recv-spec`). */
  readonly recvSpec: string;
}

/**
 * Options for {@linkcode spawnM2fetch} and {@linkcode startM2fetch}.
 *
 * @example
 * ```ts
 * import type { M2fetchOptions } from "./subprocess.ts";
 * const options: M2fetchOptions = { args: ["--workers", "1"] };
 * console.assert(options.args?.length === 2);
 * ```
 */
export interface M2fetchOptions extends SpawnOptions {
  /** `deno run` permission flags. Default `["-A"]`. */
  permissions?: string[];
  /** Extra m2fetch flags (before the module). */
  args?: string[];
}

/**
 * Starts `deno run <permissions> cli.ts --send-spec … --recv-spec … ARGS
 * APP` against a handler's endpoints; it does not wait for anything (see
 * {@linkcode startM2fetch}).
 *
 * @param specs The handler endpoints (a site or a mongrel2 route).
 * @param app The handler module, absolute or relative to the repository root.
 * @param options Permissions, m2fetch flags, output handling.
 * @returns The running process.
 *
 * @example
 * ```ts ignore
 * import { spawnM2fetch } from "./subprocess.ts";
 * import { startSite } from "./site.ts";
 * await using site = await startSite();
 * await using m2fetch = spawnM2fetch(site, "examples/hello.ts");
 * await m2fetch.waitForOutput(" serving ");
 * ```
 */
export function spawnM2fetch(
  specs: HandlerSpecs,
  app: string,
  options: M2fetchOptions = {},
): Subprocess {
  return spawnDeno([
    ...(options.permissions ?? ["-A"]),
    CLI,
    "--send-spec",
    specs.sendSpec,
    "--recv-spec",
    specs.recvSpec,
    ...(options.args ?? []),
    app,
  ], options);
}

/**
 * {@linkcode spawnM2fetch}, then waits until m2fetch logged that it is
 * serving (so `args` must not hold `--quiet`, which drops that line).
 *
 * @param specs The handler endpoints.
 * @param app The handler module.
 * @param options Permissions, m2fetch flags, output handling.
 * @returns The serving process.
 *
 * @example
 * ```ts ignore
 * import { startM2fetch } from "./subprocess.ts";
 * import { startSite } from "./site.ts";
 * await using site = await startSite();
 * await using m2fetch = await startM2fetch(site, "examples/hello.ts", {
 *   args: ["--workers", "1"],
 * });
 * ```
 */
export function startM2fetch(
  specs: HandlerSpecs,
  app: string,
  options: M2fetchOptions = {},
): Promise<Subprocess> {
  return whenReady(spawnM2fetch(specs, app, options), " serving ");
}
