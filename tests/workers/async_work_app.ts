/**
 * A handler for tests/workers/async_work_test.ts whose CPU work comes
 * after an `await` (as after `await request.json()`): `/work?ms=N` spends
 * N ms of CPU, `/quick` answers at once.
 */
export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/quick") return new Response("quick");
    await request.text();
    const until = performance.now() + Number(url.searchParams.get("ms"));
    while (performance.now() < until) {
      // Work the handler does once its body is in.
    }
    return new Response("worked");
  },
};
