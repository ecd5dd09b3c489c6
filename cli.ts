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

import { relative, resolve } from "node:path";
import { setImmediate } from "node:timers";
import denoJson from "./deno.json" with { type: "json" };
import {
  loadedWithin,
  loadHandler,
  setHandlerArgs,
} from "./runtime/handler.ts";
import { WorkerPool } from "./runtime/workers/pool.ts";
import type { Logger } from "./runtime/log.ts";
import { parse, UsageError } from "./cli/args.ts";
import { answeredHelpOrVersion } from "./cli/help.ts";
import { CliLog, messageOf } from "./cli/log.ts";
import { handleUncaught } from "./cli/uncaught.ts";
import {
  appDirectory,
  mapRelativePaths,
  resolveSetup,
  type Setup,
} from "./cli/setup.ts";
import {
  applyDiscovery,
  checkEndpoints,
  checkHandlerChoice,
  uploadOptions,
  WIRING,
} from "./cli/wiring.ts";
import {
  CONF_OPTIONS,
  DEV_OPTIONS,
  INIT_OPTIONS,
  type OptionSpec,
  type OptionValues,
  SERVE_OPTIONS,
  withDefaults,
} from "./cli/options.ts";
import {
  type Mongrel2Server,
  serveMongrel2,
  type ServerSettings,
} from "./runtime/server.ts";
import {
  CONFIG_FILE_NAME,
  readConfigFile,
  writeConfigFile,
} from "./cli/config_file.ts";
import {
  storeCannotDelete,
  storeDirectory,
  sweepStaleUploads,
} from "./runtime/upload/store.ts";
import { ZmqTransport } from "./runtime/transport/zmq.ts";
import { startMongrel2 } from "./runtime/mongrel2/mod.ts";
import {
  type HandlerConf,
  initAppDir,
  type InitResult,
  renderHandlerConf,
} from "./cli/scaffold.ts";
import { type ModuleWatcher, watchModule } from "./cli/watch.ts";

interface ServeSetup {
  app: string;
  /** One spec, or one per mongrel2 server. */
  sendSpec: string | string[];
  /** One spec, or one per mongrel2 server. */
  recvSpec: string | string[];
  values: OptionValues;
  logger: Logger;
}

/** A server with the handler it runs, which a reload can replace. */
interface Served {
  server: Mongrel2Server;
  /** What is served now; a reload replaces it. */
  readonly current: Setup;
  /**
   * Loads the handler module afresh and applies the options that a reload
   * can change (requests in flight finish on the old code and settings).
   * Options that need a restart keep their values.
   *
   * @returns The options whose new values wait for a restart.
   */
  reload(next: Setup): Promise<string[]>;
  /** Graceful shutdown (bounded by --shutdown-timeout), then the workers stop. */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Loads the handler: in Web Workers when --workers is above 0, else on the
 * main thread. Reloading on the main thread re-imports the module under a
 * new URL (Deno caches modules per URL); workers load it in fresh isolates,
 * which also picks up changed imports.
 */
async function startHandler(app: string, values: OptionValues, logger: Logger) {
  const workers = values.workers as number;
  if (workers > 0) {
    const pool = await WorkerPool.start({
      module: app,
      workers,
      // What setHandlerArgs() gave the main thread, for each worker.
      args: Deno.args,
      logger,
      unresponsiveTimeout: values["worker-timeout"] as number,
    });
    return {
      fetch: pool.fetch,
      description: `${workers} worker${workers === 1 ? "" : "s"}`,
      reload: (_server: Mongrel2Server, next: Setup) =>
        pool.reload(next.values["shutdown-timeout"] as number, {
          module: next.app,
          workers: next.values.workers as number,
        }),
      close: () => pool.close(),
    };
  }
  const loaded = await loadHandler(app);
  let generation = 0;
  return {
    fetch: loaded.fetch,
    description: `export ${loaded.source}, main thread`,
    reload: async (server: Mongrel2Server, next: Setup) => {
      const url = new URL(next.app, `file://${Deno.cwd()}/`);
      url.searchParams.set("m2fetch-reload", String(++generation));
      server.setHandler((await loadedWithin(loadHandler(url.href))).fetch);
    },
    close: () => Promise.resolve(),
  };
}

/**
 * The options whose values differ between two setups and that a reload
 * cannot apply: every option not marked `reloads` in the schema, and
 * --workers between 0 (the main thread) and more.
 */
function restartOnlyChanges(
  before: OptionValues,
  after: OptionValues,
): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...names].filter((name) => {
    if (JSON.stringify(before[name]) === JSON.stringify(after[name])) {
      return false;
    }
    if (name === "workers") {
      return (before.workers === 0) !== (after.workers === 0);
    }
    return !(SERVE_OPTIONS as Record<string, OptionSpec>)[name]?.reloads;
  });
}

