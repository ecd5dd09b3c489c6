/**
 * Runs a private mongrel2 for dev mode, tests and benchmarks.
 *
 * {@link startMongrel2} creates a state dir (`run/ logs/ tmp/`), renders and
 * `m2sh load`s a config, starts `mongrel2 config.sqlite <uuid>` directly (so
 * the pid is mongrel2's own) and resolves once the HTTP port accepts TCP
 * connections and the handler sockets exist. {@link Mongrel2Process.stop}
 * sends SIGINT, waits, and falls back to SIGKILL.
 *
 * Needs `--allow-run`, `--allow-read`, `--allow-write`, `--allow-net`,
 * `--allow-env` and `--allow-sys` (for `Deno.uid()`).
 *
 * @example Serve a directory
 * ```ts ignore
 * import { startMongrel2 } from "./process.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/static`);
 * await Deno.writeTextFile(`${dir}/static/hi.txt`, "hi");
 * await using m2 = await startMongrel2({
 *   dir,
 *   dirs: [{ route: "/static/", base: "static/" }],
 * });
 * console.log(await (await fetch(`${m2.url}/static/hi.txt`)).text());
 * ```
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import {
  type Mongrel2ConfigOptions,
  renderMongrel2Config,
  type ResolvedMongrel2Config,
  resolveMongrel2Config,
  type RunningHandler,
} from "./config.ts";
import { errorMessage } from "../error_message.ts";

/**
 * Options for {@link startMongrel2}.
 *
 * @example
 * ```ts
 * import type { Mongrel2Options } from "./process.ts";
 * const options: Mongrel2Options = {
 *   dir: "/tmp/site",
 *   handlers: [{ route: "/" }],
 * };
 * console.assert(options.handlers?.length === 1);
 * ```
 */
export interface Mongrel2Options extends Omit<Mongrel2ConfigOptions, "port"> {
  /** State directory; created with `run/ logs/ tmp/`. Relative paths are resolved against the cwd. */
  dir: string;
  /** HTTP port. `0` or undefined: pick a free port. */
  port?: number;
  /**
   * What to do with mongrel2's stdout and stderr. `"null"` (default) hides
   * them (the error log is a file; the last few KiB are kept for error
   * messages), `"inherit"` shows them, `"piped"` exposes them as
   * {@link Mongrel2Process.stdout} and {@link Mongrel2Process.stderr}.
   */
  stdout?: "inherit" | "null" | "piped";
  /** Milliseconds to wait until mongrel2 is ready. Default 10000. */
  readyTimeout?: number;
  /** Milliseconds to wait after SIGINT before SIGKILL. Default 5000. */
  stopTimeout?: number;
  /** The mongrel2 executable. Default `"mongrel2"` (found on PATH). */
  mongrel2Path?: string;
  /** The m2sh executable. Default `"m2sh"` (found on PATH). */
  m2shPath?: string;
}

/**
 * A running mongrel2 started by {@link startMongrel2}.
 *
 * @example
 * ```ts ignore
 * import { startMongrel2 } from "./process.ts";
 * await using m2 = await startMongrel2({
 *   dir: await Deno.makeTempDir(),
 *   handlers: [{ route: "/" }],
 * });
 * console.log(m2.url, m2.handlers[0].sendSpec);
 * ```
 */
