/** A WebSocket app for the worker tests: echo, and two probe messages. */
import { upgradeWebSocket } from "../../mod.ts";

let closed = 0;
const worker = crypto.randomUUID();

export default {
  fetch(request: Request): Response {
    const { socket, response } = upgradeWebSocket(request);
    socket.binaryType = "arraybuffer";
    socket.onclose = () => closed++;
    socket.onmessage = (event) => {
      if (event.data === "where") socket.send(`worker ${worker}`);
      else if (event.data === "closed?") socket.send(`closed ${closed}`);
      else socket.send(event.data);
    };
    return response;
  },
} satisfies Deno.ServeDefaultExport;
