/**
 * Run with `--v8-flags=--expose-gc` by `young_request_test.ts`: builds
 * 20,000 requests the way the argument says (`young`; `young-body`, a POST
 * with a body; or `constructed`), drops them, runs two minor collections
 * and prints the heap growth per request in bytes: what remains is what
 * only a major collection frees.
 *
 * @module
 */

import { youngRequest } from "../../runtime/http/young_request.ts";

const COUNT = 20_000;
const gc = (globalThis as { gc?: (options: object) => void }).gc;
if (gc === undefined) throw new Error("Run with --v8-flags=--expose-gc");
const mode = Deno.args[0];
const body = new TextEncoder().encode('{"a":1}');
const build = mode === "young"
  ? () => youngRequest("GET", "http://localhost/a", [["accept", "*/*"]])
  : mode === "young-body"
  ? () => youngRequest("POST", "http://localhost/a", [], undefined, body)
  : mode === "constructed"
  ? () =>
    new Request("http://localhost/a", {
      method: "GET",
      headers: [["accept", "*/*"]],
    })
  : undefined;
if (build === undefined) throw new Error(`Unknown mode "${mode}"`);

let urls = 0;
const buildSome = (count: number) => {
  for (let i = 0; i < count; i++) urls += build()!.url.length;
};
buildSome(1_000);
gc({ type: "major", execution: "sync" });
const before = Deno.memoryUsage().heapUsed;
buildSome(COUNT);
gc({ type: "minor", execution: "sync" });
gc({ type: "minor", execution: "sync" });
const after = Deno.memoryUsage().heapUsed;
if (urls === 0) throw new Error("The requests had no URL");
console.log(Math.max(0, Math.round((after - before) / COUNT)));