function serverSettings(values: OptionValues): ServerSettings {
  return {
    idleTimeout: values["idle-timeout"] as number,
    writeTimeout: values["write-timeout"] as number,
    keepAliveInterval: values["keep-alive-interval"] as number,
    maxBodySize: values["max-body-size"] as number | undefined,
    handlerTimeout: values.timeout as number,
    invokeAt: values["upload-invoke"] as "start" | "done",
  };
}

async function serve(setup: ServeSetup): Promise<Served> {
  const { app, sendSpec, recvSpec, values, logger } = setup;
  checkEndpoints(sendSpec, recvSpec);
  const uploads = uploadOptions(values);
  if (uploads === undefined && values["sweep-uploads"] === true) {
    throw new UsageError(
      "Cannot use --sweep-uploads without --upload-temp-store (or --mongrel2-config): the template says which files are uploads",
    );
  }
  const handler = await startHandler(app, values, logger);
  if (uploads !== undefined) {
    const why = await storeCannotDelete(await storeDirectory(uploads.store));
    if (why !== null) logger.warn(why);
    if (values["sweep-uploads"]) {
      const removed = await sweepStaleUploads(
        uploads.store,
        values["write-timeout"] as number,
      );
      logger.info(
        `Swept ${removed.length} stale upload file(s)${
          removed.length > 0 ? `: ${removed.join(", ")}` : ""
        }`,
      );
    }
  }
  const transport = new ZmqTransport({
    sendSpec,
    recvSpec,
    onError: (error) => logger.error("ZeroMQ transport error", error),
    onStatus: (message) => logger.info(message),
    onWarning: (message) => logger.warn(message),
  });
  const server = serveMongrel2({
    handler: handler.fetch,
    transport,
    logger,
    ...serverSettings(values),
    uploads,
    flowControl: { on: true, off: false }[values["flow-control"] as string],
  });
  logger.info(
    `m2fetch ${denoJson.version} serving ${app} (${handler.description}) via mongrel2: requests from ${
      [sendSpec].flat().join(", ")
    }, replies to ${[recvSpec].flat().join(", ")}${
      uploads
        ? `, uploads from ${uploads.store.template}${
          uploads.store.chroot === undefined
            ? ""
            : ` in mongrel2's chroot ${uploads.store.chroot}`
        }`
        : ""
    }`,
  );
  let current: Setup = { app, values };
  return {
    server,
    get current() {
      return current;
    },
    async reload(next) {
      const waiting = restartOnlyChanges(current.values, next.values);
      const values = { ...next.values };
      for (const name of waiting) values[name] = current.values[name];
      await handler.reload(server, { app: next.app, values });
      server.reconfigure(serverSettings(values));
      current = { app: next.app, values };
      return waiting;
    },
    stop: async (timeoutMs = current.values["shutdown-timeout"] as number) => {
      try {
        await server.shutdown(timeoutMs);
      } finally {
        await handler.close();
      }
    },
  };
}

