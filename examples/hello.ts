/**
 * Hello world: runs unchanged under `deno serve examples/hello.ts` and
 * behind mongrel2 (`deno run -A cli.ts dev examples/hello.ts`).
 *
 * @module
 */

export default {
  fetch(_request: Request): Response {
    return new Response("Hello from m2fetch\n", {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
} satisfies Deno.ServeDefaultExport;
