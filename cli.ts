/**
 * The m2fetch command line.
 *
 * ```sh
 * deno run -A cli.ts [options] app.ts        # serve app.ts behind a running mongrel2
 * deno run -A cli.ts dev [options] app.ts    # start a private mongrel2 and serve app.ts behind it
 * ```
 *
 * Run with `--help` for every option.
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { UsageError } from "./cli/args.ts";
import { runConfig } from "./cli/config.ts";
import { runDev } from "./cli/dev.ts";
import { runInit } from "./cli/init.ts";
import { messageOf } from "./cli/log.ts";
import { runMongrel2Conf } from "./cli/mongrel2_conf.ts";
import { runServe } from "./cli/serve.ts";
import { exitProcess, handleUncaught, reportFatal } from "./cli/uncaught.ts";

/**
 * Runs the command line.
 *
 * @param args The arguments (without the program name).
 * @returns The exit code.
 *
 * @example Usage
 * ```ts ignore
 * import { main } from "./cli.ts";
 * Deno.exit(await main(["--version"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  try {
    if (args[0] === "dev") await runDev(args.slice(1));
    else if (args[0] === "config") await runConfig(args.slice(1));
    else if (args[0] === "mongrel2-conf") await runMongrel2Conf(args.slice(1));
    else if (args[0] === "init") await runInit(args.slice(1));
    else await runServe(args);
    return 0;
  } catch (error) {
    // Log lines of this turn (which file was read, say) come first.
    await new Promise((resolve) => setImmediate(resolve));
    reportFatal(messageOf(error));
    return error instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) {
  handleUncaught();
  exitProcess(await main(Deno.args));
}
