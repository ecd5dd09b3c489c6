/**
 * What `--help` and `--version` print, for every command.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };
import {
  CONF_OPTIONS,
  DEV_OPTIONS,
  INIT_OPTIONS,
  type OptionSpec,
  SERVE_OPTIONS,
} from "./options.ts";

const USAGE =
  `m2fetch ${denoJson.version}: serve a Web Fetch handler module behind mongrel2

Usage:
  deno run -A cli.ts [options] APP            serve APP behind a running mongrel2
  deno run -A cli.ts --app-path DIR [options] serve the app configured in DIR/m2fetch.json
  deno run -A cli.ts config --app-path DIR [options] [APP] [-- ARGS]
                                              write options (and APP, ARGS) to
                                              DIR/m2fetch.json; --unset NAME
                                              (repeatable) removes one
  deno run -A cli.ts dev [options] [APP]      start a private mongrel2 (config
                                              generated, flow control on) and
                                              serve APP (default examples/hello.ts);
                                              it sets the specs, upload store and
                                              flow control itself
  deno run -A cli.ts mongrel2-conf [options] [APP]
                                              print a mongrel2.conf matching the
                                              options (Handler, Server, settings)
  deno run -A cli.ts init [options] DIR       create a ready-to-run app in DIR:
                                              app.ts, app_test.ts, deno.json,
                                              m2fetch.json, mongrel2.conf,
                                              README.md (never overwrites)

Options given on the command line win over DIR/m2fetch.json (DIR is
--app-path, else the directory of APP, else the current directory), which
wins over the defaults; --no-NAME turns off a switch the file turns on
(--no-quiet). SIGHUP reads them again with the module: options marked
[reloads] apply to new requests, the others when m2fetch restarts.

APP is a module exporting \`default { fetch }\`, a default function, or a named
\`fetch\`: the same module \`deno serve APP\` runs. Arguments after \`--\`
are its \`Deno.args\` (APP -- --greeting hey), as \`deno serve APP ARGS\` gives;
config saves them as "args" in m2fetch.json (read at start, not on SIGHUP).
`;

/** 10000 → "10s", as the README writes durations. */
function formatDuration(ms: number): string {
  if (ms === 0) return "0";
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function formatOptions(options: Record<string, OptionSpec>): string {
  const rows = Object.entries(options).map(([name, spec]) => {
    const flag = `--${name}${spec.value ? ` ${spec.value}` : ""}`;
    const fallback = spec.default === undefined || spec.type === "boolean"
      ? ""
      : ` (default: ${
        spec.type === "duration"
          ? formatDuration(spec.default as number)
          : spec.default
      })`;
    const reloads = spec.reloads ? " [reloads]" : "";
    return `  ${flag.padEnd(30)} ${spec.description}${fallback}${reloads}`;
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

mongrel2-conf options (the serve options above give the specs and upload store):
${formatOptions(CONF_OPTIONS)}

init options:
${formatOptions(INIT_OPTIONS)}
`;
}

/**
 * Prints the help or the version when asked for, whatever the command, so
 * that `config --version` does not also write a file.
 *
 * @param parsed Whether --help and --version were given.
 * @returns Whether it printed one (the command then has nothing more to do).
 *
 * @example Usage
 * ```ts
 * import { answeredHelpOrVersion } from "./help.ts";
 * if (!answeredHelpOrVersion({ help: false, version: true })) {
 *   throw new Error("--version prints the version");
 * }
 * ```
 */
export function answeredHelpOrVersion(
  parsed: { help: boolean; version: boolean },
): boolean {
  if (parsed.help) console.log(helpText());
  else if (parsed.version) console.log(`m2fetch ${denoJson.version}`);
  return parsed.help || parsed.version;
}
