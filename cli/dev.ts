/**
 * `dev`: a private mongrel2 started for the app, and --watch reloading the
 * app after edits.
 *
 * @module
 */

import { resolve } from "node:path";
import { setHandlerArgs } from "../runtime/handler.ts";
import type { Logger } from "../runtime/log.ts";
import { startMongrel2 } from "../runtime/mongrel2/mod.ts";
import { parse, UsageError } from "./args.ts";
import { answeredHelpOrVersion } from "./help.ts";
import { CliLog, messageOf } from "./log.ts";
import { DEV_OPTIONS, type OptionValues, SERVE_OPTIONS } from "./options.ts";
import { Reloader, type Served } from "./reload.ts";
import { onSignals, serve } from "./serve.ts";
import { resolveSetup } from "./setup.ts";
import { exitProcess } from "./uncaught.ts";
import { type ModuleWatcher, watchModule } from "./watch.ts";
import { WIRING } from "./wiring.ts";

/**
 * Serve options that `dev` sets from its private mongrel2: given on the
 * command line they are a mistake; in `m2fetch.json` they are the
 * production wiring, which `dev` leaves aside.
 */
const DEV_WIRED = [...WIRING, "mongrel2-config", "handler", "route"];

/**
 * The dev command (`cli.ts dev [options] [APP]`): starts a private
 * mongrel2 in --state-dir and serves APP (default examples/hello.ts)
 * behind it, with the specs, upload store and flow control taken from it;
 * --watch reloads APP after edits (in a worker unless --workers is given,
 * so that its imports reload too), and when APP fails to load at start-up
 * answers 503 until an edit lets it load. Stops with SIGINT/SIGTERM, or
 * when mongrel2 exits.
 *
 * @param args The arguments after `dev`.
 * @throws {UsageError} On a command-line mistake, such as a wiring option
 * that dev sets itself.
 *
 * @example Usage
 * ```ts
 * import { runDev } from "./dev.ts";
 * await runDev(["--help"]);
 * ```
 */
