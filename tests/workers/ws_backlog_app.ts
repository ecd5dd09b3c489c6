/**
 * A WebSocket app for tests/workers/ws_backlog_test.ts. The handler holds
 * its thread from the first binary message until the file named by
 * `?release=` exists (a handler far slower than its client), counts the
 * binary messages, and answers a text message with `got COUNT`; the text
 * message `hold PATH` holds it again from the next binary message, until
 * PATH exists.
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
    let release: string | null = new URL(request.url).searchParams.get(
      "release",
    )!;
    const { socket, response } = Deno.upgradeWebSocket(request);
    let count = 0;
    socket.onmessage = (event) => {
      if (typeof event.data === "string") {
        if (event.data.startsWith("hold ")) release = event.data.slice(5);
        else socket.send(`got ${count}`);
        return;
      }
      count++;
      if (release === null) return;
      // Blocks the thread without spinning the CPU.
      while (!exists(release)) Atomics.wait(nap, 0, 0, 10);
      release = null;
    };
    return response;
  },
} satisfies Deno.ServeDefaultExport;
