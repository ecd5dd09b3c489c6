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
import { parse, UsageError } from "./cli/args.ts";
import { runDev } from "./cli/dev.ts";
import {
  CONFIG_FILE_NAME,
  readConfigFile,
  writeConfigFile,
} from "./cli/config_file.ts";
import { answeredHelpOrVersion } from "./cli/help.ts";
import { messageOf } from "./cli/log.ts";
import {
  CONF_OPTIONS,
  INIT_OPTIONS,
  type OptionValues,
  SERVE_OPTIONS,
  withDefaults,
} from "./cli/options.ts";
import {
  type HandlerConf,
  initAppDir,
  type InitResult,
  renderHandlerConf,
} from "./cli/scaffold.ts";
import { runServe } from "./cli/serve.ts";
import { appDirectory, mapRelativePaths, resolveSetup } from "./cli/setup.ts";
import { handleUncaught } from "./cli/uncaught.ts";
import {
  checkEndpoints,
  checkHandlerChoice,
  uploadOptions,
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
