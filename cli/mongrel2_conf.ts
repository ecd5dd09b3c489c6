/**
 * `mongrel2-conf`: prints the mongrel2.conf that matches m2fetch's options.
 *
 * @module
 */

import { resolve } from "node:path";
import { parse, UsageError } from "./args.ts";
import { answeredHelpOrVersion } from "./help.ts";
import { CONF_OPTIONS, SERVE_OPTIONS } from "./options.ts";
import { type HandlerConf, renderHandlerConf } from "./scaffold.ts";
import { resolveSetup } from "./setup.ts";

/**
 * The mongrel2-conf command (`cli.ts mongrel2-conf [options] [APP]`):
 * prints a mongrel2.conf whose Handler, Server and settings match the
 * options (and m2fetch.json), headed by how to load it and the m2fetch
 * options that go with it.
 *
 * @param args The arguments after `mongrel2-conf`.
 * @throws {UsageError} On a command-line mistake, or options one
 * mongrel2.conf cannot hold.
 *
 * @example Usage
 * ```ts
 * import { runMongrel2Conf } from "./mongrel2_conf.ts";
 * await runMongrel2Conf(["--send-ident", "site-a", "--port", "8081"]);
 * ```
 */
export async function runMongrel2Conf(args: string[]): Promise<void> {
  const schema = { ...SERVE_OPTIONS, ...CONF_OPTIONS };
  const parsed = parse(args, schema);
  if (answeredHelpOrVersion(parsed)) return;
  // No APP is fine: the conf only needs the options.
  const { values, configFile } = await resolveSetup(parsed, schema, "");
  // The conf goes to stdout, to be saved; where its options came from, not.
  if (configFile !== null) console.error(`Read options from ${configFile}`);
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
