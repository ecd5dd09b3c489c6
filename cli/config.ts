/**
 * `config`: writes an app directory's m2fetch.json from the command line.
 *
 * @module
 */

import { relative, resolve } from "node:path";
import { closest, parse, UsageError } from "./args.ts";
import {
  CONFIG_FILE_NAME,
  configKeys,
  isConfigKey,
  readConfigFile,
  writeConfigFile,
} from "./config_file.ts";
import { answeredHelpOrVersion } from "./help.ts";
import { type OptionValues, SERVE_OPTIONS, withDefaults } from "./options.ts";
import { appDirectory, mapRelativePaths } from "./setup.ts";
import { checkEndpoints, checkHandlerChoice, uploadOptions } from "./wiring.ts";

/**
 * The config command (`cli.ts config --app-path DIR [options] [APP] [--
 * ARGS]`): writes the options given (and APP, ARGS) to DIR/m2fetch.json,
 * keeping what it holds; --unset NAME removes a key. The result is checked
 * as serving would check it before anything is written.
 *
 * @param args The arguments after `config`.
 * @throws {UsageError} On a command-line mistake, or options that do not
 * fit together with what the file holds.
 *
 * @example Usage
 * ```ts
 * import { runConfig } from "./config.ts";
 * const dir = await Deno.makeTempDir();
 * await runConfig(["--app-path", dir, "--workers", "2", "app.ts"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runConfig(args: string[]): Promise<void> {
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
    if (!isConfigKey(name, SERVE_OPTIONS)) {
      const keys = configKeys(SERVE_OPTIONS);
      const meant = closest(name, keys);
      throw new UsageError(
        `Cannot unset "${name}": ${
          meant === undefined ? "" : `did you mean "${meant}"? `
        }m2fetch.json holds only ${keys.join(", ")}`,
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
