/**
 * Serving a handler module behind mongrel2: the handler started on the
 * main thread or in workers, the server with its transport and upload
 * store, graceful stops on SIGINT/SIGTERM, and the serve command itself.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };
import {
  loadedWithin,
  loadHandler,
  setHandlerArgs,
} from "../runtime/handler.ts";
import type { Logger } from "../runtime/log.ts";
import {
  type Mongrel2Server,
  serveMongrel2,
  type ServerSettings,
} from "../runtime/server.ts";
import { ZmqTransport } from "../runtime/transport/zmq.ts";
import {
  storeCannotDelete,
  storeDirectory,
  sweepStaleUploads,
} from "../runtime/upload/store.ts";
import { WorkerPool } from "../runtime/workers/pool.ts";
import { closest, listed, parse, UsageError } from "./args.ts";
import { answeredHelpOrVersion } from "./help.ts";
import { CliLog, messageOf } from "./log.ts";
import {
  type OptionSpec,
  type OptionValues,
  SERVE_OPTIONS,
} from "./options.ts";
import { Reloader, type Served } from "./reload.ts";
import { resolveSetup, type Setup } from "./setup.ts";
import { exitProcess } from "./uncaught.ts";
import { applyDiscovery, checkEndpoints, uploadOptions } from "./wiring.ts";

/**
 * What {@linkcode serve} serves, and through which mongrel2 sockets.
 *
 * @example Usage
 * ```ts
 * import type { ServeSetup } from "./serve.ts";
 * import { SERVE_OPTIONS, withDefaults } from "./options.ts";
 * import { createLogger } from "../runtime/log.ts";
 * const setup: ServeSetup = {
 *   app: "examples/hello.ts",
 *   sendSpec: "tcp://127.0.0.1:9997",
 *   recvSpec: "tcp://127.0.0.1:9996",
 *   values: withDefaults(SERVE_OPTIONS),
 *   logger: createLogger(),
 * };
 * console.assert(setup.values.workers === 0);
 * ```
 */
export interface ServeSetup {
  /** The handler module. */
  app: string;
  /** One spec, or one per mongrel2 server. */
  sendSpec: string | string[];
  /** One spec, or one per mongrel2 server. */
  recvSpec: string | string[];
  /** Every option's value. */
  values: OptionValues;
  /** The command's log. */
  logger: Logger;
  /**
   * Serve even when the handler module fails to load at start-up (dev
   * --watch, which waits for an edit): called with the error, then every
   * request gets 503 with the latest load error until a reload loads the
   * module. Without it, the error is thrown.
   */
  onLoadFailure?: (error: unknown) => void;
}

/**
 * How long start-up waits for the handler module before saying that it is
 * still waiting (ms).
 */
export const STILL_LOADING_WARNING_MS = 5_000;

/**
 * Waits for the handler module's first load, with a warning when it takes
 * longer than {@linkcode STILL_LOADING_WARNING_MS}: a top-level `await`
 * that never settles (or a worker's endless loop) would otherwise leave
 * m2fetch silent, serving nothing, with no line saying why. Start-up keeps
 * waiting: a module may have slow work to do first.
 */
function loadedAtStart<T>(
  loading: Promise<T>,
  app: string,
  logger: Logger,
): Promise<T> {
  const timer = setTimeout(() =>
    logger.warn(
      `The handler module ${app} has not finished loading after ${
        STILL_LOADING_WARNING_MS / 1000
      } s (a top-level await that never settles, or a loop that never yields?); m2fetch starts serving once it has, and mongrel2 holds requests until then`,
    ), STILL_LOADING_WARNING_MS);
  return loading.finally(() => clearTimeout(timer));
}

/**
 * Main-thread loads so far. Deno caches a module, and a failed load too,
 * per URL for the whole process: each load after the first imports the
 * module under a new URL.
 */
let mainThreadLoads = 0;

function mainThreadSpecifier(app: string): string {
  if (mainThreadLoads++ === 0) return app;
  const url = new URL(app, `file://${Deno.cwd()}/`);
  url.searchParams.set("m2fetch-reload", String(mainThreadLoads - 1));
  return url.href;
}

