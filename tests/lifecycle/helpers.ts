/**
 * Helpers for the process-model tests: a real mongrel2 that outlives the
 * m2fetch processes started against it ({@linkcode startSite}), m2fetch as a
 * `deno run -A cli.ts` subprocess that a test signals, kills and restarts
 * ({@linkcode spawnM2fetch}), handler modules written to a temp dir
 * ({@linkcode writeFiles}), and a closed-loop load generator that accounts
 * for every request it sends ({@linkcode Load}).
 *
 * @module
 */

import { startMongrel2 } from "../../runtime/mongrel2/mod.ts";
import type { Mongrel2SettingValue } from "../../runtime/mongrel2/mod.ts";

/** The repository root (absolute, no trailing slash). */
export const ROOT: string = new URL("../..", import.meta.url).pathname.replace(
  /\/$/,
  "",
);

import { delay, waitFor } from "../e2e/harness.ts";

export { delay, waitFor };

/**
 * A real mongrel2 in a temp dir with one handler route, `/`.
 *
 * @example
 * ```ts ignore
 * import { startSite } from "./helpers.ts";
 * await using site = await startSite();
 * console.log(site.url, site.sendSpec);
 * ```
 */
export interface Site extends AsyncDisposable {
  /** The base URL, like `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The temp dir (holds mongrel2's state; tests may put modules here). */
  readonly dir: string;
  /** The handler's send_spec. */
  readonly sendSpec: string;
  /** The handler's recv_spec. */
  readonly recvSpec: string;
  /** Stops mongrel2 and removes the temp dir. */
  close(): Promise<void>;
}

/**
 * Starts mongrel2 in a fresh temp dir.
 *
 * @param settings mongrel2 settings merged over the generated defaults.
 * @returns The running site.
 *
 * @example
 * ```ts ignore
 * import { startSite } from "./helpers.ts";
 * await using site = await startSite();
 * ```
 */
