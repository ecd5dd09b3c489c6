/**
 * A WebSocket app for tests/workers/ws_backlog_test.ts. The handler holds
 * its thread from the first binary message until the file named by
 * `?release=` exists (a handler far slower than its client), counts the
 * binary messages, and answers a text message with `got COUNT`.
 */
const nap = new Int32Array(new SharedArrayBuffer(4));

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

export default {
  fetch(request: Request): Response {
    const release = new URL(request.url).searchParams.get("release")!;
    const { socket, response } = Deno.upgradeWebSocket(request);
    let count = 0;
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        socket.send(`got ${count}`);
        return;
      }
      if (count++ > 0) return;
      // Blocks the thread without spinning the CPU.
      while (!exists(release)) Atomics.wait(nap, 0, 0, 10);
    };
    return response;
  },
} satisfies Deno.ServeDefaultExport;
