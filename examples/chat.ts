/**
 * A chat room over WebSockets. Runs unchanged under `deno serve` and behind
 * mongrel2:
 *
 * ```sh
 * deno serve --allow-read examples/chat.ts   # http://localhost:8000
 * deno run -A cli.ts dev examples/chat.ts    # http://127.0.0.1:6767
 * ```
 *
 * (`--allow-read` to serve `chat.html`.)
 *
 * `GET /` serves `chat.html`; `GET /ws?name=NAME` joins the room. Every
 * line is sent to everyone with `broadcast()`: behind mongrel2 that is one
 * frame, encoded once and written to up to 128 clients per reply; under
 * `deno serve` it falls back to `socket.send()` per client.
 *
 * @module
 */

import { broadcast, upgradeWebSocket } from "../mod.ts";

/** Everyone in the room. */
const room = new Set<WebSocket>();

const PAGE = new URL("./chat.html", import.meta.url);

function post(from: string, text: string): void {
  broadcast(room, JSON.stringify({ from, text, at: Date.now() }));
}

function join(request: Request): Response {
  const given = new URL(request.url).searchParams.get("name") ?? "";
  const name = given.trim().slice(0, 32) || "anonymous";
  const { socket, response } = upgradeWebSocket(request, {
    // chat.html's input holds at most 1000 characters: 3000 bytes at most.
    maxMessageSize: 4096,
  });
  socket.onopen = () => {
    room.add(socket);
    post("", `${name} joined (${room.size} here)`);
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string" && event.data.trim() !== "") {
      post(name, event.data.slice(0, 1000));
    }
  };
  socket.onclose = () => {
    if (room.delete(socket)) post("", `${name} left`);
  };
  return response;
}

/** The chat handler: the page, the room's WebSocket, 404 for the rest. */
export default {
  async fetch(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (pathname === "/ws") {
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
        return new Response("Expected a WebSocket upgrade\n", { status: 426 });
      }
      return join(request);
    }
    if (pathname === "/") {
      return new Response(await Deno.readFile(PAGE), {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    }
    return new Response("Not Found\n", { status: 404 });
  },
} satisfies Deno.ServeDefaultExport;
