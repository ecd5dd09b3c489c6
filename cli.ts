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
import { setHandlerArgs } from "./runtime/handler.ts";
import type { Logger } from "./runtime/log.ts";
import { startMongrel2 } from "./runtime/mongrel2/mod.ts";
import { parse, UsageError } from "./cli/args.ts";
import {
  CONFIG_FILE_NAME,
  readConfigFile,
  writeConfigFile,
} from "./cli/config_file.ts";
import { answeredHelpOrVersion } from "./cli/help.ts";
import { CliLog, messageOf } from "./cli/log.ts";
import {
  CONF_OPTIONS,
  DEV_OPTIONS,
  INIT_OPTIONS,
  type OptionValues,
  SERVE_OPTIONS,
  withDefaults,
} from "./cli/options.ts";
import { Reloader, type Served } from "./cli/reload.ts";
import {
  type HandlerConf,
  initAppDir,
  type InitResult,
  renderHandlerConf,
} from "./cli/scaffold.ts";
import { onSignals, runServe, serve } from "./cli/serve.ts";
import { appDirectory, mapRelativePaths, resolveSetup } from "./cli/setup.ts";
import { handleUncaught } from "./cli/uncaught.ts";
import { type ModuleWatcher, watchModule } from "./cli/watch.ts";
import {
  checkEndpoints,
  checkHandlerChoice,
  uploadOptions,
  WIRING,
} from "./cli/wiring.ts";

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
