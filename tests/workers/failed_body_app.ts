/**
 * For tests/workers/retire_test.ts: every response's body sends 100 KiB
 * (more than a worker reads ahead, so it crosses as a stream), then fails.
 */
export default {
  fetch(): Response {
    let sent = false;
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent) {
            await new Promise((resolve) => setTimeout(resolve, 50));
            controller.error(new Error("the body broke"));
          } else {
            controller.enqueue(new Uint8Array(100 * 1024).fill(0x61));
          }
          sent = true;
        },
      }),
    );
  },
} satisfies Deno.ServeDefaultExport;
