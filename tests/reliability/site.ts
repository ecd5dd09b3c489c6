/**
 * Pieces for the reliability tests and bench scripts that the e2e harness
 * does not offer: a mongrel2 that can be restarted on the same directory,
 * port and handler ident, m2fetch subprocesses started and stopped
 * independently of it (with any `deno run` permission flags), and memory
 * sampling of a process.
 *
 * @module
 */

import {
  type Mongrel2Process,
  type Mongrel2SettingValue,
  startMongrel2,
} from "../../runtime/mongrel2/mod.ts";
import {
  delay,
  DENO,
  RawClient,
  type RawResponse,
  ROOT,
} from "../e2e/harness.ts";

/** A mongrel2 in a temp dir that {@linkcode Site.restart} can replace. */
export interface Site extends AsyncDisposable {
  /** The state directory. */
  readonly dir: string;
  /** The HTTP port (kept across restarts). */
  readonly port: number;
  /** The handler's send_spec (kept across restarts). */
  readonly sendSpec: string;
  /** The handler's recv_spec (kept across restarts). */
  readonly recvSpec: string;
  /** The running mongrel2 (a new one after each restart). */
  readonly mongrel2: Mongrel2Process;
  /** Stops mongrel2 and starts a new one with the same config. */
  restart(options?: { downMs?: number }): Promise<void>;
  /** Stops mongrel2 and removes the directory. */
  close(): Promise<void>;
}

/** Options for {@linkcode startSite}. */
export interface SiteOptions {
  /** mongrel2 settings merged over the defaults. */
  settings?: Record<string, Mongrel2SettingValue>;
  /** The handler protocol (default tnetstring). */
  protocol?: "json" | "tnetstring";
  /** Where to put the state dir (default: the system temp dir). */
  parent?: string;
}

/**
 * Starts mongrel2 with one handler route `/` in a fresh temp dir.
 *
 * @param options Settings and protocol.
 * @returns The site.
 */
