/**
 * The command's log: the logger that the server, the workers and the
 * command write through, which follows --quiet and --log-format across
 * reloads, and the SIGUSR2 status line.
 *
 * @module
 */

import { errorMessage } from "../runtime/error_message.ts";
import { createLogger, type Logger } from "../runtime/log.ts";
import type { Mongrel2Server } from "../runtime/server.ts";
import type { OptionValues } from "./options.ts";
import { reportUncaughtIn } from "./uncaught.ts";

/**
 * The message of a thrown value for a log line or the terminal: as
 * {@linkcode errorMessage} gives it, without terminal colours.
 *
 * @param error What was thrown.
 * @returns Its message, plain.
 *
 * @example Usage
 * ```ts
 * import { messageOf } from "./log.ts";
 * console.assert(messageOf(new Error("\x1b[31mbad\x1b[0m module")) === "bad module");
 * ```
 */
export function messageOf(error: unknown): string {
  // Deno colours some module errors; a log is no terminal.
  // deno-lint-ignore no-control-regex
  return errorMessage(error).replace(/\x1b\[[0-9;]*m/g, "");
}

/** The process's resident memory and the main thread's V8 heap. */
function memory(): string {
  const { rss, heapUsed, external } = Deno.memoryUsage();
  return `rss ${rss} bytes (main thread: heap ${heapUsed}, external ${external})`;
}

/**
 * The command's log: a reload may change --quiet and --log-format, so the
 * server, the workers and the CLI write through this one, whose target is
 * replaced. Uncaught errors go to it too (see cli/uncaught.ts).
 *
 * @example Usage
 * ```ts
 * import { CliLog } from "./log.ts";
 * const log = new CliLog({ "log-format": "text", quiet: false });
 * log.logger.info("Starting");
 * // After a reload that turned --log-format json on:
 * log.use({ "log-format": "json", quiet: false });
 * log.logger.info("Reloaded");
 * ```
 */
export class CliLog {
  #current!: Logger;
  /** Writes status lines, which were asked for, even with --quiet. */
  #status!: Logger;

  /** The logger to hand out; it follows {@linkcode CliLog.use}. */
  readonly logger: Logger = {
    error: (message, error) => this.#current.error(message, error),
    warn: (message) => this.#current.warn(message),
    info: (message) => this.#current.info(message),
    access: (entry) => this.#current.access(entry),
  };

  #server: Mongrel2Server | undefined;
  #format: string | undefined;
  #quiet: boolean | undefined;
  #showSender: boolean | undefined;

  /**
   * Creates the log, with the values of --quiet and --log-format given,
   * and makes it the one uncaught errors (and, in JSON, the failure that
   * ends the command) are reported in.
   *
   * @param values The option values.
   */
  constructor(values: OptionValues) {
    this.use(values);
    // SIGUSR2 logs one status line: connections held, requests in flight
    // and the process's resident memory (for soak runs and leak hunting).
    // Listening from the start keeps the signal's default action (exit)
    // away from a process that is still loading its handler.
    Deno.addSignalListener("SIGUSR2", () => {
      const server = this.#server;
      this.#status.info(
        server === undefined
          ? "status: starting"
          : `status: ${server.connections} connection(s), ${server.inFlight} request(s) in flight, ${memory()}`,
      );
    });
  }

  /**
   * Status lines report this server from now on.
   *
   * @param server The server started.
   */
  watch(server: Mongrel2Server): void {
    this.#server = server;
  }

  /**
   * Logs with these values of --quiet and --log-format from now on.
   *
   * @param values The option values.
   */
  use(values: OptionValues): void {
    const format = values["log-format"] as "text" | "json";
    const quiet = values.quiet as boolean;
    // Connection ids of several mongrel2 servers overlap.
    const showSender = [values["send-spec"] ?? []].flat().length > 1;
    // A new logger only for a change: each holds a buffer and an exit hook.
    if (
      format === this.#format && quiet === this.#quiet &&
      showSender === this.#showSender
    ) return;
    this.#format = format;
    this.#quiet = quiet;
    this.#showSender = showSender;
    this.#current = createLogger({ format, quiet, showSender });
    this.#status = quiet ? createLogger({ format }) : this.#current;
    reportUncaughtIn(this.logger, format === "json");
  }
}