export interface Mongrel2Process {
  /** The absolute state directory (symlinks resolved). */
  readonly dir: string;
  /** The HTTP port. */
  readonly port: number;
  /** The base URL, like `http://127.0.0.1:PORT` (no trailing slash). */
  readonly url: string;
  /** The mongrel2 process id. */
  readonly pid: number;
  /** The server uuid in the config database. */
  readonly uuid: string;
  /**
   * The pid of a mongrel2 that an earlier start left running in `dir` after
   * its starter died (a `dev` killed with SIGKILL), which this start stopped.
   */
  readonly replaced?: number;
  /** Whether mongrel2 chrooted into `dir`. */
  readonly chroot: boolean;
  /**
   * Handler routes with the specs a handler must connect to: absolute
   * `ipc://` paths on the real filesystem, also in chroot mode.
   */
  readonly handlers: RunningHandler[];
  /** The merged settings written to the config. */
  readonly settings: Readonly<Record<string, string | number>>;
  /** The rendered `mongrel2.conf`. */
  readonly configPath: string;
  /** The `config.sqlite` produced by `m2sh load`. */
  readonly databasePath: string;
  /** The error log on the real filesystem. */
  readonly errorLogPath: string;
  /** mongrel2's stdout, only when started with `stdout: "piped"`. */
  readonly stdout?: ReadableStream<Uint8Array>;
  /** mongrel2's stderr, only when started with `stdout: "piped"`. */
  readonly stderr?: ReadableStream<Uint8Array>;
  /** Resolves with the exit status once mongrel2 has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  /**
   * Maps a path as mongrel2 reports it (e.g. an `x-mongrel2-upload-done`
   * header) to the real filesystem: inside `dir` when chrooted, else
   * relative to `dir`.
   */
  resolvePath(path: string): string;
  /** The contents of mongrel2's error log ("" when it does not exist yet). */
  errorLog(): Promise<string>;
  /**
   * SIGINT, wait for exit (SIGKILL after `stopTimeout`). Idempotent; safe
   * to call after mongrel2 exited by itself. mongrel2 1.12.2 can crash
   * (SIGSEGV) during its graceful shutdown when a client connection is still
   * open and that connection's handler has disconnected; the process is gone
   * either way, so `stop()` does not treat that as an error (see `status`).
   */
  stop(): Promise<void>;
  /** Same as {@link Mongrel2Process.stop}. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starting, loading or stopping mongrel2 failed. `output` holds the
 * relevant m2sh output or mongrel2 log tail.
 *
 * @example
 * ```ts
 * import { Mongrel2Error } from "./process.ts";
 * const error = new Mongrel2Error("Cannot start mongrel2: it exited", "log");
 * console.assert(error.output === "log");
 * ```
 */
export class Mongrel2Error extends Error {
  /** m2sh output or the tail of mongrel2's stderr and error log. */
  readonly output: string;

