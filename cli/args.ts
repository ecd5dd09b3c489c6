/**
 * The command line's words: a command's arguments parsed against its
 * option schema, and the usage errors (exit code 2) that mistakes in them
 * give.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  coerceOption,
  CONF_OPTIONS,
  DEV_OPTIONS,
  INIT_OPTIONS,
  type OptionSpec,
  type OptionValues,
  SERVE_OPTIONS,
} from "./options.ts";

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
    throw new UsageError(
      argumentError(
        error as Error & { code?: string },
        Object.keys(parserOptions),
      ),
    );
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

/**
 * The one candidate a mistyped word is most likely meant to be: at most
 * two letters missing, extra, wrong or swapped (one for words of up to four
 * letters), or `undefined` when none is that close or two are as close.
 *
 * @param word The word as typed.
 * @param candidates The words it may stand for.
 * @returns The closest candidate, if one stands out.
 *
 * @example Usage
 * ```ts
 * import { closest } from "./args.ts";
 * console.assert(closest("wrokers", ["workers", "timeout"]) === "workers");
 * console.assert(closest("bogus", ["workers", "timeout"]) === undefined);
 * ```
 */
export function closest(
  word: string,
  candidates: readonly string[],
): string | undefined {
  const limit = word.length <= 4 ? 1 : 2;
  let best: string | undefined;
  let bestDistance = Infinity;
  let tied = false;
  for (const candidate of new Set(candidates)) {
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) {
      [best, bestDistance, tied] = [candidate, distance, false];
    } else if (distance === bestDistance) {
      tied = true;
    }
  }
  return bestDistance > 0 && bestDistance <= limit && !tied ? best : undefined;
}

/** Letters inserted, deleted, replaced or swapped with a neighbour. */
function editDistance(a: string, b: string): number {
  const rows = Array.from(
    { length: a.length + 1 },
    (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i + j * +!i),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      rows[i][j] = Math.min(
        rows[i - 1][j] + 1,
        rows[i][j - 1] + 1,
        rows[i - 1][j - 1] + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1);
      }
    }
  }
  return rows[a.length][b.length];
}

/**
 * The options of each command, to say which ones take an option that the
 * command given does not (`--port` given to serve is `dev`'s).
 */
const COMMANDS: [string, Record<string, OptionSpec>][] = [
  ["serving (no command)", SERVE_OPTIONS],
  ["config", SERVE_OPTIONS],
  ["dev", { ...SERVE_OPTIONS, ...DEV_OPTIONS }],
  ["mongrel2-conf", { ...SERVE_OPTIONS, ...CONF_OPTIONS }],
  ["init", INIT_OPTIONS],
];

/**
 * Words joined as a sentence lists them.
 *
 * @param words The words.
 * @returns `a, b and c`.
 *
 * @example Usage
 * ```ts
 * import { listed } from "./args.ts";
 * console.assert(listed(["a", "b", "c"]) === "a, b and c");
 * ```
 */
export function listed(words: readonly string[]): string {
  return words.length < 2
    ? words.join("")
    : `${words.slice(0, -1).join(", ")} and ${words.at(-1)}`;
}

/** node:util's parseArgs messages, in m2fetch's words. */
function argumentError(
  error: Error & { code?: string },
  names: string[],
): string {
  const option = /'(-[^' ]*)[^']*'/.exec(error.message)?.[1];
  if (option !== undefined) {
    if (error.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      const negated = option.startsWith("--no-");
      const name = option.slice(negated ? 5 : 2);
      const takers = COMMANDS.filter(([, schema]) =>
        option.startsWith("--") && Object.hasOwn(schema, name)
      ).map(([command]) => command);
      if (takers.length > 0) {
        return `Unknown option ${option} for this command: ${
          listed(takers)
        } take${takers.length === 1 ? "s" : ""} it (see --help)`;
      }
      const meant = closest(name, names);
      return `Unknown option ${option}${
        meant === undefined
          ? ""
          : `: did you mean --${negated ? "no-" : ""}${meant}?`
      } (see --help for the options)`;
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