/**
 * Loads the handler: in Web Workers when --workers is above 0, else on the
 * main thread. Reloading on the main thread re-imports the module under a
 * new URL; workers load it in fresh isolates, which also picks up changed
 * imports. `loaded` waits for the first load: as long as it takes at
 * start-up, bounded when a reload loads a module that failed then.
 */
async function startHandler(
  app: string,
  values: OptionValues,
  logger: Logger,
  loaded: <T>(loading: Promise<T>) => Promise<T>,
) {
  const workers = values.workers as number;
  if (workers > 0) {
    const starting = WorkerPool.start({
      module: app,
      workers,
      // What setHandlerArgs() gave the main thread, for each worker.
      args: Deno.args,
      logger,
      unresponsiveTimeout: values["worker-timeout"] as number,
    });
    const pool = await loaded(starting).catch((error) => {
      // A load given up on: its workers must not serve, nor outlive it.
      starting.then((late) => late.close(), () => {});
      throw error;
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
  const handler = await loaded(loadHandler(mainThreadSpecifier(app)));
  return {
    fetch: handler.fetch,
    description: `export ${handler.source}, main thread`,
    reload: async (server: Mongrel2Server, next: Setup) => {
      server.setHandler(
        (await loadedWithin(loadHandler(mainThreadSpecifier(next.app)))).fetch,
      );
    },
    close: () => Promise.resolve(),
  };
}

/** What a request gets while the handler module has not loaded. */
function notLoaded(error: unknown): Response {
  return new Response(
    `The handler module has not loaded; m2fetch answers 503 until a reload (under dev --watch, an edit) loads it.\n\n${
      messageOf(error)
    }\n`,
    {
      status: 503,
      headers: { "content-type": "text/plain; charset=utf-8" },
    },
  );
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

/**
 * Checks the options, starts the handler (on the main thread or in
 * workers), sweeps the upload store when asked to, and serves it through
 * mongrel2's sockets.
 *
 * @param setup The module, the specs, the options and the log.
 * @returns The running server, which can reload and stop.
 * @throws {UsageError} On options that do not fit together.
 *
 * @example Usage
 * ```ts
 * import { serve, type ServeSetup } from "./serve.ts";
 * declare const setup: ServeSetup;
 * const served = await serve(setup);
 * await served.server.finished;
 * ```
 */
export async function serve(setup: ServeSetup): Promise<Served> {
  const { app, sendSpec, recvSpec, values, logger } = setup;
  checkEndpoints(sendSpec, recvSpec);
  const uploads = uploadOptions(values);
  if (uploads === undefined && values["sweep-uploads"] === true) {
    throw new UsageError(
      "Cannot use --sweep-uploads without --upload-temp-store (or --mongrel2-config): the template says which files are uploads",
    );
  }
  let handler: Awaited<ReturnType<typeof startHandler>> | undefined;
  let loadError: unknown;
  try {
    handler = await startHandler(
      app,
      values,
      logger,
      (loading) => loadedAtStart(loading, app, logger),
    );
  } catch (error) {
    if (setup.onLoadFailure === undefined) throw error;
    loadError = error;
    setup.onLoadFailure(error);
  }
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
    stalledReplyMs: values["mongrel2-stall-timeout"] as number,
  });
  const server = serveMongrel2({
    handler: handler?.fetch ?? (() => notLoaded(loadError)),
    transport,
    logger,
    ...serverSettings(values),
    uploads,
    flowControl: { on: true, off: false }[values["flow-control"] as string],
  });
  logger.info(
    `m2fetch ${denoJson.version} serving ${app} (${
      handler?.description ?? "not loaded, answering 503"
    }) via mongrel2: requests from ${
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
    get loaded() {
      return handler !== undefined;
    },
    async reload(next) {
      const waiting = restartOnlyChanges(current.values, next.values);
      const values = { ...next.values };
      for (const name of waiting) values[name] = current.values[name];
      if (handler !== undefined) {
        await handler.reload(server, { app: next.app, values });
      } else {
        try {
          // Bounded as a reload is: later edits wait behind this load.
          handler = await startHandler(
            next.app,
            values,
            logger,
            (loading) => loadedWithin(loading),
          );
        } catch (error) {
          loadError = error;
          throw error;
        }
        server.setHandler(handler.fetch);
      }
      server.reconfigure(serverSettings(values));
      current = { app: next.app, values };
      return waiting;
    },
    stop: async (timeoutMs = current.values["shutdown-timeout"] as number) => {
      try {
        await server.shutdown(timeoutMs);
      } finally {
        await handler?.close();
      }
    },
  };
}

/**
 * How soon after the first a signal counts as the same one delivered
 * twice, not as a second (ms).
 */
const REPEATED_SIGNAL_MS = 250;

/**
 * SIGINT and SIGTERM stop gracefully: `stop`, then exit with 0 (1 when it
 * fails). A second signal exits at once with 130, after a warning that
 * says how many responses it cuts; one within 250 ms of the first is the
 * same Ctrl-C delivered twice and is ignored.
 *
 * @param served What is served: stopped by the first signal.
 * @param logger Where the second signal's warning goes.
 * @param stop Finishes the responses in flight and closes (default
 * `served.stop()`).
 *
 * @example Usage
 * ```ts
 * import type { Served } from "./reload.ts";
 * import type { Logger } from "../runtime/log.ts";
 * import { onSignals } from "./serve.ts";
 * declare const served: Served;
 * declare const logger: Logger;
 * onSignals(served, logger);
 * ```
 */
export function onSignals(
  served: Served,
  logger: Logger,
  stop: () => Promise<void> = () => served.stop(),
): void {
  let stoppedAt: number | null = null;
  const handle = (signal: Deno.Signal) => {
    if (stoppedAt !== null) {
      // One Ctrl-C often arrives twice: the terminal signals the whole
      // process group, and `deno task` forwards it to its child as well.
      if (performance.now() - stoppedAt < REPEATED_SIGNAL_MS) return;
      logger.warn(
        `${signal} again: exiting at once with 130, cutting the ${served.server.inFlight} response(s) still in flight`,
      );
      exitProcess(130);
    }
    stoppedAt = performance.now();
    logger.info("Shutting down: finishing responses in flight");
    stop().then(() => exitProcess(0), (error) => {
      console.error(error);
      exitProcess(1);
    });
  };
  Deno.addSignalListener("SIGINT", () => handle("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => handle("SIGTERM"));
}

/** The commands, as the first argument names them. */
const COMMANDS = ["config", "dev", "init", "mongrel2-conf"];

/**
 * A first argument that is a bare word, not a file, is a mistyped command
 * (`confg`, `start`) rather than a handler module that is missing.
 */
async function checkNotACommand(first: string | undefined): Promise<void> {
  if (first === undefined || !/^[a-z][a-z0-9-]*$/i.test(first)) return;
  // Only a file known to be missing: without read permission the module
  // load says what failed.
  const missing = await Deno.lstat(first).then(
    () => false,
    (error) => error instanceof Deno.errors.NotFound,
  );
  if (!missing) return;
  const meant = closest(first, COMMANDS);
  throw new UsageError(
    `Unknown command "${first}"${
      meant === undefined ? "" : ` (did you mean "${meant}"?)`
    }: the commands are ${
      listed(COMMANDS)
    }, and without one the first argument is the handler module to serve, but there is no file ${first}`,
  );
}

/**
 * The serve command (`cli.ts [options] APP`): serves APP behind a running
 * mongrel2 until SIGINT or SIGTERM; SIGHUP reloads it.
 *
 * @param args The arguments.
 * @throws {UsageError} On a command-line mistake.
 *
 * @example Usage
 * ```ts
 * import { runServe } from "./serve.ts";
 * await runServe(["--version"]);
 * ```
 */
export async function runServe(args: string[]): Promise<void> {
  const parsed = parse(args, SERVE_OPTIONS);
  if (answeredHelpOrVersion(parsed)) return;
  await checkNotACommand(parsed.positionals[0]);
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
  onSignals(served, logger);
  await served.server.finished;
}
