/**
 * A response written over time: one line every 100 ms, 10 lines, as a
 * chunked body. It stops early when the client leaves (`request.signal`
 * aborts, or the runtime cancels the body stream).
 *
 * Query parameters tune it: `?lines=N` (1-1000) and `?interval=MS`
 * (0-10000).
 *
 * Runs unchanged under `deno serve examples/streaming.ts` and behind
 * mongrel2 (`deno run -A cli.ts dev examples/streaming.ts`, at
 * 127.0.0.1:6767):
 *
 * ```sh
 * curl -N http://127.0.0.1:6767/?lines=5
 * ```
 *
 * @module
 */

const encoder = new TextEncoder();

function clamp(text: string | null, fallback: number, max: number): number {
  const value = Number(text ?? fallback);
  if (!Number.isInteger(value) || value < 0) return fallback;
  return Math.min(value, max);
}

/**
 * Builds the line stream for a request.
 *
 * @param request The request; its signal stops the stream.
 * @returns The streaming response.
 *
 * @example Usage
 * ```ts
 * import { streamLines } from "./streaming.ts";
 * const response = streamLines(new Request("http://x/?lines=2&interval=0"));
 * console.assert((await response.text()) === "line 1 of 2\nline 2 of 2\n");
 * ```
 */
export function streamLines(request: Request): Response {
  const params = new URL(request.url).searchParams;
  const lines = Math.max(1, clamp(params.get("lines"), 10, 1000));
  const interval = clamp(params.get("interval"), 100, 10_000);
  let sent = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wake: (() => void) | undefined;
  let stop: (() => void) | undefined;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      stop = () => {
        clearTimeout(timer);
        wake?.();
        try {
          controller.close();
        } catch {
          // Already closed or cancelled.
        }
      };
      request.signal.addEventListener("abort", stop, { once: true });
    },
    async pull(controller) {
      if (sent > 0) {
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, interval);
        });
      }
      if (request.signal.aborted) return;
      sent++;
      controller.enqueue(encoder.encode(`line ${sent} of ${lines}\n`));
      if (sent === lines) {
        request.signal.removeEventListener("abort", stop!);
        controller.close();
      }
    },
    cancel() {
      clearTimeout(timer);
      wake?.();
      request.signal.removeEventListener("abort", stop!);
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-store",
    },
  });
}

export default {
  fetch(request: Request): Response {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method Not Allowed\n", {
        status: 405,
        headers: { allow: "GET, HEAD" },
      });
    }
    return streamLines(request);
  },
} satisfies Deno.ServeDefaultExport;
