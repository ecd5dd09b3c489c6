/**
 * Long and large responses for tests/reliability and bench/: a big
 * streamed body (optionally after a delay), a server-sent-events stream that notices when its client
 * leaves, a POST echo, a thrown error and a 404. `/state` reports the event streams.
 *
 * @module
 */

const encoder = new TextEncoder();
const CHUNK = new Uint8Array(64 * 1024).fill(0x78);
const state = { sseOpen: 0, sseAborted: 0, sseEvents: 0 };

/** `size` bytes in 64 KiB chunks, produced only as fast as they are read. */
function bigBody(size: number): ReadableStream<Uint8Array> {
  let left = size;
  return new ReadableStream({
    pull(controller) {
      if (left <= 0) return controller.close();
      const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= piece.length;
      controller.enqueue(piece);
    },
  }, { highWaterMark: 1 });
}

/** An event every `every` ms until the client leaves (request.signal aborts). */
function events(request: Request, every: number): ReadableStream<Uint8Array> {
  let timer: ReturnType<typeof setInterval> | undefined;
  let n = 0;
  return new ReadableStream({
    start(controller) {
      state.sseOpen++;
      const stop = () => {
        clearInterval(timer);
        state.sseOpen--;
        state.sseAborted++;
        try {
          controller.close();
        } catch {
          // Already cancelled.
        }
      };
      if (request.signal.aborted) return stop();
      request.signal.addEventListener("abort", stop, { once: true });
      controller.enqueue(encoder.encode(`: open\n\n`));
      timer = setInterval(() => {
        state.sseEvents++;
        controller.enqueue(encoder.encode(`id: ${n}\ndata: ${n++}\n\n`));
      }, every);
    },
    cancel() {
      clearInterval(timer);
    },
  });
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    switch (url.pathname) {
      case "/big": {
        const mib = Number(url.searchParams.get("mib") ?? "1");
        // Starts after a while, whatever happens to the client meanwhile.
        const after = Number(url.searchParams.get("after") ?? "0");
        if (after > 0) {
          await new Promise((resolve) => setTimeout(resolve, after));
        }
        return new Response(bigBody(Math.round(mib * 1024 * 1024)), {
          headers: { "content-type": "application/octet-stream" },
        });
      }
      case "/sse":
        return new Response(
          events(request, Number(url.searchParams.get("every") ?? "1000")),
          {
            headers: {
              "content-type": "text/event-stream",
              "cache-control": "no-store",
            },
          },
        );
      case "/echo":
        return new Response(await request.arrayBuffer(), {
          headers: {
            "content-type": request.headers.get("content-type") ??
              "application/octet-stream",
          },
        });
      case "/error":
        throw new Error("deliberate failure");
      case "/late": {
        // Answers after a while, whatever happens to the client meanwhile.
        const ms = Number(url.searchParams.get("ms") ?? "2000");
        await new Promise((resolve) => setTimeout(resolve, ms));
        return new Response(`late ${url.pathname}\n`);
      }
      case "/missing":
        return new Response("not found\n", { status: 404 });
      case "/state":
        return Response.json(state);
      default:
        return new Response(`ok ${url.pathname}\n`);
    }
  },
} satisfies Deno.ServeDefaultExport;