export async function startSite(
  settings?: Record<string, Mongrel2SettingValue>,
): Promise<Site> {
  // A short prefix: ipc socket paths must fit in 107 bytes.
  const dir = await Deno.makeTempDir({ prefix: "m2l-" });
  let mongrel2;
  try {
    mongrel2 = await startMongrel2({
      dir,
      handlers: [{ route: "/", protocol: "tnetstring" }],
      settings,
    });
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  const [route] = mongrel2.handlers;
  const close = async () => {
    try {
      await mongrel2.stop();
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  };
  return {
    url: mongrel2.url,
    dir: mongrel2.dir,
    sendSpec: route.sendSpec,
    recvSpec: route.recvSpec,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Writes files (name → text) into `dir`.
 *
 * @param dir The directory.
 * @param files File names and contents.
 *
 * @example
 * ```ts ignore
 * import { writeFiles } from "./helpers.ts";
 * await writeFiles("/tmp/x", { "app.ts": "export default () => new Response()" });
 * ```
 */
export async function writeFiles(
  dir: string,
  files: Record<string, string>,
): Promise<void> {
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
}

/**
 * An m2fetch subprocess.
 *
 * @example
 * ```ts ignore
 * import { spawnM2fetch, startSite } from "./helpers.ts";
 * await using site = await startSite();
 * await using m2fetch = await spawnM2fetch(site, "/tmp/app.ts");
 * const status = await m2fetch.stop("SIGTERM");
 * ```
 */
export interface M2fetchProcess extends AsyncDisposable {
  /** The child process. */
  readonly child: Deno.ChildProcess;
  /** Resolves with the exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  /** stdout and stderr so far. */
  output(): string;
  /** Whether it has exited. */
  exited(): boolean;
  /** Waits until the output matches (throws with the output on timeout). */
  waitForOutput(pattern: string | RegExp, timeoutMs?: number): Promise<void>;
  /** Sends a signal (ignored once exited). */
  signal(signal: Deno.Signal): void;
  /** Sends `signal` and waits for the exit status (and all output). */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/**
 * Starts `deno run -A cli.ts --send-spec … --recv-spec … ARGS APP` from
 * the repository root; with `ready` (the default) resolves once it logged
 * that it is serving.
 *
 * @param site The mongrel2 to serve behind.
 * @param app The handler module (absolute path).
 * @param args Extra CLI flags.
 * @param options `ready: false` returns at once (for start-up failures).
 * @returns The running process.
 *
 * @example
 * ```ts ignore
 * import { spawnM2fetch, startSite } from "./helpers.ts";
 * await using site = await startSite();
 * await using m2fetch = await spawnM2fetch(site, "/tmp/app.ts", ["--workers", "1"]);
 * ```
 */
export async function spawnM2fetch(
  site: Pick<Site, "sendSpec" | "recvSpec">,
  app: string,
  args: string[] = [],
  options: { ready?: boolean } = {},
): Promise<M2fetchProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}/cli.ts`,
      "--send-spec",
      site.sendSpec,
      "--recv-spec",
      site.recvSpec,
      ...args,
      app,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let text = "";
  const echo = Deno.env.get("M2FETCH_TEST_LOG") === "1";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
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
  const waitForOutput = async (
    pattern: string | RegExp,
    timeoutMs = 30_000,
  ) => {
    const matches = () =>
      typeof pattern === "string" ? text.includes(pattern) : pattern.test(text);
    const found = await waitFor(() => matches() || exit !== null, timeoutMs);
    if (!found || !matches()) {
      throw new Error(`m2fetch never printed ${pattern}:\n${text}`);
    }
  };
  const stop = async (name: Deno.Signal = "SIGTERM") => {
    signal(name);
    return await status;
  };
  const dispose = async () => {
    signal("SIGTERM");
    const done = await Promise.race([status, delay(15_000).then(() => null)]);
    if (done === null) await stop("SIGKILL");
  };
  const process: M2fetchProcess = {
    child,
    status,
    output: () => text,
    exited: () => exit !== null,
    waitForOutput,
    signal,
    stop,
    [Symbol.asyncDispose]: dispose,
  };
  if (options.ready ?? true) {
    try {
      await waitForOutput(" serving ");
    } catch (error) {
      await dispose();
      throw error;
    }
  }
  return process;
}

/** One request's outcome that was not a success. */
export interface Failure {
  /** The request's sequence number. */
  n: number;
  /** Why it failed: status, body mismatch, or the fetch error. */
  why: string;
}

/** Options for {@linkcode Load}. */
export interface LoadOptions {
  /** Concurrent client loops, each with its own HTTP client. Default 16. */
  clients?: number;
  /** The request path for sequence number `n`. Default `/work?n=N`. */
  path?: (n: number, client: number) => string;
  /**
   * Checks a response; returns `null` when it is right, else why not.
   * Default: status 200.
   */
  check?: (n: number, status: number, body: string) => string | null;
}

/**
 * A closed-loop load: `clients` loops, each sending its next request as soon
 * as the previous one finished, over its own keep-alive connection. Every
 * request is accounted for: sent, then completed (a full response that
 * passed `check`) or failed; `sent - completed - failed` are still waiting.
 * Requests never time out on the client side: one mongrel2 holds while no
 * handler is connected simply stays waiting.
 *
 * @example
 * ```ts ignore
 * import { Load } from "./helpers.ts";
 * const load = new Load("http://127.0.0.1:6767");
 * load.start();
 * await load.finish(5000);
 * console.log(load.sent, load.completed, load.failures);
 * ```
 */
export class Load {
  /** Requests sent. */
  sent = 0;
  /** Requests answered in full and correctly. */
  completed = 0;
  /** Requests that failed, with why. */
  readonly failures: Failure[] = [];
  /** Bodies seen, by body text (first 40 characters), with counts. */
  readonly bodies = new Map<string, number>();
  /** Body prefixes in the order they were seen, each run once. */
  readonly sequence: string[] = [];
  readonly #url: string;
  readonly #clients: number;
  readonly #path: (n: number, client: number) => string;
  readonly #check: (n: number, status: number, body: string) => string | null;
  readonly #loops: Promise<void>[] = [];
  readonly #httpClients: Deno.HttpClient[] = [];
  #running = false;

  /**
   * Prepares the load (nothing is sent before {@linkcode Load.start}).
   *
   * @param url The base URL.
   * @param options Client count, paths, response check.
   */
  constructor(url: string, options: LoadOptions = {}) {
    this.#url = url;
    this.#clients = options.clients ?? 16;
    this.#path = options.path ?? ((n) => `/work?n=${n}`);
    this.#check = options.check ??
      ((_n, status) => status === 200 ? null : `status ${status}`);
  }

  /** Failed requests. */
  get failed(): number {
    return this.failures.length;
  }

  /** Requests sent and not yet answered. */
  get waiting(): number {
    return this.sent - this.completed - this.failed;
  }

  /** Starts the client loops. */
  start(): void {
    this.#running = true;
    for (let client = 0; client < this.#clients; client++) {
      const http = Deno.createHttpClient({});
      this.#httpClients.push(http);
      this.#loops.push(this.#loop(client, http));
    }
  }

  async #loop(client: number, http: Deno.HttpClient): Promise<void> {
    while (this.#running) {
      const n = this.sent++;
      try {
        const response = await fetch(`${this.#url}${this.#path(n, client)}`, {
          client: http,
        });
        const body = await response.text();
        const why = this.#check(n, response.status, body);
        if (why === null) {
          this.completed++;
          const key = body.slice(0, 40);
          const seen = this.bodies.get(key) ?? 0;
          if (seen === 0 || this.sequence.at(-1) !== key) {
            this.sequence.push(key);
          }
          this.bodies.set(key, seen + 1);
        } else {
          this.failures.push({ n, why });
        }
      } catch (error) {
        this.failures.push({ n, why: String(error) });
      }
    }
  }

  /**
   * Stops sending and waits (up to `timeoutMs`) for every request sent to
   * be answered; closes the HTTP clients.
   *
   * @param timeoutMs The longest wait for outstanding requests.
   * @returns Whether every request was answered in time.
   */
  async finish(timeoutMs: number): Promise<boolean> {
    this.#running = false;
    const done = await Promise.race([
      Promise.all(this.#loops).then(() => true),
      delay(timeoutMs).then(() => false),
    ]);
    for (const http of this.#httpClients.splice(0)) http.close();
    // Closing the clients fails whatever was still waiting.
    await Promise.all(this.#loops);
    return done;
  }

  /** A one-line summary for assertion messages. */
  summary(): string {
    return `sent ${this.sent}, completed ${this.completed}, failed ${this.failed}, waiting ${this.waiting}${
      this.failures.length > 0
        ? `; failures: ${
          this.failures.slice(0, 5).map((f) => `#${f.n} ${f.why}`).join("; ")
        }`
        : ""
    }`;
  }
}
