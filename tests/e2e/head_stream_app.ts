/**
 * For tests/e2e/head_stream_test.ts: a streamed body that stays open until
 * cancelled (for GET it ends after its first chunk), and whose source's
 * `cancel()` never settles, as one that waits for a slow resource to close.
 */
export default {
  fetch(request: Request): Response {
    const path = new URL(request.url).pathname;
    return new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(`${path}\n`));
          if (request.method === "GET") controller.close();
        },
        cancel: () => new Promise<void>(() => {}),
      }),
    );
  },
} satisfies Deno.ServeDefaultExport;