  /**
   * Creates the error.
   *
   * @param message What failed and why; `output` is appended to it.
   * @param output The relevant tool output.
   * @param options Standard error options (`cause`).
   */
  constructor(message: string, output = "", options?: ErrorOptions) {
    super(output ? `${message}\n${output.trimEnd()}` : message, options);
    this.name = "Mongrel2Error";
    this.output = output;
  }
}

/**
 * Finds a TCP port that is free right now by binding port 0 and closing.
 *
 * Another process may take the port before it is used; {@link startMongrel2}
 * retries with a new port when mongrel2 cannot bind a port it picked.
 *
 * @param host The address to probe. Default `"127.0.0.1"`.
 * @returns A port number.
 *
 * @example
 * ```ts
 * import { findFreePort } from "./process.ts";
 * const port = await findFreePort();
 * console.assert(port > 0 && port < 65536);
 * ```
 */
// deno-lint-ignore require-await
export async function findFreePort(host = "127.0.0.1"): Promise<number> {
  const listener = Deno.listen({ hostname: host, port: 0, transport: "tcp" });
  try {
    return listener.addr.port;
  } finally {
    listener.close();
  }
}

/**
 * Options for {@link loadMongrel2Config}.
 *
 * @example
 * ```ts
 * import type { LoadConfigOptions } from "./process.ts";
 * const options: LoadConfigOptions = { serverUuid: "f400bf85" };
 * console.assert(options.serverUuid === "f400bf85");
 * ```
 */
export interface LoadConfigOptions {
  /** The config file, relative to the dir. Default `"mongrel2.conf"`. */
  config?: string;
  /** The database file, relative to the dir. Default `"config.sqlite"`. */
  database?: string;
  /** When set, the database must hold a server with this uuid. */
  serverUuid?: string;
  /** The m2sh executable. Default `"m2sh"`. */
  m2shPath?: string;
}

/**
 * Runs `m2sh load -config <config> -db <database>` in `dir` (with `LOGNAME`
 * set) after deleting any old database, then checks that the database has
 * a `server` table (and the expected server). m2sh exits 0 even on syntax
 * errors and a failed load can leave an empty database, so the exit code
 * alone proves nothing.
 *
 * @param dir The directory holding the config; the database goes there too.
 * @param options File names, expected server, m2sh path.
 * @returns The absolute database path.
 * @throws {Mongrel2Error} When m2sh fails; the message includes its output.
 *
 * @example
 * ```ts
 * import { renderMongrel2Config, resolveMongrel2Config } from "./config.ts";
 * import { loadMongrel2Config } from "./process.ts";
 * const dir = await Deno.makeTempDir();
 * const config = resolveMongrel2Config({ dir, port: 8080 });
 * await Deno.writeTextFile(`${dir}/mongrel2.conf`, renderMongrel2Config(config));
 * const db = await loadMongrel2Config(dir, { serverUuid: config.serverUuid });
 * console.assert(db === `${dir}/config.sqlite`);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadMongrel2Config(
  dir: string,
  options: LoadConfigOptions = {},
): Promise<string> {
  const config = options.config ?? "mongrel2.conf";
  const database = options.database ?? "config.sqlite";
  const databasePath = database.startsWith("/")
    ? database
    : `${dir}/${database}`;
  await Deno.remove(databasePath).catch(ignoreNotFound);
  const m2sh = options.m2shPath ?? "m2sh";
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(m2sh, {
      args: ["load", "-config", config, "-db", database],
      cwd: dir,
      env: { LOGNAME: logName() },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw new Mongrel2Error(
      `Cannot load the mongrel2 config: ${cannotRun(m2sh, "m2shPath", error)}`,
      "",
      { cause: error },
    );
  }
  const decoder = new TextDecoder();
  const output = decoder.decode(result.stdout) + decoder.decode(result.stderr);
  if (!result.success) {
    throw new Mongrel2Error(
      `Cannot load the mongrel2 config ${dir}/${config}: m2sh exited with code ${result.code}`,
      output,
    );
  }
  const problem = checkDatabase(databasePath, options.serverUuid);
  if (problem) {
    throw new Mongrel2Error(
      `Cannot load the mongrel2 config ${dir}/${config}: ${problem}; m2sh said:`,
      output || "(no output)",
    );
  }
  return databasePath;
}

/**
 * Starts a private mongrel2 and waits until it serves.
 *
 * Creates `dir` with `run/ logs/ tmp/`, writes `mongrel2.conf`, loads it into
 * `config.sqlite`, runs `mongrel2 config.sqlite <uuid>` with cwd = `dir`, and
 * waits until the HTTP port accepts TCP connections and every handler's
 * ipc sockets exist. If mongrel2 exits first, or the wait times out, the
 * error includes the tail of its stderr and error log.
 *
 * With `chroot: true` mongrel2 chroots into `dir`; that needs root, so it
 * throws for other users instead of running in mongrel2's half-chrooted
 * "test mode".
 *
 * @param options See {@link Mongrel2Options}.
 * @returns The running process; stop it with `stop()` or `await using`.
 * @throws {Mongrel2Error} When loading or starting fails.
 * @throws {TypeError | RangeError} When the options are invalid.
 *
 * @example
 * ```ts ignore
 * import { startMongrel2 } from "./process.ts";
 * const m2 = await startMongrel2({
 *   dir: await Deno.makeTempDir(),
 *   handlers: [{ route: "/", protocol: "tnetstring" }],
 * });
 * try {
 *   console.log(m2.url, m2.handlers[0].sendSpec, m2.handlers[0].recvSpec);
 * } finally {
 *   await m2.stop();
 * }
 * ```
 */
export async function startMongrel2(
  options: Mongrel2Options,
): Promise<Mongrel2Process> {
  const chroot = options.chroot ?? false;
  if (chroot && Deno.uid() !== 0) {
    throw new Mongrel2Error(
      "Cannot start mongrel2 with chroot: chroot needs root (as another user mongrel2 only pretends, and paths would point outside the state dir)",
    );
  }
  const dir = await prepareDir(options.dir);
  const bindAddress = options.bindAddress ?? "127.0.0.1";
  const pickPort = !options.port;
  const attempts = pickPort ? 3 : 1;
  for (let attempt = 1;; attempt++) {
    const port = pickPort ? await findFreePort(bindAddress) : options.port!;
    const config = resolveMongrel2Config({ ...options, dir, port });
    try {
      return await launch(config, options);
    } catch (error) {
      const portTaken = error instanceof Mongrel2Error &&
        error.output.includes("Can't announce on TCP port");
      if (!portTaken || attempt >= attempts) throw error;
    }
  }
}

async function prepareDir(path: string): Promise<string> {
  const absolute = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  try {
    for (const sub of ["run", "logs", "tmp"]) {
      await Deno.mkdir(`${absolute}/${sub}`, { recursive: true });
    }
    return await Deno.realPath(absolute);
  } catch (error) {
    throw unwritableDir(absolute, error);
  }
}

/** The directory mongrel2 was to run in cannot hold its files. */
function unwritableDir(dir: string, error: unknown): Mongrel2Error {
  return new Mongrel2Error(
    `Cannot start mongrel2 in ${dir}: cannot write its files there (${
      errorMessage(error)
    }); use a writable directory (for dev, --state-dir)`,
    "",
    { cause: error },
  );
}

const liveChildren = new Set<Deno.ChildProcess>();
let unloadHooked = false;

// Killing leftovers at exit keeps a crashed test run from leaking mongrel2s.
function track(child: Deno.ChildProcess): void {
  liveChildren.add(child);
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const live of liveChildren) {
      try {
        live.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  });
}

