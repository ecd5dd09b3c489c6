/**
 * For tests/e2e/last_words_test.ts: a streamed body that sends a first
 * line, and 30 ms later enqueues its last line and errors in the same turn,
 * as a proxy does when its upstream sends its last bytes and then resets.
 * At `/sized`, the same with a content-length the two lines fill.
 */
export default {
  fetch(request: Request): Response {
    const encoder = new TextEncoder();
    const sized = new URL(request.url).pathname === "/sized";
    return new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode("first line\n"));
          setTimeout(() => {
            controller.enqueue(encoder.encode("last words\n"));
            controller.error(new Error("upstream reset"));
          }, 30);
        },
      }),
      sized ? { headers: { "content-length": "22" } } : {},
    );
  },
} satisfies Deno.ServeDefaultExport;
