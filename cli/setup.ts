/**
 * Where a command's handler module and options come from: the command
 * line, then the app directory's m2fetch.json (its relative paths taken
 * from the file's directory), then the defaults.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { type ParsedArgs, UsageError } from "./args.ts";
import { CONFIG_FILE_NAME, readConfigFile } from "./config_file.ts";
import { type OptionSpec, type OptionValues, withDefaults } from "./options.ts";

/**
 * The handler module and the options it is served with.
 *
 * @example Usage
 * ```ts
 * import type { Setup } from "./setup.ts";
 * const setup: Setup = { app: "app.ts", values: { workers: 0 } };
 * console.assert(setup.app === "app.ts");
 * ```
 */
export interface Setup {
  /** The handler module. */
  app: string;
  /** Every option's value: flags over m2fetch.json over the defaults. */
  values: OptionValues;
}

/**
 * What {@linkcode resolveSetup} works out from the arguments and
 * m2fetch.json.
 *
 * @example Usage
 * ```ts
 * import type { ResolvedSetup } from "./setup.ts";
 * const setup: ResolvedSetup = {
 *   app: "app.ts",
 *   args: [],
 *   values: { quiet: true },
 *   explicit: { quiet: true },
 *   configFile: "/srv/app/m2fetch.json",
 * };
 * console.assert(setup.configFile !== null);
 * ```
 */
export interface ResolvedSetup extends Setup {
  /** The handler's `Deno.args`: after `--`, else the file's `args`. */
  args: string[];
  /** The options set by a flag or the config file (no defaults). */
  explicit: OptionValues;
  /** The m2fetch.json read, or `null` when there was none. */
  configFile: string | null;
}

/**
 * The m2fetch.json keys that name files on this machine (not as mongrel2
 * sees them): relative to the file's directory.
 */
const FILE_PATHS = ["app", "mongrel2-config", "mongrel2-chroot", "state-dir"];

/**
 * Rewrites every relative path among the FILE_PATHS options and the
 * `ipc://` endpoints of the spec options (which name socket files the
 * same way) with `map`.
 *
 * @param values The option values, changed in place.
 * @param map What a relative path becomes.
 *
 * @example Usage
 * ```ts
 * import { mapRelativePaths } from "./setup.ts";
 * const values = { app: "app.ts", "send-spec": ["ipc://run/send"] };
 * mapRelativePaths(values, (path) => `/srv/app/${path}`);
 * console.assert(values.app === "/srv/app/app.ts");
 * console.assert(values["send-spec"][0] === "ipc:///srv/app/run/send");
 * ```
 */
export function mapRelativePaths(
  values: OptionValues,
  map: (path: string) => string,
): void {
  for (const name of FILE_PATHS) {
    const path = values[name];
    if (typeof path === "string" && !path.startsWith("/")) {
      values[name] = map(path);
    }
  }
  // Not an absolute path, nor an abstract socket name (`ipc://@name`).
  const mapSpec = (spec: string) =>
    spec.startsWith("ipc://") && !/^ipc:\/\/[/@]/.test(spec)
      ? `ipc://${map(spec.slice("ipc://".length))}`
      : spec;
  for (const name of ["send-spec", "recv-spec"]) {
    const specs = values[name];
    if (typeof specs === "string") values[name] = mapSpec(specs);
    else if (Array.isArray(specs)) values[name] = specs.map(mapSpec);
  }
}

/**
 * The directory --app-path names, made absolute; it must exist.
 *
 * @param appPath --app-path, as given.
 * @returns The absolute directory.
 * @throws {UsageError} When it is not a directory.
 *
 * @example Usage
 * ```ts
 * import { appDirectory } from "./setup.ts";
 * console.assert(await appDirectory(".") === Deno.cwd());
 * ```
 */
export async function appDirectory(appPath: string): Promise<string> {
  const dir = resolve(appPath);
  const info = await Deno.stat(dir).catch(() => null);
  if (info === null || !info.isDirectory) {
    throw new UsageError(
      `Cannot use --app-path ${appPath}: it is not a directory`,
    );
  }
  return dir;
}

/**
 * Works out the handler module and the option values: flags on the command
 * line win over the app directory's m2fetch.json, which wins over defaults.
 * The app directory is --app-path, else the directory of APP, else the
 * current directory.
 *
 * @param parsed The command's arguments.
 * @param schema The command's options (m2fetch.json may hold only these).
 * @param defaultApp The module to serve when neither APP nor the file
 * names one; without it, that is a usage error.
 * @returns The module, its arguments and the options.
 * @throws {UsageError} On more than one APP, no APP, or an --app-path that
 * is not a directory.
 * @throws {ConfigFileError} When m2fetch.json cannot be read or is invalid.
 *
 * @example Usage
 * ```ts
 * import { parse } from "./args.ts";
 * import { SERVE_OPTIONS } from "./options.ts";
 * import { resolveSetup } from "./setup.ts";
 * const dir = await Deno.makeTempDir();
 * const parsed = parse([`${dir}/app.ts`, "--workers", "2"], SERVE_OPTIONS);
 * const setup = await resolveSetup(parsed, SERVE_OPTIONS);
 * console.assert(setup.values.workers === 2 && setup.configFile === null);
 * await Deno.remove(dir);
 * ```
 */
export async function resolveSetup(
  parsed: ParsedArgs,
  schema: Record<string, OptionSpec>,
  defaultApp?: string,
): Promise<ResolvedSetup> {
  if (parsed.positionals.length > 1) {
    throw new UsageError(
      `Expected one handler module, got ${parsed.positionals.length}: ${
        parsed.positionals.join(" ")
      }`,
    );
  }
  const positional = parsed.positionals[0];
  const appDir = parsed.appPath !== undefined
    ? await appDirectory(parsed.appPath)
    : positional !== undefined
    ? dirname(resolve(positional))
    : Deno.cwd();
  let fileValues: OptionValues = {};
  let configFile: string | null = null;
  const path = `${appDir}/${CONFIG_FILE_NAME}`;
  const read = await readConfigFile(path, schema);
  if (read !== null) {
    fileValues = read;
    configFile = path;
  }
  // Paths in the file are relative to its directory, wherever m2fetch
  // starts from.
  mapRelativePaths(fileValues, (path) => resolve(appDir, path));
  const fromFile = fileValues.app as string | undefined;
  const argsFromFile = fileValues.args as string[] | undefined;
  delete fileValues.app;
  delete fileValues.args;
  const app = positional ?? fromFile ?? defaultApp;
  // The file's arguments belong to the file's module.
  const fileArgsApply = positional === undefined ||
    (fromFile !== undefined && resolve(positional) === resolve(fromFile));
  if (app === undefined) {
    throw new UsageError(
      'Missing the handler module to serve: m2fetch [options] APP, or --app-path DIR (or the current directory) with "app" in its m2fetch.json (see --help)',
    );
  }
  return {
    app,
    args: parsed.appArgs ?? (fileArgsApply ? argsFromFile : undefined) ?? [],
    values: withDefaults(schema, fileValues, parsed.flags),
    explicit: { ...fileValues, ...parsed.flags },
    configFile,
  };
}
