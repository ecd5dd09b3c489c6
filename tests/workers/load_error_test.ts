/**
 * A handler module whose worker dies while it loads (it calls `Deno.exit()`
 * or throws from a timer at the top level) stops start-up with one line
 * that names the module and says what happened, and the pool, which is
 * about to give up, schedules no replacement. Through the real CLI.
 *
 * @module
 */

import assert from "node:assert/strict";
import { startSite } from "../site.ts";
import { spawnM2fetch, within } from "../subprocess.ts";

const CASES = [
  {
    name: "calls Deno.exit(3)",
    source: `Deno.exit(3);\n`,
    line:
      /^m2fetch: Cannot load handler module file:\/\/\S+\/app\.ts: it called Deno\.exit\(3\) while loading$/,
  },
  {
    name: "throws an uncaught error from a timer",
    source: `setTimeout(() => { throw new Error("no database"); }, 0);
await new Promise((resolve) => setTimeout(resolve, 5000));
export default () => new Response("never");
`,
    line:
      /^m2fetch: Cannot load handler module file:\/\/\S+\/app\.ts: it threw an uncaught error \(Error: no database\) while loading$/,
  },
];

for (const { name, source, line } of CASES) {
  for (const workers of ["1", "2"]) {
    Deno.test(`--workers ${workers}: a module that ${name} while loading stops start-up with a sentence naming it, and no replacement`, async () => {
      await using site = await startSite();
      await Deno.writeTextFile(`${site.dir}/app.ts`, source);
      await using m2fetch = spawnM2fetch(site, `${site.dir}/app.ts`, {
        args: ["--workers", workers],
      });
      const status = await within(m2fetch.status, 20_000, null);
      assert.ok(status !== null, `still running:\n${m2fetch.output()}`);
      assert.notEqual(status.code, 0);
      const errors = m2fetch.output().split("\n").filter((text) =>
        text.startsWith("m2fetch: ")
      );
      assert.equal(errors.length, 1, m2fetch.output());
      assert.match(errors[0], line);
      assert.doesNotMatch(m2fetch.output(), /replac/i);
    });
  }
}
