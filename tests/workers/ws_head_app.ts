/**
 * A WebSocket app that changes its 101 in the ways a handler (or its
 * middleware) may: by path, it adds headers, selects one subprotocol and
 * then names another, or rewrites the casing of `upgrade` and
 * `connection`.
 */
import { upgradeWebSocket } from "../../mod.ts";

export default {
  fetch(request: Request): Response {
    const path = new URL(request.url).pathname;
    const { socket, response } = upgradeWebSocket(request, {
      protocol: path === "/protocol" ? "chat" : undefined,
    });
    socket.onmessage = (event) => socket.send(event.data);
    const headers = response.headers;
    if (path === "/added") {
      headers.set("x-app", "ws");
      headers.append("x-multi", "1");
      headers.append("x-multi", "2");
      headers.append("set-cookie", "a=1");
      headers.append("set-cookie", "b=2");
    } else if (path === "/protocol") {
      headers.set("sec-websocket-protocol", "superchat");
    } else if (path === "/recased") {
      headers.set("upgrade", "WebSocket");
      headers.set("connection", "upgrade");
    }
    return response;
  },
} satisfies Deno.ServeDefaultExport;