export async function runDev(args: string[]): Promise<void> {
  const schema = { ...SERVE_OPTIONS, ...DEV_OPTIONS };
  const parsed = parse(args, schema);
  if (answeredHelpOrVersion(parsed)) return;
  const wired = DEV_WIRED.filter((name) => parsed.flags[name] !== undefined);
  if (wired.length > 0) {
    throw new UsageError(
      `dev wires m2fetch to the mongrel2 it starts, so ${
        wired.map((name) => `--${name}`).join(", ")
      } cannot apply; to serve through your own mongrel2, leave out "dev"`,
    );
  }
  const { app, args: handlerArgs, values, explicit, configFile } =
    await resolveSetup(
      parsed,
      schema,
      new URL("../examples/hello.ts", import.meta.url).pathname,
    );
  setHandlerArgs(handlerArgs);
  const log = new CliLog(values);
  const logger = log.logger;
  if (configFile !== null) logger.info(`Read options from ${configFile}`);
  const reloader = new Reloader(log);
  const mongrel2 = await startMongrel2({
    dir: resolve(values["state-dir"] as string),
    port: values.port as number,
    bindAddress: values.host as string,
    handlers: [{ route: "/", protocol: "tnetstring" }],
  });
  if (mongrel2.replaced !== undefined) {
    logger.warn(
      `Stopped the mongrel2 (pid ${mongrel2.replaced}) that an earlier dev left running in ${mongrel2.dir} when it was killed`,
    );
  }
  // What the private mongrel2 was set up with replaces the file's wiring.
  const withMongrel2 = (
    values: OptionValues,
    explicit: OptionValues,
  ): OptionValues => ({
    ...Object.fromEntries(
      Object.entries(values).filter(([name]) => !DEV_WIRED.includes(name)),
    ),
    // On the main thread a reload re-imports the handler module but not
    // what it imports (Deno caches a module per URL); a worker loads the
    // whole graph afresh, which is what an edit to any file should do.
    ...(values.watch === true && explicit.workers === undefined
      ? { workers: 1 }
      : {}),
    "upload-temp-store": String(mongrel2.settings["upload.temp_store"]),
    "flow-control": mongrel2.settings["download.flow_control"] === 1
      ? "on"
      : "off",
    ...(mongrel2.chroot ? { "mongrel2-chroot": mongrel2.dir } : {}),
  });
  const servedValues = withMongrel2(values, explicit);
  let served: Served;
  // With --watch, a module that fails to load is served once an edit
  // fixes it, as `deno run --watch` waits for one.
  let loadFailure: { error: unknown } | undefined;
  try {
    const [handler] = mongrel2.handlers;
    served = await serve({
      app,
      sendSpec: handler.sendSpec,
      recvSpec: handler.recvSpec,
      values: servedValues,
      logger,
      onLoadFailure: values.watch
        ? (error) => loadFailure = { error }
        : undefined,
    });
  } catch (error) {
    await mongrel2.stop();
    throw error;
  }
  console.log(
    `m2fetch dev: mongrel2 (pid ${mongrel2.pid}, state in ${mongrel2.dir}) is ${
      loadFailure === undefined
        ? `serving ${app}`
        : `answering 503 until ${app} loads`
    } at ${mongrel2.url}/ — press Ctrl-C to stop`,
  );
  log.watch(served.server);
  reloader.serving(served, async () => {
    const next = await resolveSetup(parsed, schema, app);
    return {
      app: next.app,
      values: withMongrel2(next.values, next.explicit),
    };
  });
  const watcher = values.watch
    ? watchReload(reloader, app, servedValues.workers as number, logger)
    : undefined;
  if (loadFailure !== undefined) {
    // After the watcher has started: an edit from now on is not missed.
    logger.error(
      `Loading ${app} failed; requests get 503 until an edit in ${
        watcher!.directory
      } lets it load: ${messageOf(loadFailure.error)}`,
    );
  }
  let stopping = false;
  const stopMongrel2 = () => {
    stopping = true;
    return mongrel2.stop();
  };
  onSignals(served, logger, async () => {
    // A terminal's Ctrl-C reaches mongrel2 too (same process group): its
    // exit from now on is expected.
    stopping = true;
    try {
      await served.stop();
    } finally {
      await stopMongrel2();
    }
  });
  // dev owns its mongrel2: without it nothing reaches the app, so dev
  // ends too, and says why.
  mongrel2.status.then(async (status) => {
    if (stopping) return;
    logger.error(
      `mongrel2 (pid ${mongrel2.pid}) exited unexpectedly (${
        status.signal !== null
          ? `killed by ${status.signal}`
          : `exit code ${status.code}`
      }); its log is ${mongrel2.errorLogPath}. Stopping`,
    );
    watcher?.close();
    await served.stop(0).catch(() => {});
    exitProcess(1);
  });
  await served.server.finished;
  watcher?.close();
  await stopMongrel2();
}

/**
 * dev --watch: reloads the handler module after edits in its directory.
 * Requests in flight finish on the old code; a module that fails to load
 * leaves the old code serving (or, after a failed start-up load, 503).
 */
function watchReload(
  reloader: Reloader,
  app: string,
  workers: number,
  logger: Logger,
): ModuleWatcher {
  let reloads = 0;
  const watcher = watchModule(app, async (paths) => {
    const count = ++reloads;
    if (workers === 0 && paths.some((path) => path !== watcher.module)) {
      logger.warn(
        "Modules the handler imports stay cached on the main thread (Deno caches a module per URL): only the handler module itself is reloaded; without --workers 0, dev --watch serves from a worker and reloads its imports too",
      );
    }
    const edited = paths.map((path) =>
      path.startsWith(`${watcher.directory}/`)
        ? path.slice(watcher.directory.length + 1)
        : path
    ).join(", ");
    await reloader.reload(` (reload ${count}, after edits to ${edited})`);
  }, {
    onError: (error) =>
      logger.error(`Watching for edits to ${app} failed`, error),
  });
  logger.info(
    `Watching ${watcher.directory} for edits: ${app} reloads without restarting mongrel2${
      workers > 0 ? ", in fresh workers with everything it imports" : ""
    }`,
  );
  return watcher;
}
