/**
 * `broadcast()`: one message to many WebSockets. Behind mongrel2 the frame
 * is encoded once and written with multi-id replies (one reply per sender
 * and 128 connections), so mongrel2 copies it to the clients instead of
 * m2fetch sending it once per socket.
 *
 * @module
 */

import { encodeReplies } from "../protocol/reply.ts";
import { encodeDataFrame, socketControl, type SocketRoute } from "./socket.ts";

/**
 * Sends `data` to every open socket in `sockets` (each socket once; sockets
 * that are not open are skipped).
 *
 * Sockets made by `upgradeWebSocket()` behind mongrel2 share replies: a
 * socket whose connection is idle and whose download credits cover the
 * frame gets it through one multi-id reply, and those credits are taken, so
 * flow control stays exact. Any other socket (one still writing, short of
 * credits, or a `deno serve` socket) gets it through its own `send()`, after
 * what it already queued. Per socket, messages keep their order.
 *
 * @param sockets The sockets, e.g. a `Set` of the sockets in a room.
 * @param data A string (text) or bytes (binary). Read a Blob first.
 * @returns How many sockets the message was sent to.
 * @throws {TypeError} When `data` is a Blob.
 *
 * @example Chat room
 * ```ts
 * import { broadcast, upgradeWebSocket } from "@m2fetch/m2fetch";
 * const room = new Set<WebSocket>();
 * export default {
 *   fetch(request: Request): Response {
 *     const { socket, response } = upgradeWebSocket(request);
 *     socket.onopen = () => room.add(socket);
 *     socket.onclose = () => room.delete(socket);
 *     socket.onmessage = (event) => broadcast(room, event.data);
 *     return response;
 *   },
 * } satisfies Deno.ServeDefaultExport;
 * ```
 */
export function broadcast(
  sockets: Iterable<WebSocket>,
  data: string | ArrayBufferLike | ArrayBufferView,
): number {
  if (data instanceof Blob) {
    throw new TypeError(
      "Cannot broadcast a Blob: it is read asynchronously; send its bytes (await blob.bytes())",
    );
  }
  let encoded: { frame: Uint8Array; size: number } | undefined;
  const shared = new Map<SocketRoute["send"], Map<string, string[]>>();
  let count = 0;
  for (const socket of new Set(sockets)) {
    if (socket.readyState !== WebSocket.OPEN) continue;
    count++;
    const control = socketControl(socket);
    if (control === undefined) {
      socket.send(data);
      continue;
    }
    encoded ??= encodeDataFrame(data);
    const route = control.idleRoute();
    if (route !== null && route.takeCredits(encoded.frame.length)) {
      let senders = shared.get(route.send);
      if (senders === undefined) {
        senders = new Map();
        shared.set(route.send, senders);
      }
      const ids = senders.get(route.sender);
      if (ids === undefined) senders.set(route.sender, [route.id]);
      else ids.push(route.id);
    } else {
      control.queue(encoded.frame, encoded.size);
    }
  }
  for (const [send, senders] of shared) {
    for (const [sender, ids] of senders) {
      for (const message of encodeReplies(sender, ids, encoded!.frame)) {
        send(message);
      }
    }
  }
  return count;
}
