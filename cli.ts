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

import { parseArgs } from "node:util";
import denoJson from "./deno.json" with { type: "json" };
import { loadHandler } from "./runtime/handler.ts";
import { createLogger, type Logger } from "./runtime/log.ts";
import {
  coerceOption,
  type OptionSpec,
  type OptionValues,
  SERVE_OPTIONS,
} from "./runtime/options.ts";
import {
  type Mongrel2Server,
  serveMongrel2,
  type UploadOptions,
} from "./runtime/server.ts";
import {
  CONFIG_FILE_NAME,
  readConfigFile,
  writeConfigFile,
} from "./runtime/config_file.ts";
import { checkTemplate } from "./runtime/upload/policy.ts";
import { storeDirectory, sweepStaleUploads } from "./runtime/upload/store.ts";
import { checkEndpoint, ZmqTransport } from "./runtime/transport/zmq.ts";
import { startMongrel2 } from "./runtime/mongrel2/mod.ts";

/** Options of the `dev` subcommand, on top of the serve options. */
const DEV_OPTIONS = {
  port: {
    type: "integer",
    value: "PORT",
    default: 6767,
    min: 0,
    description: "HTTP port for the private mongrel2 (0 picks a free one)",
  },
  host: {
    type: "string",
    value: "ADDR",
    default: "127.0.0.1",
    description: "address the private mongrel2 listens on",
  },
  "state-dir": {
    type: "string",
    value: "DIR",
    default: ".state/dev",
    description:
      "where the private mongrel2 keeps its config, sockets, logs and uploads",
  },
} as const satisfies Record<string, OptionSpec>;

const USAGE =
  `m2fetch ${denoJson.version}: serve a Web Fetch handler module behind mongrel2

Usage:
  deno run -A cli.ts [options] APP            serve APP behind a running mongrel2
  deno run -A cli.ts --app-path DIR [options] serve the app configured in DIR/m2fetch.json
  deno run -A cli.ts config --app-path DIR [options] [APP]
                                              write options (and APP) to DIR/m2fetch.json
  deno run -A cli.ts dev [options] [APP]      start a private mongrel2 (config
                                              generated, flow control on) and
                                              serve APP (default examples/hello.ts)

Options given on the command line win over DIR/m2fetch.json (DIR is
--app-path, else the directory of APP), which wins over the defaults.

APP is a module exporting \`default { fetch }\`, a default function, or a named
\`fetch\`: the same module \`deno serve APP\` runs.
`;

function formatOptions(options: Record<string, OptionSpec>): string {
  const rows = Object.entries(options).map(([name, spec]) => {
    const flag = `--${name}${spec.value ? ` ${spec.value}` : ""}`;
    const fallback = spec.default === undefined || spec.type === "boolean"
      ? ""
      : ` (default: ${
        spec.type === "duration" ? `${spec.default}ms` : spec.default
      })`;
    return `  ${flag.padEnd(30)} ${spec.description}${fallback}`;
  });
  return rows.join("\n");
}

function helpText(): string {
  return `${USAGE}
Options:
${formatOptions(SERVE_OPTIONS)}
  --app-path DIR                 directory holding m2fetch.json (and the app)
  --help                         show this help
  --version                      show the version

dev options:
${formatOptions(DEV_OPTIONS)}
`;
}

/** A command-line mistake: printed as one line, exit code 2. */
class UsageError extends Error {
  override name = "UsageError";
}

interface ParsedArgs {
  /** Typed values of the flags given (defaults not applied). */
  flags: OptionValues;
  positionals: string[];
  help: boolean;
  version: boolean;
  appPath: string | undefined;
}