export async function startSite(options: SiteOptions = {}): Promise<Site> {
  const dir = await Deno.makeTempDir({ prefix: "m2r-", dir: options.parent });
  const sendIdent = crypto.randomUUID();
  const serverUuid = crypto.randomUUID();
  const start = (port?: number) =>
    startMongrel2({
      dir,
      port,
      serverUuid,
      handlers: [{
        route: "/",
        protocol: options.protocol ?? "tnetstring",
        sendIdent,
      }],
      settings: options.settings,
    });
  let mongrel2: Mongrel2Process;
  try {
    mongrel2 = await start();
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  const [handler] = mongrel2.handlers;
  const close = async () => {
    try {
      await mongrel2.stop();
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  };
  return {
    dir,
    port: mongrel2.port,
    sendSpec: handler.sendSpec,
    recvSpec: handler.recvSpec,
    get mongrel2() {
      return mongrel2;
    },
    async restart({ downMs = 0 } = {}) {
      await mongrel2.stop();
      await delay(downMs);
      mongrel2 = await start(mongrel2.port);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** An m2fetch CLI subprocess. */
export interface M2fetch extends AsyncDisposable {
  /** The process (its pid is deno's own). */
  readonly process: Deno.ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit status once the process exited and its output was read. */
  readonly exited: Promise<Deno.CommandStatus>;
  /** Resolves once the output matches (false after `timeoutMs`). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<boolean>;
  /** Sends a signal. */
  kill(signal: Deno.Signal): void;
  /** SIGTERM (SIGKILL after 15 s) and the exit status. */
  stop(): Promise<Deno.CommandStatus>;
}

/** Options for {@linkcode spawnM2fetch}. */
export interface SpawnOptions {
  /** `deno run` permission flags (default `-A`). */
  permissions?: string[];
  /** Extra m2fetch flags. */
  args?: string[];
  /** Echo the output to stderr. */
  echo?: boolean;
  /** Where stdout goes: kept in memory (default), or dropped (long runs). */
  keepOutput?: boolean;
}

/**
 * Starts `deno run <permissions> cli.ts --send-spec … --recv-spec … APP`
 * from the repository root; it does not wait for anything.
 *
 * @param site Where mongrel2 is.
 * @param app The handler module, relative to the repository root.
 * @param options Permissions, flags, output.
 * @returns The process.
 */
export function spawnM2fetch(
  site: Pick<Site, "sendSpec" | "recvSpec">,
  app: string,
  options: SpawnOptions = {},
): M2fetch {
  const child = new Deno.Command(DENO, {
    args: [
      "run",
      ...(options.permissions ?? ["-A"]),
      `${ROOT}/cli.ts`,
      "--send-spec",
      site.sendSpec,
      "--recv-spec",
      site.recvSpec,
      ...(options.args ?? []),
      app,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const keep = options.keepOutput ?? true;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const piece = decoder.decode(chunk, { stream: true });
      if (keep) text += piece;
      else text = (text + piece).slice(-20_000);
      if (options.echo) Deno.stderr.writeSync(chunk);
    }
  };
  const pumped = Promise.all([pump(child.stdout), pump(child.stderr)]);
  let exit: Deno.CommandStatus | null = null;
  const status = child.status.then((s) => exit = s);
  const kill = (signal: Deno.Signal) => {
    if (exit !== null) return;
    try {
      child.kill(signal);
    } catch {
      // Exited meanwhile.
    }
  };
  const stop = async () => {
    kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        kill("SIGKILL");
        resolve();
      }, 15_000);
    });
    await Promise.race([status, killed]);
    clearTimeout(timer);
    const result = await status;
    await pumped;
    return result;
  };
  return {
    process: child,
    output: () => text,
    exited: status.then(async (result) => {
      await pumped;
      return result;
    }),
    async waitForOutput(pattern, timeoutMs = 30_000) {
      const deadline = performance.now() + timeoutMs;
      while (!pattern.test(text)) {
        if (exit !== null || performance.now() > deadline) {
          return pattern.test(text);
        }
        await delay(20);
      }
      return true;
    },
    kill,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/**
 * Asks m2fetch for its status line (SIGUSR2) and returns the numbers.
 *
 * @param m2fetch The process.
 * @returns Connections, requests in flight and RSS bytes.
 */
export async function statusOf(
  m2fetch: M2fetch,
): Promise<{ connections: number; inFlight: number; rss: number }> {
  const pattern =
    /status: (\d+) connection\(s\), (\d+) request\(s\) in flight, rss (\d+) bytes/g;
  const before = [...m2fetch.output().matchAll(pattern)].length;
  m2fetch.kill("SIGUSR2");
  const deadline = performance.now() + 5000;
  while (performance.now() < deadline) {
    const all = [...m2fetch.output().matchAll(pattern)];
    if (all.length > before) {
      const last = all[all.length - 1];
      return {
        connections: Number(last[1]),
        inFlight: Number(last[2]),
        rss: Number(last[3]),
      };
    }
    await delay(20);
  }
  throw new Error(`m2fetch wrote no status line:\n${m2fetch.output()}`);
}

/**
 * The resident set size of a process, in bytes, from /proc.
 *
 * @param pid The process id.
 * @returns Bytes.
 */
export function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (match === null) throw new Error(`No VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/**
 * One request on a new raw connection to mongrel2; the connection is
 * closed afterwards.
 *
 * @param port mongrel2's port.
 * @param request The request bytes (a path makes a GET).
 * @param timeoutMs How long to wait for the response.
 * @returns The response.
 */
export async function rawRequest(
  port: number,
  request: string,
  timeoutMs = 10_000,
): Promise<RawResponse> {
  await using client = await RawClient.connect(port);
  await client.write(
    request.startsWith("/")
      ? `GET ${request} HTTP/1.1\r\nHost: localhost\r\n\r\n`
      : request,
  );
  return await client.readResponse({ timeoutMs });
}