/**
 * A second start in the same directory would lock the first one's config
 * database and delete its sockets under it: refuse while the mongrel2 of
 * the pid file still runs from there for a live starter (the process whose
 * pid and start time run/starter records). One whose starter is gone (a
 * `dev` killed with SIGKILL cannot stop its child) would hold the port for
 * ever, so it is stopped instead.
 *
 * @returns The pid of the mongrel2 stopped that way, if any.
 */
async function clearDirectory(
  config: ResolvedMongrel2Config,
  stopTimeout: number,
): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await Deno.readTextFile(config.paths.pidFile.real)).trim());
  } catch (error) {
    ignoreNotFound(error);
    return undefined;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  let command: string;
  let cwd: string;
  let parentCommand: string | undefined;
  try {
    command = (await Deno.readTextFile(`/proc/${pid}/comm`)).trim();
    cwd = await Deno.readLink(`/proc/${pid}/cwd`);
    parentCommand = await readParentCommand(pid);
  } catch {
    return undefined; // Gone, or not a process this user may look at.
  }
  if (command !== "mongrel2" || cwd !== config.dir) return undefined;
  const starter = await readStarter(config.dir);
  const starterLives = starter === undefined
    ? parentCommand === "deno" // A dir from before starters were recorded.
    : await processStartTime(starter.pid) === starter.startTime;
  if (starterLives) {
    throw new Mongrel2Error(
      `Cannot start mongrel2 in ${config.dir}: the mongrel2 started there before is still running (pid ${pid}); stop it first, or use another directory (for dev, --state-dir)`,
    );
  }
  await stopLeftover(pid, config.dir, stopTimeout);
  return pid;
}

/** Where the process that starts a dir's mongrel2 says who it is. */
function starterPath(dir: string): string {
  return `${dir}/run/starter`;
}

