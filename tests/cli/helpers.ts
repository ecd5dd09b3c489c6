/**
 * Helpers for the command-line tests: run mongrel2 from a `config.sqlite`
 * made by `m2sh load`; running `cli.ts` (once or as a long-lived
 * subprocess), temp dirs and polling come from `tests/subprocess.ts` and
 * `tests/site.ts`, re-exported here.
 *
 * @module
 */

import { findFreePort } from "../../runtime/mongrel2/mod.ts";
import { runCommand, waitFor, within } from "../subprocess.ts";

export { tempDir } from "../site.ts";
export {
  CLI,
  delay,
  isRunning,
  ROOT,
  runCli,
  runCommand,
  spawnCli,
  spawnDeno,
  type Subprocess,
  waitFor,
  whenReady,
} from "../subprocess.ts";
export { findFreePort };

const decoder = new TextDecoder();

/**
 * The pids of the mongrel2 processes running in `dir` or below it (their
 * cwd): a test's proof that a command left none behind.
 *
 * @param dir An absolute directory.
 * @returns The pids, in /proc order.
 *
 * @example
 * ```ts ignore
 * import { mongrel2sIn } from "./helpers.ts";
 * console.log(await mongrel2sIn("/tmp/app/.state/dev"));
 * ```
 */
export async function mongrel2sIn(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const comm = await Deno.readTextFile(`/proc/${entry.name}/comm`);
      const cwd = await Deno.readLink(`/proc/${entry.name}/cwd`);
      if (
        comm.trim() === "mongrel2" && (cwd === dir || cwd.startsWith(`${dir}/`))
      ) {
        pids.push(Number(entry.name));
      }
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
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
      const done = await within(status, 5000, null);
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
  const result = await runCommand(
    "m2sh",
    ["load", "-config", "mongrel2.conf", "-db", "config.sqlite"],
    { cwd: dir, env: { LOGNAME: Deno.env.get("LOGNAME") ?? "root" } },
  );
  const text = result.stdout + result.stderr;
  if (result.code !== 0) {
    throw new Error(`m2sh load failed in ${dir}:\n${text}`);
  }
  return text;
}
