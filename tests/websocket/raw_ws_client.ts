/**
 * A byte-level WebSocket client for tests that Deno's `WebSocket` cannot
 * express: pings, fragmented messages, invalid UTF-8, refused handshakes and
 * vanishing without a close frame.
 *
 * @module
 */

import { type DecodedFrame, decodeFrame } from "./frame_helpers.ts";

export type { DecodedFrame } from "./frame_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HEAD_END = encoder.encode("\r\n\r\n");

function indexOf(bytes: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (bytes[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

/**
 * A raw TCP WebSocket client: handshake, then masked frames out and server
 * frames in.
 *
 * @example
 * ```ts ignore
 * import { RawWsClient } from "./raw_ws_client.ts";
 * const client = await RawWsClient.connect(8080, "/echo");
 * console.log(client.status);
 * client.abort();
 * ```
 */
export class RawWsClient {
  /** The handshake response's status code. */
  readonly status: number;
  /** The handshake response's head, as text. */
  readonly head: string;
  readonly #conn: Deno.TcpConn;
  #buffer: Uint8Array;

  private constructor(
    conn: Deno.TcpConn,
    status: number,
    head: string,
    rest: Uint8Array,
  ) {
    this.#conn = conn;
    this.status = status;
    this.head = head;
    this.#buffer = rest;
  }

  /**
   * Connects and sends a handshake for `path`; resolves once the response
   * head has arrived (whatever its status).
   *
   * @param headers More handshake header lines (a subprotocol, say).
   *
   * @example
   * ```ts ignore
   * import { RawWsClient } from "./raw_ws_client.ts";
   * await RawWsClient.connect(8080, "/echo", { "Sec-WebSocket-Protocol": "chat" });
   * ```
   */
  static async connect(
    port: number,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<RawWsClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const more = Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`).join("");
    await conn.write(encoder.encode(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
        `Sec-WebSocket-Version: 13\r\n${more}\r\n`,
    ));
    let buffer: Uint8Array = new Uint8Array(0);
    while (indexOf(buffer, HEAD_END) < 0) {
      const chunk = await RawWsClient.#read(conn);
      if (chunk === null) throw new Error("Connection closed before a head");
      buffer = concat(buffer, chunk);
    }
    const end = indexOf(buffer, HEAD_END) + 4;
    const head = decoder.decode(buffer.subarray(0, end));
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
    return new RawWsClient(conn, status, head, buffer.slice(end));
  }

  static async #read(conn: Deno.TcpConn): Promise<Uint8Array | null> {
    const chunk = new Uint8Array(65536);
    const n = await conn.read(chunk);
    return n === null ? null : chunk.subarray(0, n);
  }

  /**
   * Writes bytes (frames made with `encodeMaskedFrame`).
   *
   * @example
   * ```ts ignore
   * declare const client: import("./raw_ws_client.ts").RawWsClient;
   * await client.write(new Uint8Array([0x88, 0x80, 1, 2, 3, 4]));
   * ```
   */
  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      offset += await this.#conn.write(bytes.subarray(offset));
    }
  }

  /**
   * Reads the next whole server frame, or `null` at end of stream.
   *
   * @example
   * ```ts ignore
   * declare const client: import("./raw_ws_client.ts").RawWsClient;
   * const frame = await client.readFrame();
   * ```
   */
  async readFrame(): Promise<DecodedFrame | null> {
    while (true) {
      try {
        const frame = decodeFrame(this.#buffer);
        this.#buffer = this.#buffer.slice(frame.frameLength);
        return frame;
      } catch (error) {
        // Only "not a whole frame yet" (a short header, a short payload).
        const short = error instanceof RangeError ||
          (error as Error).message.startsWith("Frame is");
        if (!short) throw error;
      }
      const chunk = await RawWsClient.#read(this.#conn).catch(() => null);
      if (chunk === null) return null;
      this.#buffer = concat(this.#buffer, chunk);
    }
  }

  /**
   * Reads every frame until the server closes the connection.
   *
   * @example
   * ```ts ignore
   * declare const client: import("./raw_ws_client.ts").RawWsClient;
   * const frames = await client.readUntilEnd();
   * ```
   */
  async readUntilEnd(): Promise<DecodedFrame[]> {
    const frames: DecodedFrame[] = [];
    let frame: DecodedFrame | null;
    while ((frame = await this.readFrame()) !== null) frames.push(frame);
    return frames;
  }

  /**
   * Reads the rest of the stream as bytes (after a refused handshake).
   *
   * @example
   * ```ts ignore
   * declare const client: import("./raw_ws_client.ts").RawWsClient;
   * const body = await client.readRest();
   * ```
   */
  async readRest(): Promise<Uint8Array> {
    let chunk: Uint8Array | null;
    while ((chunk = await RawWsClient.#read(this.#conn)) !== null) {
      this.#buffer = concat(this.#buffer, chunk);
    }
    return this.#buffer;
  }

  /**
   * Closes the TCP connection without a close frame.
   *
   * @example
   * ```ts ignore
   * declare const client: import("./raw_ws_client.ts").RawWsClient;
   * client.abort();
   * ```
   */
  abort(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
