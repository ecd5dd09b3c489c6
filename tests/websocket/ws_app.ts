/**
 * The WebSocket test app: one handler module, served both behind mongrel2
 * (in-process m2fetch) and by `deno serve`, so the same assertions run
 * against both. Each path is one behaviour; the server side of every socket
 * records what it saw under the `id` query parameter, readable with
 * `GET /events?id=ID`.
 *
 * - `/echo`: sends every message back as it came (binaryType "arraybuffer").
 * - `/echo-blob`: the same with binaryType "blob" (so `send(Blob)`).
 * - `/close`: on the message "close", closes with 4002 "done".
 * - `/refuse`: answers 403 instead of upgrading.
 * - `/chat`: selects the subprotocol "chat".
 * - `/limit`: `maxMessageSize` 1024.
 * - `/room`: joins the room; the message "go" broadcasts "hello" to it;
 *   `GET /room/size` tells how many sockets are in.
 *
 * @module
 */

import { broadcast, upgradeWebSocket } from "../../mod.ts";

const events = new Map<string, string[]>();
const room = new Set<WebSocket>();

function record(id: string, line: string): void {
  const lines = events.get(id) ?? [];
  lines.push(line);
  events.set(id, lines);
}

function describe(data: unknown): string {
  if (typeof data === "string") return `text ${data.length}`;
  if (data instanceof ArrayBuffer) return `arraybuffer ${data.byteLength}`;
  if (data instanceof Blob) return `blob ${data.size}`;
  return typeof data;
}

function socketFor(request: Request, path: string, id: string): Response {
  if (path === "/refuse") {
    return new Response("Forbidden", { status: 403 });
  }
  const { socket, response } = upgradeWebSocket(request, {
    protocol: path === "/chat" ? "chat" : undefined,
    maxMessageSize: path === "/limit" ? 1024 : undefined,
  });
  if (path === "/echo-blob") socket.binaryType = "blob";
  socket.onopen = () => {
    record(id, `open ${socket.protocol}`);
    if (path === "/room") room.add(socket);
  };
  socket.onmessage = (event) => {
    const data = event.data;
    record(id, `message ${describe(data)}`);
    if (path === "/close" && data === "close") {
      socket.close(4002, "done");
    } else if (path === "/room" && data === "go") {
      record(id, `broadcast ${broadcast(room, "hello")}`);
    } else if (path !== "/room") {
      socket.send(data);
    }
  };
  socket.onerror = (event) => {
    record(id, `error ${event instanceof ErrorEvent ? event.message : ""}`);
  };
  socket.onclose = (event) => {
    room.delete(socket);
    record(id, `close ${event.code} ${event.reason} ${event.wasClean}`);
  };
  return response;
}

/** The test app; its paths are listed in the module documentation. */
export default {
  fetch(request: Request): Response {
    const url = new URL(request.url);
    const id = url.searchParams.get("id") ?? "";
    if (url.pathname === "/events") {
      return Response.json(events.get(id) ?? []);
    }
    if (url.pathname === "/room/size") {
      return Response.json(room.size);
    }
    return socketFor(request, url.pathname, id);
  },
} satisfies Deno.ServeDefaultExport;
