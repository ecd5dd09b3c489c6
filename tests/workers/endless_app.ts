/**
 * For tests/workers/retire_test.ts: every response is an event stream that
 * never ends (one event every 50 ms).
 */
export default {
  fetch(): Response {
    let timer: ReturnType<typeof setInterval> | undefined;
    return new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          const event = new TextEncoder().encode("data: tick\n\n");
          controller.enqueue(event);
          timer = setInterval(() => controller.enqueue(event), 50);
        },
        cancel() {
          clearInterval(timer);
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
  },
} satisfies Deno.ServeDefaultExport;
