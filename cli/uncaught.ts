/**
 * What the m2fetch process does with an error that no code caught: the
 * handler's, most likely, reported in m2fetch's log once there is one.
 *
 * @module
 */

import type { Logger } from "../runtime/log.ts";

/**
 * The serving process's log, once its options are known: set by
 * {@linkcode reportUncaughtIn}, read by the listeners of
 * {@linkcode handleUncaught}.
 */
let processLog: Logger | undefined;
/** Whether {@linkcode processLog} writes JSON lines. */
let processLogIsJson = false;

/**
 * `Deno.exit` as Deno made it, for m2fetch's own exits:
 * {@linkcode handleUncaught} gives handler code one that says so first.
 *
 * @example Usage
 * ```ts ignore
 * import { exitProcess } from "./uncaught.ts";
 * exitProcess(0);
 * ```
 */
export const exitProcess: (code?: number) => never = Deno.exit;

/**
 * Reports uncaught errors in `logger` from now on, in the log's format
 * (until then they go to stderr). `CliLog` (cli/log.ts) calls it with
 * its logger once the options are known, and again when they change.
 *
 * @param logger The serving process's log.
 * @param json Whether it writes JSON lines: a failure that ends the
 *   command ({@linkcode reportFatal}) then goes to it too.
 *
 * @example Usage
 * ```ts
 * import { reportUncaughtIn } from "./uncaught.ts";
 * import { createLogger } from "../runtime/log.ts";
 * reportUncaughtIn(createLogger({ format: "json" }), true);
 * ```
 */
export function reportUncaughtIn(logger: Logger, json: boolean): void {
  processLog = logger;
  processLogIsJson = json;
}

/**
 * Reports the failure that ends the command: as an error line when the
 * log writes JSON, so that a log pipeline reading every line as JSON gets
 * it, else as `m2fetch: MESSAGE` on stderr.
 *
 * @param message What failed and why.
 *
 * @example Usage
 * ```ts
 * import { reportFatal } from "./uncaught.ts";
 * reportFatal("Cannot load handler module app.ts: file not found");
 * ```
 */
export function reportFatal(message: string): void {
  if (processLog !== undefined && processLogIsJson) {
    processLog.error(message);
  } else {
    console.error(`m2fetch: ${message}`);
  }
}

/**
 * An uncaught error (a handler's timer that throws, say) is reported as
 * m2fetch's and ends the process with 1, as `deno serve` does. An unhandled
 * rejection is only logged: a handler's stray promise must not take every
 * other request down with it. Both go to the log in its format (one JSON
 * object per line with --log-format json) once there is one.
 *
 * @example Usage
 * ```ts
 * import { handleUncaught } from "./uncaught.ts";
 * // First thing in the process, before any handler code runs:
 * handleUncaught();
 * ```
 */
export function handleUncaught(): void {
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    report("Uncaught error in handler code; exiting with 1", event.error);
    exitProcess(1);
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    report(
      "Unhandled promise rejection in handler code; still serving",
      event.reason,
    );
  });
  // Deno.exit() in a handler on the main thread ends m2fetch with every
  // request in flight, as it ends deno serve: say so, or the process just
  // vanishes with the handler's code and not a line in its log. (In a
  // worker it ends the worker, which worker_main.ts reports.)
  Object.defineProperty(Deno, "exit", {
    value: (code?: number): never => {
      const exitCode = code ?? Deno.exitCode;
      report(
        `Handler code called Deno.exit(${
          code ?? ""
        }); exiting with ${exitCode}, cutting the requests in flight`,
      );
      return exitProcess(code);
    },
    configurable: true,
    writable: true,
  });
}

/** To the log in its format once there is one, else to stderr. */
function report(why: string, error?: unknown): void {
  if (processLog === undefined) {
    if (error === undefined) console.error(`m2fetch: ${why}`);
    else console.error(`m2fetch: ${why}:`, error);
  } else {
    processLog.error(why, error);
  }
}
