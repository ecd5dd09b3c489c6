/**
 * The command line's words: a command's arguments parsed against its
 * option schema, and the usage errors (exit code 2) that mistakes in them
 * give.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { coerceOption, type OptionSpec, type OptionValues } from "./options.ts";

/**
 * A command-line mistake: printed as one line, exit code 2.
 *
 * @example Usage
 * ```ts
 * import { UsageError } from "./args.ts";
 * const error = new UsageError("Missing --app-path DIR");
 * console.assert(error.name === "UsageError");
 * ```
 */
export class UsageError extends Error {
  /** Always `"UsageError"`. */
  override name = "UsageError";
}

/**
 * A command's arguments, parsed by {@linkcode parse}.
 *
 * @example Usage
 * ```ts
 * import { parse, type ParsedArgs } from "./args.ts";
 * import { SERVE_OPTIONS } from "./options.ts";
 * const parsed: ParsedArgs = parse(["--quiet", "app.ts"], SERVE_OPTIONS);
 * console.assert(parsed.positionals[0] === "app.ts");
 * ```
 */
export interface ParsedArgs {
  /** Typed values of the flags given (defaults not applied). */
  flags: OptionValues;
  /** The arguments that are not flags: APP, or init's DIR. */
  positionals: string[];
  /** What follows `--`: the handler's own `Deno.args` (undefined without `--`). */
  appArgs: string[] | undefined;
  /** --help was given. */
  help: boolean;
  /** --version was given. */
  version: boolean;
  /** --app-path, as given. */
  appPath: string | undefined;
  /** `config --unset NAME`: keys to drop from m2fetch.json. */
  unset: string[];
}

/**
 * Parses a command's arguments: the flags of `schema` (typed and checked
 * as {@linkcode coerceOption} does) and those every command takes
 * (--help, --version, --app-path), the positionals, and what follows `--`.
 * `--no-NAME` turns off a switch.
 *
 * @param all The arguments after the command's name.
 * @param schema The command's options.
 * @param options `unset`: also take `--unset NAME` (config).
 * @returns The parsed arguments.
 * @throws {UsageError} On an unknown flag or an invalid value.
 *
 * @example Usage
 * ```ts
 * import { parse } from "./args.ts";
 * import { SERVE_OPTIONS } from "./options.ts";
 * const parsed = parse(["--workers", "2", "app.ts", "--", "-v"], SERVE_OPTIONS);
 * console.assert(parsed.flags.workers === 2 && parsed.appArgs?.[0] === "-v");
 * ```
 */
export function parse(
  all: string[],
  schema: Record<string, OptionSpec>,
  options: { unset?: boolean } = {},
): ParsedArgs {
  const dashes = all.indexOf("--");
  const args = dashes < 0 ? all : all.slice(0, dashes);
  const appArgs = dashes < 0 ? undefined : all.slice(dashes + 1);
  const parserOptions: Record<
    string,
    { type: "string" | "boolean"; multiple?: boolean }
  > = {
    help: { type: "boolean" },
    version: { type: "boolean" },
    "app-path": { type: "string" },
    ...(options.unset ? { unset: { type: "string", multiple: true } } : {}),
  };
  for (const [name, spec] of Object.entries(schema)) {
    parserOptions[name] = {
      type: spec.type === "boolean" ? "boolean" : "string",
      ...(spec.multiple ? { multiple: true } : {}),
    };
  }
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: parserOptions,
      allowPositionals: true,
      // --no-quiet turns off a flag that m2fetch.json turns on.
      allowNegative: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(argumentError(error as Error & { code?: string }));
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
    appArgs,
    help: given.help === true,
    version: given.version === true,
    appPath: given["app-path"] as string | undefined,
    unset: (given.unset as string[] | undefined) ?? [],
  };
}

/** node:util's parseArgs messages, in m2fetch's words. */
function argumentError(error: Error & { code?: string }): string {
  const option = /'(-[^' ]*)[^']*'/.exec(error.message)?.[1];
  if (option !== undefined) {
    if (error.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      return `Unknown option ${option} (see --help for the options)`;
    }
    if (error.message.includes("argument is ambiguous")) {
      return `Option ${option} needs a value; for one that starts with "-", write ${option}=VALUE`;
    }
    if (error.message.includes("argument missing")) {
      return `Option ${option} needs a value`;
    }
    if (error.message.includes("does not take an argument")) {
      return `Option ${option} takes no value`;
    }
  }
  return error.message;
}
