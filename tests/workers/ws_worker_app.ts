/**
 * A WebSocket app for the worker tests: echo, and probe messages. "bye"
 * makes the server close with 4000; "ends?" answers with how each socket
 * closed by "bye" ended (close code, wasClean, and how `info.completed`
 * settled); "closed?" and "aborted?" with how many sockets fired close and
 * had their `request.signal` aborted.
 */
import { upgradeWebSocket } from "../../mod.ts";

let closed = 0;
let aborted = 0;
const ends: string[] = [];
const worker = crypto.randomUUID();

export default {
  fetch(request: Request, info: Deno.ServeHandlerInfo): Response {
    const { socket, response } = upgradeWebSocket(request);
    // Headers a handler adds go out with the 101, as under deno serve.
    response.headers.set("x-app", "ws");
    response.headers.append("set-cookie", "a=1");
    response.headers.append("set-cookie", "b=2");
    socket.binaryType = "arraybuffer";
    request.signal.addEventListener("abort", () => aborted++);
    let byServer = false;
    socket.onclose = (event) => {
      closed++;
      if (!byServer) return;
      (info as { completed?: Promise<void> }).completed?.then(
        () => ends.push(`${event.code} ${event.wasClean} completed`),
        () => ends.push(`${event.code} ${event.wasClean} interrupted`),
      );
    };
    socket.onmessage = (event) => {
      if (event.data === "where") socket.send(`worker ${worker}`);
      else if (event.data === "closed?") socket.send(`closed ${closed}`);
      else if (event.data === "aborted?") socket.send(`aborted ${aborted}`);
      else if (event.data === "ends?") socket.send(JSON.stringify(ends));
      else if (event.data === "bye") {
        byServer = true;
        socket.close(4000, "bye");
      } else socket.send(event.data);
    };
    return response;
  },
} satisfies Deno.ServeDefaultExport;
