/**
 * A WebSocket app for tests/workers/ws_burst_test.ts. `/count?out=FILE`
 * counts the messages it gets and, once the socket closes, writes
 * `COUNT/CODE` to FILE (the test reads it whichever worker held the
 * socket). `/slow` spends 1 ms of CPU on every message and answers "end"
 * with how many came before it.
 */
export default {
  fetch(request: Request): Response {
    const url = new URL(request.url);
    const { socket, response } = Deno.upgradeWebSocket(request);
    let count = 0;
    if (url.pathname === "/count") {
      const out = url.searchParams.get("out")!;
      socket.onmessage = () => count++;
      socket.onclose = (event) =>
        Deno.writeTextFileSync(out, `${count}/${event.code}`);
    } else {
      socket.onmessage = (event) => {
        if (event.data === "end") {
          socket.send(`got ${count}`);
          return;
        }
        count++;
        const until = performance.now() + 1;
        while (performance.now() < until) {
          // A handler slower than its client.
        }
      };
    }
    return response;
  },
} satisfies Deno.ServeDefaultExport;
