/**
 * A handler for tests/workers/async_work_test.ts whose CPU work comes
 * after an `await` (as after `await request.json()`): `/work?ms=N` spends
 * N ms of CPU, `/quick` answers at once, `/socket?ms=N` upgrades to a
 * WebSocket that spends N ms on each message after an `await` and answers
 * "end" with how many came before it.
 */
function work(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // Work done once the body (or a message) is in.
  }
}

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const ms = Number(url.searchParams.get("ms"));
    if (url.pathname === "/quick") return new Response("quick");
    if (url.pathname === "/socket") {
      const { socket, response } = Deno.upgradeWebSocket(request);
      let count = 0;
      socket.onmessage = async (event) => {
        if (event.data === "end") return socket.send(`got ${count}`);
        count++;
        await null;
        work(ms);
      };
      return response;
    }
    await request.text();
    work(ms);
    return new Response("worked");
  },
};