/**
 * A live process's start time (clock ticks since boot, from `/proc`): with
 * the pid, it names one process even after the pid is reused. Undefined
 * when it is gone, or dead and not yet reaped by its parent (a zombie keeps
 * its `/proc` entry, start time included).
 */
async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The command name, in parentheses, may hold any byte: fields 3 (the
    // state) and 22 (the start time) are counted from its end.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[0] === "Z" ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

/** Records this process as the one that started the dir's mongrel2. */
async function recordStarter(dir: string): Promise<void> {
  const startTime = await processStartTime(Deno.pid);
  if (startTime === undefined) return;
  await Deno.writeTextFile(starterPath(dir), `${Deno.pid} ${startTime}\n`);
}

async function readStarter(
  dir: string,
): Promise<{ pid: number; startTime: string } | undefined> {
  try {
    const [pid, startTime] = (await Deno.readTextFile(starterPath(dir)))
      .trim().split(" ");
    return { pid: Number(pid), startTime };
  } catch {
    return undefined;
  }
}

/** The command name of a process's parent (undefined for init's children). */
async function readParentCommand(pid: number): Promise<string | undefined> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // The command name is in parentheses and may hold any byte: skip past it.
  const [, parent] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (parent === "1") return undefined;
  return (await Deno.readTextFile(`/proc/${parent}/comm`)).trim();
}

/** SIGINT, then SIGKILL after `stopTimeout`; resolves once it is gone. */
async function stopLeftover(
  pid: number,
  dir: string,
  stopTimeout: number,
): Promise<void> {
  const gone = async (within: number) => {
    const deadline = Date.now() + within;
    while (Date.now() <= deadline) {
      try {
        await Deno.stat(`/proc/${pid}`);
      } catch {
        return true;
      }
      await delay(25);
    }
    return false;
  };
  try {
    Deno.kill(pid, "SIGINT");
    if (await gone(stopTimeout)) return;
    Deno.kill(pid, "SIGKILL");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!await gone(stopTimeout)) {
    throw new Mongrel2Error(
      `Cannot start mongrel2 in ${dir}: the mongrel2 an earlier run left there (pid ${pid}) did not exit after SIGKILL`,
    );
  }
}

