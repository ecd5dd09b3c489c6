/**
 * The floor under m2fetch: a handler that answers every mongrel2 request
 * with the same pre-encoded hello-world HTTP response, over m2fetch's own
 * ZeroMQ transport, without parsing headers, building a `Request` or
 * encoding a `Response`. What it costs is what the transport and mongrel2's
 * handler protocol cost; what m2fetch costs on top is m2fetch's HTTP work.
 *
 * ```sh
 * deno run -A bench/zmq_floor.ts SEND_SPEC RECV_SPEC
 * ```
 *
 * Notices (`@*` credits and disconnects) are read and dropped. Every
 * response keeps the connection open: for wrk's HTTP/1.1 keep-alive only.
 *
 * @module
 */

import { ZmqTransport } from "../runtime/transport/zmq.ts";

const encoder = new TextEncoder();
const RESPONSE = encoder.encode(
  "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n" +
    "content-length: 19\r\n\r\nHello from m2fetch\n",
);
const SPACE = 0x20;
const AT = 0x40;

/**
 * Builds the reply to a request message, or returns `null` for a notice.
 *
 * @param message A message from mongrel2: `SENDER ID PATH ...`.
 * @returns `SENDER LEN:ID, RESPONSE`, or `null`.
 *
 * @example Usage
 * ```ts
 * import { floorReply } from "./zmq_floor.ts";
 * const bytes = new TextEncoder().encode("abc 7 / 2:{},0:,");
 * const reply = new TextDecoder().decode(floorReply(bytes)!);
 * console.assert(reply.startsWith("abc 1:7, HTTP/1.1 200 OK"));
 * ```
 */
export function floorReply(message: Uint8Array): Uint8Array | null {
  const first = message.indexOf(SPACE);
  const second = message.indexOf(SPACE, first + 1);
  if (first <= 0 || second < 0 || message[second + 1] === AT) return null;
  const sender = message.subarray(0, first);
  const id = message.subarray(first + 1, second);
  const length = encoder.encode(`${id.length}:`);
  const reply = new Uint8Array(
    sender.length + 1 + length.length + id.length + 2 + RESPONSE.length,
  );
  let at = 0;
  reply.set(sender, at);
  at += sender.length;
  reply[at++] = SPACE;
  reply.set(length, at);
  at += length.length;
  reply.set(id, at);
  at += id.length;
  reply[at++] = 0x2c;
  reply[at++] = SPACE;
  reply.set(RESPONSE, at);
  return reply;
}

if (import.meta.main) {
  const [sendSpec, recvSpec] = Deno.args;
  if (sendSpec === undefined || recvSpec === undefined) {
    console.error("usage: deno run -A bench/zmq_floor.ts SEND_SPEC RECV_SPEC");
    Deno.exit(2);
  }
  const transport = new ZmqTransport({ sendSpec, recvSpec });
  Deno.addSignalListener("SIGTERM", () => {
    transport.close().finally(() => Deno.exit(0));
  });
  for await (const message of transport.messages()) {
    const reply = floorReply(message);
    if (reply !== null) transport.send(reply);
  }
}
