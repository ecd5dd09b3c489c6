/**
 * For tests/e2e/last_words_test.ts: a streamed body that sends a first
 * line, and 30 ms later enqueues its last line and errors in the same turn,
 * as a proxy does when its upstream sends its last bytes and then resets.
 */
export default {
  fetch(): Response {
    const encoder = new TextEncoder();
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
    );
  },
} satisfies Deno.ServeDefaultExport;
