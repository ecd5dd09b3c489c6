/**
 * Helpers for the command-line tests: run `cli.ts` once or as a long-lived
 * subprocess, run mongrel2 from a `config.sqlite` made by `m2sh load`, and
 * poll for conditions.
 *
 * @module
 */

import { findFreePort } from "../../runtime/mongrel2/mod.ts";

/** The repository root (absolute, no trailing slash). */
export const ROOT: string = new URL("../..", import.meta.url).pathname.replace(
  /\/$/,
  "",
);

/** The repository's `cli.ts`. */
export const CLI = `${ROOT}/cli.ts`;

const decoder = new TextDecoder();

/**
 * Resolves after `ms` milliseconds.
 *
 * @param ms The delay.
 * @returns A promise.
 *
 * @example
 * ```ts
 * import { delay } from "./helpers.ts";
 * await delay(1);
 * ```
 */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `condition` every 20 ms until it holds or `timeoutMs` passes.
 *
 * @param condition What to wait for.
 * @param timeoutMs The longest wait.
 * @returns Whether it held in time.
 *
 * @example
 * ```ts
 * import { waitFor } from "./helpers.ts";
 * console.assert(await waitFor(() => true, 10));
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
 * Runs `deno run -A cli.ts ARGS` to completion.
 *
 * @param args The arguments.
 * @param cwd The working directory. Default: the repository root.
 * @returns Exit code and output.
 *
 * @example
 * ```ts ignore
 * import { runCli } from "./helpers.ts";
 * const { code, stdout } = await runCli(["--version"]);
 * ```
 */
export async function runCli(
  args: string[],
  cwd = ROOT,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/**
 * A long-running `cli.ts` subprocess.
 *
 * @example
 * ```ts ignore
 * import { spawnCli } from "./helpers.ts";
 * await using cli = await spawnCli(["examples/hello.ts"], " serving ");
 * console.log(cli.output());
 * ```
 */
export interface CliProcess extends AsyncDisposable {
  /** The child process. */
  readonly child: Deno.ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Waits until the output contains `text` (or throws with the output). */
  waitForOutput(text: string | RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM (SIGKILL after 15 s); resolves with the exit status. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * Starts `deno run ARGS` (permissions included in `runArgs`) and resolves
 * once its output contains `ready`.
 *
 * @param runArgs Arguments after `deno run`.
 * @param ready Text that shows the process is serving.
 * @param cwd The working directory. Default: the repository root.
 * @returns The running process.
 *
 * @example
 * ```ts ignore
 * import { CLI, spawnDeno } from "./helpers.ts";
 * await using cli = await spawnDeno(["-A", CLI, "app.ts"], " serving ");
 * ```
 */
export async function spawnDeno(
  runArgs: string[],
  ready: string | RegExp,
  cwd = ROOT,
): Promise<CliProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...runArgs],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const streamDecoder = new TextDecoder();
    for await (const chunk of stream) {
      text += streamDecoder.decode(chunk, { stream: true });
      if (Deno.env.get("M2FETCH_TEST_LOG") === "1") {
        Deno.stderr.writeSync(chunk);
      }
    }
  };
  const pumped = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let exited: Deno.CommandStatus | null = null;
  const status = child.status.then((result) => exited = result);
  let stopping: Promise<Deno.CommandStatus> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      if (exited === null) {
        try {
          child.kill("SIGTERM");
        } catch {
          // Exited meanwhile.
        }
        const done = await Promise.race([
          status,
          delay(15_000).then(() => null),
        ]);
        if (done === null) child.kill("SIGKILL");
      }
      const result = await status;
      await pumped;
      return result;
    })();
  const matches = (pattern: string | RegExp) =>
    typeof pattern === "string" ? text.includes(pattern) : pattern.test(text);
  const waitForOutput = async (
    pattern: string | RegExp,
    timeoutMs = 30_000,
  ) => {
    const ok = await waitFor(
      () => matches(pattern) || exited !== null,
      timeoutMs,
    );
    if (!ok || !matches(pattern)) {
      throw new Error(
        `Expected ${pattern} in the output of deno run ${runArgs.join(" ")}${
          exited !== null ? ` (it exited with ${exited.code})` : ""
        }:\n${text}`,
      );
    }
  };
  try {
    await waitForOutput(ready);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    child,
    output: () => text,
    waitForOutput,
    stop,
    [Symbol.asyncDispose]: async () => void await stop(),
  };
}

/**
 * Starts `deno run -A cli.ts ARGS` and resolves once it logs that it serves.
 *
 * @param args The CLI arguments.
 * @param ready Text that shows it is serving. Default `" serving "`.
 * @param cwd The working directory. Default: the repository root.
 * @returns The running process.
 *
 * @example
 * ```ts ignore
 * import { spawnCli } from "./helpers.ts";
 * await using cli = await spawnCli(["--app-path", "/srv/app"]);
 * ```
 */
export function spawnCli(
  args: string[],
  ready: string | RegExp = " serving ",
  cwd = ROOT,
): Promise<CliProcess> {
  return spawnDeno(["-A", CLI, ...args], ready, cwd);
}

/**
 * A mongrel2 started from a database, as `m2sh start` would.
 *
 * @example
 * ```ts ignore
 * import { runMongrel2 } from "./helpers.ts";
 * await using m2 = await runMongrel2("/srv/site", "uuid", 6767, []);
 * ```
 */
export interface RunningMongrel2 extends AsyncDisposable {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** Sends SIGINT and waits for the exit (SIGKILL after 5 s). */
  stop(): Promise<void>;
}

/**
 * Runs `mongrel2 config.sqlite UUID` in `dir` and resolves once the port
 * accepts connections and the given socket files exist.
 *
 * @param dir The directory holding config.sqlite (mongrel2's cwd).
 * @param uuid The server uuid.
 * @param port The HTTP port.
 * @param sockets Socket files (real paths) to wait for.
 * @returns The running mongrel2.
 *
 * @example
 * ```ts ignore
 * import { runMongrel2 } from "./helpers.ts";
 * await using m2 = await runMongrel2(dir, uuid, port, [`${dir}/run/send`]);
 * ```
 */
export async function runMongrel2(
  dir: string,
  uuid: string,
  port: number,
  sockets: string[],
): Promise<RunningMongrel2> {
  const child = new Deno.Command("mongrel2", {
    args: ["config.sqlite", uuid],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { LOGNAME: Deno.env.get("LOGNAME") ?? "root" },
  }).spawn();
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk);
  };
  const pumped = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let exited = false;
  const status = child.status.then((result) => {
    exited = true;
    return result;
  });
  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGINT");
      } catch {
        // Gone.
      }
      const done = await Promise.race([status, delay(5000).then(() => null)]);
      if (done === null) child.kill("SIGKILL");
    }
    await status;
    await pumped;
  };
  const ready = await waitFor(async () => {
    if (exited) return true;
    for (const socket of sockets) {
      const info = await Deno.stat(socket).catch(() => null);
      if (info === null || !info.isSocket) return false;
    }
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    } catch {
      return false;
    }
  }, 10_000);
  if (!ready || exited) {
    await stop();
    throw new Error(`mongrel2 in ${dir} did not start:\n${text}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Runs `m2sh load -config mongrel2.conf -db config.sqlite` in `dir`.
 *
 * @param dir The directory holding mongrel2.conf.
 * @returns m2sh's output.
 * @throws {Error} When m2sh fails.
 *
 * @example
 * ```ts ignore
 * import { m2shLoad } from "./helpers.ts";
 * await m2shLoad("/srv/site");
 * ```
 */
export async function m2shLoad(dir: string): Promise<string> {
  const output = await new Deno.Command("m2sh", {
    args: ["load", "-config", "mongrel2.conf", "-db", "config.sqlite"],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { LOGNAME: Deno.env.get("LOGNAME") ?? "root" },
  }).output();
  const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
  if (!output.success) throw new Error(`m2sh load failed in ${dir}:\n${text}`);
  return text;
}

/**
 * A fresh temp dir with a short name (ipc paths must fit in 107 bytes),
 * removed on dispose.
 *
 * @param prefix The name prefix.
 * @returns The directory (symlinks resolved) and its disposer.
 *
 * @example
 * ```ts ignore
 * import { tempDir } from "./helpers.ts";
 * await using tmp = await tempDir("m2t-");
 * console.log(tmp.path);
 * ```
 */
export async function tempDir(
  prefix: string,
): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.realPath(await Deno.makeTempDir({ prefix }));
  return {
    path,
    [Symbol.asyncDispose]: () =>
      Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

export { findFreePort };
