/**
 * For tests/e2e/signal_test.ts: `/last` says how the previous request's
 * `request.signal` ended (as JSON), `/hang` answers only once its signal
 * aborts (the client left), any other path answers at once.
 *
 * @module
 */

let last = "not aborted";

export default {
  fetch(request: Request): Response | Promise<Response> {
    if (new URL(request.url).pathname === "/last") return Response.json(last);
    const aborted = new Promise<Response>((resolve) => {
      request.signal.addEventListener("abort", () => {
        const reason = request.signal.reason as DOMException;
        last = `${reason.name}: ${reason.message}`;
        resolve(new Response("too late"));
      });
    });
    if (new URL(request.url).pathname === "/hang") {
      last = "hanging";
      return aborted;
    }
    return new Response("ok");
  },
} satisfies Deno.ServeDefaultExport;
