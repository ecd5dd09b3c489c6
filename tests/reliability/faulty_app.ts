/**
 * A handler with one fault per path, for tests/reliability: it throws,
 * rejects, returns nothing or a network error, returns one Response twice,
 * breaks its body stream half-way or never answers. `/state` reports how the last hanging request was aborted.
 *
 * @module
 */

const encoder = new TextEncoder();
let lastAbort = "none";
// A common mistake: one Response kept and returned for every request.
const shared = new Response("shared body\n");

function brokenStream(
  goodChunks: number,
  size = 1024,
): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    async pull(controller) {
      if (sent === goodChunks) {
        controller.error(new Error("body stream broke half-way"));
        return;
      }
      sent++;
      controller.enqueue(new Uint8Array(size).fill(0x61));
      await new Promise((resolve) => setTimeout(resolve, 5));
    },
  });
}

export default {
  fetch(request: Request): Response | Promise<Response> {
    const path = new URL(request.url).pathname;
    switch (path) {
      case "/throw":
        throw new Error("handler threw synchronously");
      case "/reject":
        return Promise.reject(new Error("handler rejected"));
      case "/undefined":
        return undefined as unknown as Response;
      case "/not-a-response":
        return { status: 200 } as unknown as Response;
      case "/network-error":
        return Response.error();
      case "/reused":
        return shared;
      case "/stream-breaks":
        return new Response(brokenStream(8), {
          headers: { "content-type": "application/octet-stream" },
        });
      case "/stream-breaks-at-once":
        return new Response(brokenStream(0));
      case "/length-breaks":
        return new Response(brokenStream(4), {
          headers: { "content-length": String(64 * 1024) },
        });
      case "/hang":
        request.signal.addEventListener("abort", () => {
          lastAbort = (request.signal.reason as Error)?.name ?? "aborted";
        });
        return new Promise<Response>(() => {});
      case "/state":
        return Response.json({ lastAbort });
      default:
        return new Response(encoder.encode(`ok ${path}\n`));
    }
  },
} satisfies Deno.ServeDefaultExport;
