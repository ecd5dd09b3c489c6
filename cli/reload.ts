/**
 * Reloading on SIGHUP: the handler module and the options read again and
 * swapped in while requests in flight finish on the old ones.
 *
 * @module
 */

import type { Mongrel2Server } from "../runtime/server.ts";
import { type CliLog, messageOf } from "./log.ts";
import type { Setup } from "./setup.ts";

/**
 * A server with the handler it runs, which a reload can replace: what
 * `serve()` (cli/serve.ts) starts.
 *
 * @example Usage
 * ```ts
 * import type { Served } from "./reload.ts";
 * // Serves another module from now on, with the same options.
 * async function switchTo(served: Served, app: string): Promise<string[]> {
 *   return await served.reload({ ...served.current, app });
 * }
 * ```
 */
export interface Served {
  /** The server. */
  server: Mongrel2Server;
  /** What is served now; a reload replaces it. */
  readonly current: Setup;
  /**
   * Whether the handler module is loaded: false after a start-up load that
   * failed (`onLoadFailure` in cli/serve.ts), while requests get 503,
   * until a reload loads it.
   */
  readonly loaded: boolean;
  /**
   * Loads the handler module afresh and applies the options that a reload
   * can change (requests in flight finish on the old code and settings).
   * Options that need a restart keep their values.
   *
   * @param next The module and options to serve from now on.
   * @returns The options whose new values wait for a restart.
   */
  reload(next: Setup): Promise<string[]>;
  /**
   * Graceful shutdown (bounded by --shutdown-timeout), then the workers stop.
   *
   * @param timeoutMs How long responses in flight may take (default:
   * --shutdown-timeout).
   */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Reloads on SIGHUP: reads the options again (m2fetch.json, and mongrel2's
 * config database with --mongrel2-config), loads the handler module afresh
 * and applies the options a reload can change. A module or configuration
 * that fails leaves the old code and options serving (or, when the module
 * has not loaded yet, requests getting 503). A SIGHUP during
 * start-up is not lost (nor fatal, its default action): the reload runs
 * once serving.
 *
 * @example Usage
 * ```ts
 * import { CliLog } from "./log.ts";
 * import { Reloader, type Served } from "./reload.ts";
 * import type { Setup } from "./setup.ts";
 * declare const served: Served; // what serve() started
 * declare function reread(): Promise<Setup>; // m2fetch.json read again
 * const reloader = new Reloader(new CliLog(served.current.values)); // SIGHUP
 * reloader.serving(served, reread);
 * ```
 */
export class Reloader {
  #log: CliLog;
  #reread: (() => Promise<Setup>) | undefined;
  #served: Served | undefined;
  #running: Promise<void> | undefined;
  #again = false;

  /**
   * Listens for SIGHUP; reloads wait for {@linkcode Reloader.serving}.
   *
   * @param log The command's log (a reload may change its options).
   */
  constructor(log: CliLog) {
    this.#log = log;
    Deno.addSignalListener("SIGHUP", () => void this.reload());
  }

  /**
   * Starts reloading for real; a SIGHUP that came during start-up runs now.
   *
   * @param served What is being served.
   * @param reread Reads the module and options again, for each reload.
   */
  serving(served: Served, reread: () => Promise<Setup>): void {
    this.#served = served;
    this.#reread = reread;
    if (this.#again) {
      this.#again = false;
      this.reload(" (SIGHUP during start-up)");
    }
  }

  /**
   * Reloads now, or once the reload under way has finished (they never
   * overlap).
   *
   * @param context Said after the module's name in the log lines.
   * @returns Once this reload, or the one it waits behind, is done.
   */
  reload(context = ""): Promise<void> {
    if (this.#served === undefined || this.#running !== undefined) {
      this.#again = true;
      return this.#running ?? Promise.resolve();
    }
    this.#running = this.#run(context).finally(() => {
      this.#running = undefined;
      if (this.#again) {
        this.#again = false;
        this.reload(" (asked for during the previous reload)");
      }
    });
    return this.#running;
  }

  async #run(context: string): Promise<void> {
    const served = this.#served!;
    const logger = this.#log.logger;
    // No old code to keep: a start-up load failed, and this loads it.
    const first = !served.loaded;
    let app = served.current.app;
    logger.info(`${first ? "Loading" : "Reloading"} ${app}${context}`);
    try {
      const next = await this.#reread!();
      app = next.app;
      const waiting = await served.reload(next);
      if (waiting.length > 0) {
        logger.warn(
          `Reload kept ${
            waiting.map((name) => `--${name}`).join(", ")
          } as before: a new value takes effect when m2fetch restarts`,
        );
      }
      logger.info(
        first
          ? `Loaded ${app}${context}: serving it from now on`
          : `Reloaded ${app}${context}: new requests use the new code and options`,
      );
      // Last, so that a reload to --quiet still says it happened.
      this.#log.use(served.current.values);
    } catch (error) {
      // As at start-up: the module's or the file's problem, without
      // m2fetch's frames.
      logger.error(
        first
          ? `Loading ${app} failed${context}; requests still get 503: ${
            messageOf(error)
          }`
          : `Reload of ${app} failed${context}; the old code and options keep serving: ${
            messageOf(error)
          }`,
      );
    }
  }
}