async function launch(
  config: ResolvedMongrel2Config,
  options: Mongrel2Options,
): Promise<Mongrel2Process> {
  const { dir } = config;
  const stopTimeout = options.stopTimeout ?? 5000;
  const replaced = await clearDirectory(config, stopTimeout);
  const configPath = `${dir}/mongrel2.conf`;
  try {
    await recordStarter(dir);
    await Deno.writeTextFile(configPath, renderMongrel2Config(config));
  } catch (error) {
    throw unwritableDir(dir, error);
  }
  const databasePath = await loadMongrel2Config(dir, {
    serverUuid: config.serverUuid,
    m2shPath: options.m2shPath,
  });

  const socketPaths = [
    ...config.handlers.flatMap((h) => [h.sendSpec, h.recvSpec]),
    config.paths.control.real,
  ].filter((spec) => spec.startsWith("ipc://"))
    .map((spec) => spec.slice("ipc://".length));
  // Stale sockets from an earlier run would make the readiness check lie.
  for (const path of socketPaths) {
    await Deno.remove(path).catch(ignoreNotFound);
  }

  // The error log outlives each run: only what this one adds explains it.
  const errorLogPath = config.paths.errorLog.real;
  const errorLogStart =
    (await Deno.stat(errorLogPath).catch(() => null))?.size ?? 0;

  const mode = options.stdout ?? "null";
  const io = mode === "inherit" ? "inherit" : "piped";
  const mongrel2 = options.mongrel2Path ?? "mongrel2";
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(mongrel2, {
      args: ["config.sqlite", config.serverUuid],
      cwd: dir,
      env: { LOGNAME: logName() },
      stdin: "null",
      stdout: io,
      stderr: io,
    }).spawn();
  } catch (error) {
    throw new Mongrel2Error(
      `Cannot start mongrel2: ${cannotRun(mongrel2, "mongrel2Path", error)}`,
      "",
      { cause: error },
    );
  }
  track(child);

  const tail = new OutputTail();
  const drains: Promise<void>[] = [];
  let stdout: ReadableStream<Uint8Array> | undefined;
  let stderr: ReadableStream<Uint8Array> | undefined;
  if (io === "piped") {
    let out: ReadableStream<Uint8Array> = child.stdout;
    let err: ReadableStream<Uint8Array> = child.stderr;
    if (mode === "piped") {
      const [outMine, outTheirs] = out.tee();
      const [errMine, errTheirs] = err.tee();
      out = outMine;
      err = errMine;
      stdout = outTheirs;
      stderr = errTheirs;
    }
    drains.push(tail.drain(out), tail.drain(err));
  }

  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    liveChildren.delete(child);
    return s;
  });

  const errorLog = () => Deno.readTextFile(errorLogPath).catch(() => "");
  const errorLogOfThisRun = async () => {
    const bytes = await Deno.readFile(errorLogPath).catch(() => null);
    if (bytes === null) return "";
    // A log cut shorter since (rotated) is all this run's.
    const start = bytes.length >= errorLogStart ? errorLogStart : 0;
    return new TextDecoder().decode(bytes.subarray(start));
  };
  const describeLogs = async () => {
    const parts: string[] = [];
    const out = tail.text().trimEnd();
    if (out) parts.push(`--- mongrel2 stdout/stderr (tail) ---\n${out}`);
    const log = lastLines(await errorLogOfThisRun(), 30).trimEnd();
    if (log) parts.push(`--- ${errorLogPath} (tail) ---\n${log}`);
    return parts.join("\n");
  };

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      if (!exited) {
        signal(child, "SIGINT");
        if (!await settlesWithin(status, stopTimeout)) {
          signal(child, "SIGKILL");
        }
      }
      await status;
      await Promise.all(drains);
    })();

  const host = connectHost(config.bindAddress);
  // As a URL writes it: an IPv6 address in brackets.
  const urlHost = host.includes(":") ? `[${host}]` : host;
  const readyTimeout = options.readyTimeout ?? 10_000;
  const deadline = Date.now() + readyTimeout;
  while (true) {
    if (exited) {
      await Promise.all(drains);
      const { code } = await status;
      throw new Mongrel2Error(
        `Cannot start mongrel2 in ${dir}: ${
          listenFailure(tail.text(), urlHost, config.port) ??
            `it exited with code ${code} before accepting connections on ${host}:${config.port}`
        }`,
        await describeLogs(),
      );
    }
    if (await isReady(host, config.port, socketPaths)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Mongrel2Error(
        `Cannot start mongrel2 in ${dir}: it did not accept connections on ${host}:${config.port} and bind its handler sockets within ${readyTimeout} ms`,
        await describeLogs(),
      );
    }
    await delay(25);
  }

  return {
    dir,
    port: config.port,
    url: `http://${urlHost}:${config.port}`,
    pid: child.pid,
    uuid: config.serverUuid,
    replaced,
    chroot: config.chroot,
    handlers: config.handlers.map((h) => ({
      route: h.route,
      protocol: h.protocol,
      name: h.name,
      sendSpec: h.sendSpec,
      recvSpec: h.recvSpec,
      sendIdent: h.sendIdent,
      recvIdent: h.recvIdent,
    })),
    settings: { ...config.settings },
    configPath,
    databasePath,
    errorLogPath,
    stdout,
    stderr,
    status,
    resolvePath: (path: string) =>
      config.chroot
        ? `${dir}/${path.replace(/^\/+/, "")}`
        : path.startsWith("/")
        ? path
        : `${dir}/${path}`,
    errorLog,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

// Sockets first: each accepted probe connection uses up a mongrel2
// connection id, so probing TCP only once things are ready keeps ids
// predictable (the probe normally takes id 1).
async function isReady(
  host: string,
  port: number,
  socketPaths: string[],
): Promise<boolean> {
  for (const path of socketPaths) {
    try {
      if (!(await Deno.stat(path)).isSocket) return false;
    } catch {
      return false;
    }
  }
  try {
    const conn = await Deno.connect({ hostname: host, port });
    conn.close();
  } catch {
    return false;
  }
  return true;
}

function checkDatabase(path: string, serverUuid?: string): string | undefined {
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true });
  } catch (error) {
    return `the database ${path} was not created (${errorMessage(error)})`;
  }
  try {
    const rows = db.prepare("SELECT uuid FROM server").all() as {
      uuid: string;
    }[];
    if (rows.length === 0) return `the database ${path} has no servers`;
    if (serverUuid && !rows.some((row) => row.uuid === serverUuid)) {
      return `the database ${path} has no server with uuid ${serverUuid}`;
    }
    return undefined;
  } catch (error) {
    return `the database ${path} has no server table (${errorMessage(error)})`;
  } finally {
    db.close();
  }
}

