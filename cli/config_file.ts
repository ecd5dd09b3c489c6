/**
 * `m2fetch.json`: the options of an app directory, written by
 * `cli.ts config` and read at start-up. Keys are the long flag names and
 * values are typed JSON (`true`, not `"true"`), checked with the same schema
 * as the command line.
 *
 * @module
 */

import { closest } from "./args.ts";
import {
  coerceOption,
  CONF_OPTIONS,
  DEV_OPTIONS,
  type OptionSpec,
  type OptionValues,
} from "./options.ts";

/**
 * The options only some commands take (`dev`'s `state-dir`, `port`, …;
 * `mongrel2-conf`'s `send-ident`, …). m2fetch.json is shared by every
 * command, so a command whose schema lacks one of these checks its value
 * and leaves it aside instead of refusing the file.
 */
const COMMAND_OPTIONS: Record<string, OptionSpec> = {
  ...CONF_OPTIONS,
  ...DEV_OPTIONS,
};

/**
 * The keys m2fetch.json may hold for a command with `schema`: `app`,
 * `args`, the command's own options and the other commands' ones.
 *
 * @param schema The command's options.
 * @returns The keys, each once.
 *
 * @example Usage
 * ```ts
 * import { configKeys } from "./config_file.ts";
 * import { SERVE_OPTIONS } from "./options.ts";
 * console.assert(configKeys(SERVE_OPTIONS).includes("state-dir"));
 * ```
 */
export function configKeys(schema: Record<string, OptionSpec>): string[] {
  return [
    ...new Set([
      "app",
      "args",
      ...Object.keys(schema),
      ...Object.keys(COMMAND_OPTIONS),
    ]),
  ];
}

/**
 * Whether m2fetch.json may hold `name` for a command with `schema` (one of
 * {@linkcode configKeys}).
 *
 * @param name A key.
 * @param schema The command's options.
 * @returns Whether the key belongs in the file.
 *
 * @example Usage
 * ```ts
 * import { isConfigKey } from "./config_file.ts";
 * import { SERVE_OPTIONS } from "./options.ts";
 * console.assert(isConfigKey("state-dir", SERVE_OPTIONS));
 * console.assert(!isConfigKey("wrokers", SERVE_OPTIONS));
 * ```
 */
export function isConfigKey(
  name: string,
  schema: Record<string, OptionSpec>,
): boolean {
  return configKeys(schema).includes(name);
}

/**
 * The file name looked up in an app directory.
 *
 * @example Usage
 * ```ts
 * import { CONFIG_FILE_NAME } from "./config_file.ts";
 * console.assert(`/srv/app/${CONFIG_FILE_NAME}` === "/srv/app/m2fetch.json");
 * ```
 */
export const CONFIG_FILE_NAME = "m2fetch.json";

/**
 * A config file could not be read or holds something invalid.
 *
 * @example Usage
 * ```ts
 * import { ConfigFileError, readConfigFile } from "./config_file.ts";
 * import { SERVE_OPTIONS } from "./options.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, '{"workers": "two"}');
 * const error = await readConfigFile(path, SERVE_OPTIONS).catch((error) => error);
 * console.assert(error instanceof ConfigFileError);
 * await Deno.remove(path);
 * ```
 */
export class ConfigFileError extends Error {
  /**
   * Creates the error.
   *
   * @param message What failed and why.
   */
  constructor(message: string) {
    super(message);
    this.name = "ConfigFileError";
  }
}

/**
 * Reads and checks a config file. Every key must be an option of `schema`
 * (or `app`, the handler module relative to the file, or `args`). Another
 * command's option (`dev`'s `state-dir`, say) is checked too, then left
 * out unless `keepOthers` is set.
 *
 * @param path The file.
 * @param schema The options it may set.
 * @param keepOthers Return other commands' options as well (to write the
 * file back without losing them).
 * @returns The typed values it sets, or `null` when the file does not exist.
 * @throws {ConfigFileError} On invalid JSON, unknown keys or bad values.
 *
 * @example Usage
 * ```ts
 * import { readConfigFile } from "./config_file.ts";
 * import { SERVE_OPTIONS } from "./options.ts";
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, '{"quiet": true}');
 * console.assert((await readConfigFile(path, SERVE_OPTIONS))?.quiet === true);
 * await Deno.remove(path);
 * ```
 */
