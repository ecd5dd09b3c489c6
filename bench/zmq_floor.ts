/**
 * The floor under m2fetch: a handler that answers mongrel2 with pre-encoded
 * bytes over m2fetch's own ZeroMQ transport, without building a `Request`
 * or encoding a `Response`. What it costs is what the transport and
 * mongrel2's handler protocol cost; what m2fetch costs on top is m2fetch's
 * HTTP work.
 *
 * - Any path but the one below: the same hello-world response, found
 *   without parsing the headers. Every response keeps the connection open
 *   (for wrk's HTTP/1.1 keep-alive only).
 * - `/floor/stream/BYTES`: BYTES bytes of `A`, sent as fast as mongrel2's
 *   download credits allow: each credits notice is answered at once with
 *   as many bytes as it grants, from one pre-built buffer.
 *
 * ```sh
 * deno run -A bench/zmq_floor.ts SEND_SPEC RECV_SPEC
 * ```
 *
 * Other notices (disconnects, and credits of connections not streaming)
 * are read and dropped.
 *
 * @module
 */

import { bytesAt } from "../runtime/protocol/bytes.ts";
import { parseMessage } from "../runtime/protocol/message.ts";
import { readCreditsNotice } from "../runtime/protocol/notice.ts";
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

/** mongrel2's credit window (`MAX_CREDITS`), granted with a connection's first request. */
const WINDOW = 100 * 1024;
const FILLER = new Uint8Array(WINDOW).fill(0x41);
const STREAM_PREFIX = encoder.encode("/floor/stream/");
const STREAM_PATH = /^\/floor\/stream\/(\d{1,13})$/;

interface FloorStream {
  prefix: Uint8Array;
  left: number;
  credits: number;
}

/**
 * The floor handler with its streams: answers a message with the replies
 * to send, in order.
 *
 * @example Usage
 * ```ts
 * import { FloorHandler } from "./zmq_floor.ts";
 * const floor = new FloorHandler();
 * const replies = floor.handle(
 *   new TextEncoder().encode("abc 7 /floor/stream/5 2:{},0:,"),
 * );
 * console.assert(replies.length === 2); // the head, then the 5 bytes
 * ```
 */
export class FloorHandler {
  readonly #streams = new Map<string, FloorStream>();

  /**
   * Handles one message from mongrel2.
   *
   * @param message The message bytes.
   * @returns The replies, possibly none.
   */
  handle(message: Uint8Array): Uint8Array[] {
    const first = message.indexOf(SPACE);
    const second = message.indexOf(SPACE, first + 1);
    const notice = message[second + 1] === AT;
    if (notice) return this.#credit(message);
    if (!bytesAt(message, second + 1, STREAM_PREFIX)) {
      const reply = floorReply(message);
      return reply === null ? [] : [reply];
    }
    const parsed = parseMessage(message);
    const credits = Number(parsed.headers.DOWNLOAD_CREDITS ?? 0);
    const match = STREAM_PATH.exec(parsed.path);
    if (match === null) return [floorReply(message)!];
    const id = parsed.connectionId;
    const prefix = encoder.encode(`${parsed.sender} ${id.length}:${id}, `);
    const bytes = Number(match[1]);
    const head = encoder.encode(
      `HTTP/1.1 200 OK\r\ncontent-length: ${bytes}\r\n\r\n`,
    );
    const stream = {
      prefix,
      left: bytes,
      credits: (credits > 0 ? credits : WINDOW) - head.length,
    };
    this.#streams.set(id, stream);
    return [withPrefix(prefix, head), ...this.#pump(id, stream)];
  }

  /** A credits notice: more of the stream on that connection, if any. */
  #credit(message: Uint8Array): Uint8Array[] {
    const notice = this.#streams.size === 0 ? null : readCreditsNotice(message);
    if (notice === null) return [];
    const stream = this.#streams.get(notice.connectionId);
    if (stream === undefined) return [];
    stream.credits += notice.credits;
    return this.#pump(notice.connectionId, stream);
  }

  #pump(id: string, stream: FloorStream): Uint8Array[] {
    const replies: Uint8Array[] = [];
    while (stream.left > 0 && stream.credits > 0) {
      const size = Math.min(stream.left, stream.credits, WINDOW);
      replies.push(withPrefix(stream.prefix, FILLER.subarray(0, size)));
      stream.left -= size;
      stream.credits -= size;
    }
    if (stream.left === 0) this.#streams.delete(id);
    return replies;
  }
}

function withPrefix(prefix: Uint8Array, data: Uint8Array): Uint8Array {
  const reply = new Uint8Array(prefix.length + data.length);
  reply.set(prefix);
  reply.set(data, prefix.length);
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
  const floor = new FloorHandler();
  for await (const message of transport.messages()) {
    for (const reply of floor.handle(message)) transport.send(reply);
  }
}