class OutputTail {
  #text = "";
  #limit = 8192;

  async drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        this.#append(decoder.decode(chunk, { stream: true }));
      }
    } catch {
      // The pipe closing early only shortens the tail.
    }
    this.#append(decoder.decode());
  }

  #append(text: string): void {
    this.#text += text;
    if (this.#text.length > this.#limit * 2) {
      this.#text = this.#text.slice(-this.#limit);
    }
  }

  text(): string {
    return lastLines(this.#text.slice(-this.#limit), 30);
  }
}

/**
 * Why mongrel2's `m2sh` or `mongrel2` would not run, and what to do, in
 * the words of someone at a command line (who has no `option` to pass).
 */
function cannotRun(program: string, option: string, error: unknown): string {
  const why = !(error instanceof Deno.errors.NotFound)
    ? `running "${program}" failed (${errorMessage(error)})`
    : program.includes("/")
    ? `there is no ${program}`
    : `there is no "${program}" on PATH`;
  return `${why}; install mongrel2, which brings mongrel2 and m2sh (Debian: apt-get install mongrel2-core), or, embedding m2fetch, name the executable with the ${option} option`;
}

/**
 * Why mongrel2 could not listen on its HTTP port, from its output, first
 * (its own lines bury it among the start-up ones), with what to do about a
 * port in use.
 */
function listenFailure(
  output: string,
  urlHost: string,
  port: number,
): string | undefined {
  if (!output.includes("Can't announce on TCP port")) return undefined;
  const errno = /errno: ([^)]+)\) bind failed/.exec(output)?.[1];
  const where = `${urlHost}:${port}`;
  if (errno === "Address already in use") {
    return `it cannot listen on ${where}: another process already listens on port ${port} (for dev, pick another --port, or --port 0 for a free one)`;
  }
  return `it cannot listen on ${where}${errno ? ` (${errno})` : ""}`;
}

function lastLines(text: string, count: number): string {
  const lines = text.trimEnd().split("\n");
  return lines.slice(-count).join("\n");
}

function connectHost(bindAddress: string): string {
  if (bindAddress === "" || bindAddress === "0.0.0.0") return "127.0.0.1";
  if (bindAddress === "::" || bindAddress === "[::]") return "::1";
  return bindAddress.replace(/^\[(.*)\]$/, "$1");
}

function signal(child: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    child.kill(name);
  } catch {
    // It exited between the check and the signal.
  }
}

async function settlesWithin(
  promise: Promise<unknown>,
  ms: number,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function logName(): string {
  try {
    return Deno.env.get("LOGNAME") || Deno.env.get("USER") || "m2fetch";
  } catch {
    return "m2fetch";
  }
}

function ignoreNotFound(error: unknown): void {
  if (!(error instanceof Deno.errors.NotFound)) throw error;
}