/**
 * Reloads on SIGHUP: reads the options again (m2fetch.json, and mongrel2's
 * config database with --mongrel2-config), loads the handler module afresh
 * and applies the options a reload can change. A module or configuration
 * that fails leaves the old code and options serving. A SIGHUP during
 * start-up is not lost (nor fatal, its default action): the reload runs
 * once serving.
 */
class Reloader {
  #log: CliLog;
  #reread: (() => Promise<Setup>) | undefined;
  #served: Served | undefined;
  #running: Promise<void> | undefined;
  #again = false;

  constructor(log: CliLog) {
    this.#log = log;
    Deno.addSignalListener("SIGHUP", () => void this.reload());
  }

  /** Starts reloading for real; a SIGHUP that came during start-up runs now. */
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
    let app = served.current.app;
    logger.info(`Reloading ${app}${context}`);
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
        `Reloaded ${app}${context}: new requests use the new code and options`,
      );
      // Last, so that a reload to --quiet still says it happened.
      this.#log.use(served.current.values);
    } catch (error) {
      // As at start-up: the module's or the file's problem, without
      // m2fetch's frames.
      logger.error(
        `Reload of ${app} failed${context}; the old code and options keep serving: ${
          messageOf(error)
        }`,
      );
    }
  }
}

function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handle = () => {
    if (stopping) Deno.exit(130);
    stopping = true;
    stop().then(() => Deno.exit(0), (error) => {
      console.error(error);
      Deno.exit(1);
    });
  };
  Deno.addSignalListener("SIGINT", handle);
  Deno.addSignalListener("SIGTERM", handle);
}

async function runServe(args: string[]): Promise<void> {
  const parsed = parse(args, SERVE_OPTIONS);
  if (answeredHelpOrVersion(parsed)) return;
  const setup = await resolveSetup(parsed, SERVE_OPTIONS);
  setHandlerArgs(setup.args);
  const log = new CliLog(setup.values);
  const logger = log.logger;
  const reloader = new Reloader(log);
  const discovered = (next: typeof setup): Setup => {
    if (next.configFile !== null) {
      logger.info(`Read options from ${next.configFile}`);
    }
    return {
      app: next.app,
      values: applyDiscovery(next.values, next.explicit, logger),
    };
  };
  const { app, values } = discovered(setup);
  const served = await serve({
    app,
    sendSpec: values["send-spec"] as string[],
    recvSpec: values["recv-spec"] as string[],
    values,
    logger,
  });
  log.watch(served.server);
  reloader.serving(
    served,
    async () => discovered(await resolveSetup(parsed, SERVE_OPTIONS)),
  );
  onSignals(async () => {
    logger.info("Shutting down: finishing responses in flight");
    await served.stop();
  });
  await served.server.finished;
}

async function runConfig(args: string[]): Promise<void> {
  const parsed = parse(args, SERVE_OPTIONS, { unset: true });
  if (answeredHelpOrVersion(parsed)) return;
  if (parsed.appPath === undefined) {
    throw new UsageError(
      "Missing --app-path DIR: config writes DIR/m2fetch.json",
    );
  }
  if (parsed.positionals.length > 1) {
    throw new UsageError(
      `Expected at most one handler module, got ${parsed.positionals.length}`,
    );
  }
  const dir = await appDirectory(parsed.appPath);
  const values: OptionValues = { ...parsed.flags };
  if (parsed.positionals[0] !== undefined) values.app = parsed.positionals[0];
  if (parsed.appArgs !== undefined) values.args = parsed.appArgs;
  // Given relative to the working directory, kept relative to the file's.
  mapRelativePaths(values, (path) => relative(dir, resolve(path)) || ".");
  const path = `${dir}/${CONFIG_FILE_NAME}`;
  // Checked together with what the file already holds, as serving will.
  for (const name of parsed.unset) {
    if (
      name !== "app" && name !== "args" && !Object.hasOwn(SERVE_OPTIONS, name)
    ) {
      throw new UsageError(
        `Cannot unset "${name}": m2fetch.json holds app, args and the options (${
          Object.keys(SERVE_OPTIONS).join(", ")
        })`,
      );
    }
    if (Object.hasOwn(values, name)) {
      throw new UsageError(`Cannot both set and unset "${name}"`);
    }
  }
  const existing = await readConfigFile(path, SERVE_OPTIONS) ?? {};
  for (const name of parsed.unset) delete existing[name];
  const merged = withDefaults(SERVE_OPTIONS, existing, values);
  uploadOptions(merged);
  checkHandlerChoice(merged);
  checkEndpoints(
    values["send-spec"] as string[] | undefined,
    values["recv-spec"] as string[] | undefined,
  );
  const written = await writeConfigFile(
    path,
    values,
    SERVE_OPTIONS,
    parsed.unset,
  );
  console.log(`Wrote ${path}:\n${JSON.stringify(written, null, 2)}`);
}

