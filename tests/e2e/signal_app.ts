/**
 * For tests/e2e/signal_test.ts: `/last` says how the previous request's
 * `request.signal` ended (as JSON), any other path answers at once.
 *
 * @module
 */

let last = "not aborted";

export default {
  fetch(request: Request): Response {
    if (new URL(request.url).pathname === "/last") return Response.json(last);
    request.signal.addEventListener("abort", () => {
      const reason = request.signal.reason as DOMException;
      last = `${reason.name}: ${reason.message}`;
    });
    return new Response("ok");
  },
} satisfies Deno.ServeDefaultExport;
