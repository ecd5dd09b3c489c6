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
import { type Mongrel2Server, serveMongrel2 } from "./runtime/server.ts";
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
  deno run -A cli.ts dev [options] [APP]      start a private mongrel2 (config
                                              generated, flow control on) and
                                              serve APP (default examples/hello.ts)

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

function parse(
  args: string[],
  schema: Record<string, OptionSpec>,
): {
  values: OptionValues;
  positionals: string[];
  help: boolean;
  version: boolean;
} {
  const parserOptions: Record<string, { type: "string" | "boolean" }> = {
    help: { type: "boolean" },
    version: { type: "boolean" },
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
  const values: OptionValues = {};
  for (const [name, spec] of Object.entries(schema)) {
    const raw = (parsed.values as Record<string, unknown>)[name];
    try {
      values[name] = raw === undefined
        ? spec.default!
        : coerceOption(name, spec, raw, `--${name}`);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  return {
    values,
    positionals: parsed.positionals,
    help: parsed.values.help === true,
    version: parsed.values.version === true,
  };
}

interface ServeSetup {
  app: string;
  sendSpec: string;
  recvSpec: string;
  values: OptionValues;
  logger: Logger;
}

async function serve(setup: ServeSetup): Promise<Mongrel2Server> {
  const { app, sendSpec, recvSpec, values, logger } = setup;
  const handler = await loadHandler(app);
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
  });
  logger.info(
    `m2fetch ${denoJson.version} serving ${app} (export ${handler.source}) via mongrel2: requests from ${sendSpec}, replies to ${recvSpec}`,
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

async function runServe(args: string[]): Promise<void> {
  const { values, positionals, help, version } = parse(args, SERVE_OPTIONS);
  if (help) return void console.log(helpText());
  if (version) return void console.log(`m2fetch ${denoJson.version}`);
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? "Missing the handler module to serve: m2fetch [options] APP (see --help)"
        : `Expected one handler module, got ${positionals.length}: ${
          positionals.join(" ")
        }`,
    );
  }
  const sendSpec = values["send-spec"] as string;
  const recvSpec = values["recv-spec"] as string;
  try {
    checkEndpoint("--send-spec", sendSpec);
    checkEndpoint("--recv-spec", recvSpec);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const logger = createLogger({
    format: values["log-format"] as "text" | "json",
    quiet: values.quiet as boolean,
  });
  const server = await serve({
    app: positionals[0],
    sendSpec,
    recvSpec,
    values,
    logger,
  });
  onSignals(async () => {
    logger.info("Shutting down: finishing responses in flight");
    await server.shutdown(values["shutdown-timeout"] as number);
  });
  await server.finished;
}

async function runDev(args: string[]): Promise<void> {
  const schema = { ...SERVE_OPTIONS, ...DEV_OPTIONS };
  const { values, positionals, help } = parse(args, schema);
  if (help) return void console.log(helpText());
  if (positionals.length > 1) {
    throw new UsageError(
      `Expected at most one handler module, got ${positionals.length}: ${
        positionals.join(" ")
      }`,
    );
  }
  const app = positionals[0] ??
    new URL("./examples/hello.ts", import.meta.url).pathname;
  const logger = createLogger({
    format: values["log-format"] as "text" | "json",
    quiet: values.quiet as boolean,
  });
  const dir = values["state-dir"] as string;
  const mongrel2 = await startMongrel2({
    dir: dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`,
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
      values,
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
    else await runServe(args);
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`m2fetch: ${message}`);
    return error instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