/**
 * Serve options that `dev` sets from its private mongrel2: given on the
 * command line they are a mistake; in `m2fetch.json` they are the
 * production wiring, which `dev` leaves aside.
 */
const DEV_WIRED = [...WIRING, "mongrel2-config", "handler", "route"];

async function runDev(args: string[]): Promise<void> {
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
  const { app, args: handlerArgs, values } = await resolveSetup(
    parsed,
    schema,
    new URL("./examples/hello.ts", import.meta.url).pathname,
  );
  setHandlerArgs(handlerArgs);
  const log = new CliLog(values);
  const logger = log.logger;
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
  const withMongrel2 = (values: OptionValues): OptionValues => ({
    ...Object.fromEntries(
      Object.entries(values).filter(([name]) => !DEV_WIRED.includes(name)),
    ),
    "upload-temp-store": String(mongrel2.settings["upload.temp_store"]),
    "flow-control": mongrel2.settings["download.flow_control"] === 1
      ? "on"
      : "off",
    ...(mongrel2.chroot ? { "mongrel2-chroot": mongrel2.dir } : {}),
  });
  let served: Served;
  try {
    const [handler] = mongrel2.handlers;
    served = await serve({
      app,
      sendSpec: handler.sendSpec,
      recvSpec: handler.recvSpec,
      values: withMongrel2(values),
      logger,
    });
  } catch (error) {
    await mongrel2.stop();
    throw error;
  }
  console.log(
    `m2fetch dev: mongrel2 (pid ${mongrel2.pid}, state in ${mongrel2.dir}) is serving ${app} at ${mongrel2.url}/ — press Ctrl-C to stop`,
  );
  log.watch(served.server);
  reloader.serving(served, async () => {
    const next = await resolveSetup(parsed, schema, app);
    return { app: next.app, values: withMongrel2(next.values) };
  });
  const watcher = values.watch
    ? watchReload(reloader, app, values.workers as number, logger)
    : undefined;
  let stopping = false;
  const stopMongrel2 = () => {
    stopping = true;
    return mongrel2.stop();
  };
  onSignals(async () => {
    // A terminal's Ctrl-C reaches mongrel2 too (same process group): its
    // exit from now on is expected.
    stopping = true;
    logger.info("Shutting down: finishing responses in flight");
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
    Deno.exit(1);
  });
  await served.server.finished;
  watcher?.close();
  await stopMongrel2();
}

