/**
 * Helpers for the process-model tests: handler modules written to a temp
 * dir ({@linkcode writeFiles}) and a closed-loop load generator that
 * accounts for every request it sends ({@linkcode Load}). The mongrel2 that
 * outlives the m2fetch processes started against it (`startSite`) and
 * m2fetch as a `deno run -A cli.ts` subprocess that a test signals, kills
 * and restarts (`startM2fetch`, `spawnM2fetch`) are re-exported from
 * `tests/site.ts` and `tests/subprocess.ts`.
 *
 * @module
 */

import { within } from "../subprocess.ts";

export { type Site, startSite } from "../site.ts";
export {
  delay,
  spawnM2fetch,
  startM2fetch,
  type Subprocess,
  waitFor,
} from "../subprocess.ts";

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
    const done = await within(
      Promise.all(this.#loops).then(() => true),
      timeoutMs,
      false,
    );
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

/**
 * The Web Worker threads of a process (Deno names them `worker-N`).
 *
 * @param pid The process.
 * @returns How many it has now.
 *
 * @example
 * ```ts ignore
 * import { workerThreads } from "./helpers.ts";
 * console.log(workerThreads(Deno.pid));
 * ```
 */
export function workerThreads(pid: number): number {
  let count = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    let name: string;
    try {
      name = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/comm`);
    } catch (error) {
      // A thread that ended since the listing (a terminated worker's).
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    if (name.startsWith("worker-")) count++;
  }
  return count;
}