export async function readConfigFile(
  path: string,
  schema: Record<string, OptionSpec>,
  keepOthers = false,
): Promise<OptionValues | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new ConfigFileError(
      `Cannot read config file ${path}: ${(error as Error).message}`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new ConfigFileError(
      `Cannot parse config file ${path}: ${(error as Error).message}`,
    );
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ConfigFileError(
      `Cannot use config file ${path}: expected a JSON object of options`,
    );
  }
  const values: OptionValues = {};
  for (const [key, raw] of Object.entries(data)) {
    if (key === "app") {
      if (typeof raw !== "string" || raw === "") {
        throw new ConfigFileError(
          `Invalid value for "app" in ${path}: expected a module path, got ${
            JSON.stringify(raw)
          }`,
        );
      }
      values.app = raw;
      continue;
    }
    if (key === "args") {
      if (!Array.isArray(raw) || !raw.every((arg) => typeof arg === "string")) {
        throw new ConfigFileError(
          `Invalid value for "args" in ${path}: expected the handler's arguments as an array of strings, got ${
            JSON.stringify(raw)
          }`,
        );
      }
      values.args = [...raw];
      continue;
    }
    const spec = Object.hasOwn(schema, key)
      ? schema[key]
      : Object.hasOwn(COMMAND_OPTIONS, key)
      ? COMMAND_OPTIONS[key]
      : undefined;
    if (spec === undefined) {
      const keys = configKeys(schema);
      const meant = closest(key, keys);
      throw new ConfigFileError(
        `Unknown option "${key}" in ${path}: ${
          meant === undefined
            ? `expected one of ${keys.join(", ")}`
            : `did you mean "${meant}"? (expected one of ${keys.join(", ")})`
        }`,
      );
    }
    let value;
    try {
      value = coerceOption(key, spec, raw, `"${key}" in ${path}`);
    } catch (error) {
      throw new ConfigFileError((error as Error).message);
    }
    if (Object.hasOwn(schema, key) || keepOthers) values[key] = value;
  }
  return values;
}

/**
 * Writes options to a config file, keeping the keys it already has unless
 * `values` sets them or `remove` names them. Written atomically (temp
 * file, then rename).
 *
 * @param path The file.
 * @param values The options to set.
 * @param schema The options the file may hold (to check what is kept).
 * @param remove Keys to drop from the file.
 * @returns The full contents written.
 * @throws {ConfigFileError} When the file holds something invalid, or
 * cannot be written.
 *
 * @example Usage
 * ```ts
 * import { writeConfigFile } from "./config_file.ts";
 * import { SERVE_OPTIONS } from "./options.ts";
 * const dir = await Deno.makeTempDir();
 * const written = await writeConfigFile(`${dir}/m2fetch.json`, { quiet: true }, SERVE_OPTIONS);
 * console.assert(written.quiet === true);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeConfigFile(
  path: string,
  values: OptionValues,
  schema: Record<string, OptionSpec>,
  remove: readonly string[] = [],
): Promise<OptionValues> {
  const existing = await readConfigFile(path, schema, true) ?? {};
  const merged: OptionValues = { ...existing, ...values };
  for (const key of remove) delete merged[key];
  const sorted = Object.fromEntries(
    Object.keys(merged).sort().map((key) => [key, merged[key]]),
  );
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeTextFile(
      temporary,
      JSON.stringify(sorted, null, 2) + "\n",
    );
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw new ConfigFileError(
      `Cannot write config file ${path}: ${(error as Error).message}`,
    );
  }
  return sorted;
}