/**
 * dev --watch: reloads the handler module after edits in its directory.
 * Requests in flight finish on the old code; a module that fails to load
 * leaves the old code serving.
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
        "Modules the handler imports stay cached on the main thread (Deno caches a module per URL): only the handler module itself is reloaded; use --workers 1 to reload its imports too",
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
    `Watching ${watcher.directory} for edits: ${app} reloads without restarting mongrel2`,
  );
  return watcher;
}

async function runMongrel2Conf(args: string[]): Promise<void> {
  const schema = { ...SERVE_OPTIONS, ...CONF_OPTIONS };
  const parsed = parse(args, schema);
  if (answeredHelpOrVersion(parsed)) return;
  // No APP is fine: the conf only needs the options.
  const { values } = await resolveSetup(parsed, schema, "");
  const sendSpecs = values["send-spec"] as string[];
  const recvSpecs = values["recv-spec"] as string[];
  if (sendSpecs.length !== 1 || recvSpecs.length !== 1) {
    throw new UsageError(
      `Cannot render one mongrel2.conf for ${sendSpecs.length} send and ${recvSpecs.length} recv specs: render one per mongrel2 server, each with its own --send-spec, --recv-spec, --port and --send-ident (flags replace the lists in m2fetch.json)`,
    );
  }
  const chroot = values["mongrel2-chroot"] as string | undefined;
  const given = values["mongrel2-dir"] as string | undefined;
  if (
    chroot !== undefined && given !== undefined &&
    resolve(chroot) !== resolve(given)
  ) {
    throw new UsageError(
      `Cannot use --mongrel2-dir ${given} with --mongrel2-chroot ${chroot}: a chrooted mongrel2 runs in its chroot`,
    );
  }
  const dir = resolve(chroot ?? given ?? ".");
  const template = values["upload-temp-store"] as string | undefined;
  let conf: HandlerConf;
  try {
    conf = renderHandlerConf({
      dir,
      chroot: chroot !== undefined,
      port: values.port as number,
      bindAddress: values.host as string,
      sendSpec: sendSpecs[0],
      recvSpec: recvSpecs[0],
      sendIdent: values["send-ident"] as string | undefined,
      uploadTempStore: template,
      notes: [],
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const flags = Object.entries(conf.m2fetch).map(([name, value]) =>
    `--${name} ${[value].flat().join(` --${name} `)}`
  ).join(" ");
  const header = [
    `# Before loading: mkdir -p ${dir}/run ${dir}/logs ${dir}/tmp`,
    `# Load and start${
      chroot !== undefined
        ? " as root (mongrel2 chroots into the directory)"
        : ""
    }, from ${dir}:`,
    "#   m2sh load -config mongrel2.conf -db config.sqlite",
    "#   m2sh start -db config.sqlite -name main",
    "# m2fetch options that match it:",
    `#   ${flags}`,
    "# Several mongrel2 servers sharing one m2fetch: render one file per server,",
    "# each with its own --send-spec, --recv-spec, --port and --send-ident, and",
    "# give m2fetch every --send-spec and --recv-spec.",
  ];
  const lines = conf.text.split("\n");
  lines.splice(1, 0, ...header);
  console.log(lines.join("\n").trimEnd());
}

async function runInit(args: string[]): Promise<void> {
  const parsed = parse(args, INIT_OPTIONS);
  if (answeredHelpOrVersion(parsed)) return;
  if (parsed.positionals.length !== 1) {
    throw new UsageError(
      `Expected one app directory: m2fetch init [options] DIR, got ${parsed.positionals.length} arguments`,
    );
  }
  const values = withDefaults(INIT_OPTIONS, parsed.flags);
  checkEndpoints(
    values["send-spec"] as string | undefined,
    values["recv-spec"] as string | undefined,
  );
  let result: InitResult;
  try {
    result = await initAppDir(parsed.positionals[0], {
      port: values.port as number,
      bindAddress: values.host as string,
      sendSpec: values["send-spec"] as string | undefined,
      recvSpec: values["recv-spec"] as string | undefined,
    });
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new UsageError(error.message);
    }
    throw error;
  }
  console.log(
    `Created ${result.dir}: ${
      result.files.join(", ")
    } (and run/ logs/ tmp/ for mongrel2). Next: cd ${result.dir} and follow README.md`,
  );
}

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
    console.error(`m2fetch: ${messageOf(error)}`);
    return error instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) {
  handleUncaught();
  Deno.exit(await main(Deno.args));
}