function parse(args: string[], schema: Record<string, OptionSpec>): ParsedArgs {
  const parserOptions: Record<string, { type: "string" | "boolean" }> = {
    help: { type: "boolean" },
    version: { type: "boolean" },
    "app-path": { type: "string" },
  };
  for (const [name, spec] of Object.entries(schema)) {
    parserOptions[name] = {
      type: spec.type === "boolean" ? "boolean" : "string",
    };
  }
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: parserOptions,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const given = parsed.values as Record<string, unknown>;
  const flags: OptionValues = {};
  for (const [name, spec] of Object.entries(schema)) {
    if (given[name] === undefined) continue;
    try {
      flags[name] = coerceOption(name, spec, given[name], `--${name}`);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  return {
    flags,
    positionals: parsed.positionals,
    help: given.help === true,
    version: given.version === true,
    appPath: given["app-path"] as string | undefined,
  };
}

function withDefaults(
  schema: Record<string, OptionSpec>,
  ...layers: OptionValues[]
): OptionValues {
  const values: OptionValues = {};
  for (const [name, spec] of Object.entries(schema)) {
    if (spec.default !== undefined) values[name] = spec.default;
  }
  return Object.assign(values, ...layers);
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

function dirname(path: string): string {
  const at = path.lastIndexOf("/");
  return at <= 0 ? "/" : path.slice(0, at);
}

/**
 * Works out the handler module and the option values: flags on the command
 * line win over the app directory's m2fetch.json, which wins over defaults.
 * The app directory is --app-path, else the directory of APP.
 */
async function resolveSetup(
  parsed: ParsedArgs,
  schema: Record<string, OptionSpec>,
  defaultApp?: string,
): Promise<{ app: string; values: OptionValues; configFile: string | null }> {
  if (parsed.positionals.length > 1) {
    throw new UsageError(
      `Expected one handler module, got ${parsed.positionals.length}: ${
        parsed.positionals.join(" ")
      }`,
    );
  }
  const positional = parsed.positionals[0];
  const appDir = parsed.appPath !== undefined
    ? absolute(parsed.appPath)
    : positional !== undefined
    ? dirname(absolute(positional))
    : undefined;
  if (parsed.appPath !== undefined) {
    const info = await Deno.stat(appDir!).catch(() => null);
    if (info === null || !info.isDirectory) {
      throw new UsageError(
        `Cannot use --app-path ${parsed.appPath}: it is not a directory`,
      );
    }
  }
  let fileValues: OptionValues = {};
  let configFile: string | null = null;
  if (appDir !== undefined) {
    const path = `${appDir}/${CONFIG_FILE_NAME}`;
    const read = await readConfigFile(path, schema);
    if (read !== null) {
      fileValues = read;
      configFile = path;
    }
  }
  const fromFile = typeof fileValues.app === "string"
    ? (fileValues.app.startsWith("/")
      ? fileValues.app
      : `${appDir}/${fileValues.app}`)
    : undefined;
  delete fileValues.app;
  const app = positional ?? fromFile ?? defaultApp;
  if (app === undefined) {
    throw new UsageError(
      'Missing the handler module to serve: m2fetch [options] APP, or --app-path DIR with "app" in its m2fetch.json (see --help)',
    );
  }
  return {
    app,
    values: withDefaults(schema, fileValues, parsed.flags),
    configFile,
  };
}

interface ServeSetup {
  app: string;
  sendSpec: string;
  recvSpec: string;
  values: OptionValues;
  logger: Logger;
}

function uploadOptions(values: OptionValues): UploadOptions | undefined {
  const template = values["upload-temp-store"] as string | undefined;
  const chroot = values["mongrel2-chroot"] as string | undefined;
  if (template === undefined) {
    if (chroot !== undefined) {
      throw new UsageError(
        "Cannot use --mongrel2-chroot without --upload-temp-store: the chroot only locates upload files",
      );
    }
    return undefined;
  }
  try {
    return {
      store: { template: checkTemplate(template), chroot },
      invokeAt: values["upload-invoke"] as "start" | "done",
    };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

async function serve(setup: ServeSetup): Promise<Mongrel2Server> {
  const { app, sendSpec, recvSpec, values, logger } = setup;
  for (
    const [flag, spec] of [["--send-spec", sendSpec], ["--recv-spec", recvSpec]]
  ) {
    try {
      checkEndpoint(flag, spec);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  const uploads = uploadOptions(values);
  const handler = await loadHandler(app);
  if (uploads !== undefined) {
    await storeDirectory(uploads.store);
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
  });
  const server = serveMongrel2({
    handler: handler.fetch,
    transport,
    logger,
    idleTimeout: values["idle-timeout"] as number,
    writeTimeout: values["write-timeout"] as number,
    keepAliveInterval: values["keep-alive-interval"] as number,
    uploads,
    maxBodySize: values["max-body-size"] as number | undefined,
  });
  logger.info(
    `m2fetch ${denoJson.version} serving ${app} (export ${handler.source}) via mongrel2: requests from ${sendSpec}, replies to ${recvSpec}${
      uploads ? `, uploads from ${uploads.store.template}` : ""
    }`,
  );
  return server;
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

function createCliLogger(values: OptionValues): Logger {
  return createLogger({
    format: values["log-format"] as "text" | "json",
    quiet: values.quiet as boolean,
  });
}

async function runServe(args: string[]): Promise<void> {
  const parsed = parse(args, SERVE_OPTIONS);
  if (parsed.help) return void console.log(helpText());
  if (parsed.version) return void console.log(`m2fetch ${denoJson.version}`);
  const { app, values, configFile } = await resolveSetup(parsed, SERVE_OPTIONS);
  const logger = createCliLogger(values);
  if (configFile !== null) logger.info(`Read options from ${configFile}`);
  const server = await serve({
    app,
    sendSpec: values["send-spec"] as string,
    recvSpec: values["recv-spec"] as string,
    values,
    logger,
  });
  onSignals(async () => {
    logger.info("Shutting down: finishing responses in flight");
    await server.shutdown(values["shutdown-timeout"] as number);
  });
  await server.finished;
}

async function runConfig(args: string[]): Promise<void> {
  const parsed = parse(args, SERVE_OPTIONS);
  if (parsed.help) return void console.log(helpText());
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
  const dir = absolute(parsed.appPath);
  const info = await Deno.stat(dir).catch(() => null);
  if (info === null || !info.isDirectory) {
    throw new UsageError(
      `Cannot use --app-path ${parsed.appPath}: it is not a directory`,
    );
  }
  const values: OptionValues = { ...parsed.flags };
  if (parsed.positionals[0] !== undefined) values.app = parsed.positionals[0];
  uploadOptions(withDefaults(SERVE_OPTIONS, values));
  const path = `${dir}/${CONFIG_FILE_NAME}`;
  const written = await writeConfigFile(path, values, SERVE_OPTIONS);
  console.log(`Wrote ${path}:\n${JSON.stringify(written, null, 2)}`);
}

async function runDev(args: string[]): Promise<void> {
  const schema = { ...SERVE_OPTIONS, ...DEV_OPTIONS };
  const parsed = parse(args, schema);
  if (parsed.help) return void console.log(helpText());
  const { app, values } = await resolveSetup(
    parsed,
    schema,
    new URL("./examples/hello.ts", import.meta.url).pathname,
  );
  const logger = createCliLogger(values);
  const mongrel2 = await startMongrel2({
    dir: absolute(values["state-dir"] as string),
    port: values.port as number,
    bindAddress: values.host as string,
    handlers: [{ route: "/", protocol: "tnetstring" }],
  });
  let server: Mongrel2Server;
  try {
    const [handler] = mongrel2.handlers;
    server = await serve({
      app,
      sendSpec: handler.sendSpec,
      recvSpec: handler.recvSpec,
      values: {
        ...values,
        "upload-temp-store": String(mongrel2.settings["upload.temp_store"]),
        ...(mongrel2.chroot ? { "mongrel2-chroot": mongrel2.dir } : {}),
      },
      logger,
    });
  } catch (error) {
    await mongrel2.stop();
    throw error;
  }
  console.log(
    `m2fetch dev: mongrel2 (pid ${mongrel2.pid}, state in ${mongrel2.dir}) is serving ${app} at ${mongrel2.url}/ — press Ctrl-C to stop`,
  );
  onSignals(async () => {
    try {
      await server.shutdown(values["shutdown-timeout"] as number);
    } finally {
      await mongrel2.stop();
    }
  });
  await server.finished;
  await mongrel2.stop();
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
    else await runServe(args);
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`m2fetch: ${message}`);
    return error instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
