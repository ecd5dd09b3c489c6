/**
 * `init`: a new app directory, with the mongrel2.conf and m2fetch.json
 * that serve it.
 *
 * @module
 */

import { parse, UsageError } from "./args.ts";
import { answeredHelpOrVersion } from "./help.ts";
import { INIT_OPTIONS, withDefaults } from "./options.ts";
import { initAppDir, type InitResult } from "./scaffold.ts";
import { checkEndpoints } from "./wiring.ts";

/**
 * The init command (`cli.ts init [options] DIR`): creates a ready-to-run
 * app in DIR (app.ts, app_test.ts, deno.json, m2fetch.json, mongrel2.conf,
 * README.md), never overwriting a file.
 *
 * @param args The arguments after `init`.
 * @throws {UsageError} On a command-line mistake.
 * @throws {InitError} When DIR holds one of those files already.
 *
 * @example Usage
 * ```ts
 * import { runInit } from "./init.ts";
 * const dir = await Deno.makeTempDir();
 * await runInit(["--port", "8080", dir]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runInit(args: string[]): Promise<void> {
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
