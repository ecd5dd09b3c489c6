/**
 * The ZeroMQ wire protocol (ZMTP 3.0 with the NULL mechanism) as far as a
 * mongrel2 handler needs it: the greeting, the `READY` handshake, and
 * frames. Pure and synchronous: bytes in, values out; the sockets are in
 * `zmq.ts`.
 *
 * m2fetch announces version 3.0, so a libzmq 4.x peer (mongrel2's) sends
 * its subscriptions as messages whose first byte is 1 (subscribe) or 0
 * (cancel) rather than as ZMTP 3.1 commands; {@linkcode subscriptionOf}
 * reads both.
 *
 * @module
 */

import { decodeByteString } from "../protocol/bytes.ts";

const GREETING_BYTES = 64;
const FLAG_MORE = 0x01;
const FLAG_LONG = 0x02;
const FLAG_COMMAND = 0x04;
/** The read buffer's size when it holds no large frame. */
const DEFAULT_BUFFER_BYTES = 64 * 1024;

const encoder = new TextEncoder();

/** The bytes as a byte string (one code unit per byte). */
function byteString(bytes: Uint8Array): string {
  return decodeByteString(bytes, 0, bytes.length);
}

/** The socket types at either end of a mongrel2 handler link. */
export type ZmtpSocketType = "PULL" | "PUSH" | "PUB" | "SUB" | "XPUB" | "XSUB";

/** One frame of a ZMTP stream. */
export interface ZmtpFrame {
  /** A command (`READY`, `ERROR`, `PING`, `SUBSCRIBE`…) rather than a message frame. */
  command: boolean;
  /** More frames of the same message follow. */
  more: boolean;
  /** The frame's bytes (a copy: it stays valid after more input). */
  body: Uint8Array;
}

/** A command frame, split into its name and data. */
export interface ZmtpCommand {
  /** E.g. `READY`. */
  name: string;
  /** What follows the name. */
  data: Uint8Array;
}

/** A peer broke the protocol; the connection cannot continue. */
export class ZmtpError extends Error {
  /**
   * Makes the error.
   *
   * @param message What the peer sent, and why m2fetch cannot use it.
   */
  constructor(message: string) {
    super(message);
    this.name = "ZmtpError";
  }
}

/**
 * The 64-byte greeting m2fetch sends: ZMTP 3.0, mechanism NULL, not a
 * server.
 *
 * @returns The greeting bytes.
 *
 * @example Usage
 * ```ts
 * import { greeting } from "./zmtp.ts";
 * console.assert(greeting().length === 64 && greeting()[10] === 3);
 * ```
 */
export function greeting(): Uint8Array {
  const bytes = new Uint8Array(GREETING_BYTES);
  bytes[0] = 0xff;
  // The padding is the identity length + 1, as libzmq writes it, so that a
  // ZMTP 1.0 peer reads an empty identity.
  bytes[8] = 1;
  bytes[9] = 0x7f;
  bytes[10] = 3;
  bytes[11] = 0;
  bytes.set(encoder.encode("NULL"), 12);
  return bytes;
}

/**
 * The `READY` command that ends the NULL handshake, naming this end's
 * socket type, framed and ready to send.
 *
 * @param socketType This end's socket type.
 * @returns The command frame.
 *
 * @example Usage
 * ```ts
 * import { readyCommand, ZmtpDecoder } from "./zmtp.ts";
 * const decoder = new ZmtpDecoder({ greeted: true });
 * decoder.write(readyCommand("PULL"));
 * console.assert(decoder.next()?.command === true);
 * ```
 */
export function readyCommand(socketType: ZmtpSocketType): Uint8Array {
  const name = encoder.encode("Socket-Type");
  const value = encoder.encode(socketType);
  const data = new Uint8Array(1 + name.length + 4 + value.length);
  data[0] = name.length;
  data.set(name, 1);
  new DataView(data.buffer).setUint32(1 + name.length, value.length);
  data.set(value, 5 + name.length);
  return commandFrame("READY", data);
}

/**
 * Frames a command.
 *
 * @param name The command name, e.g. `PONG`.
 * @param data What follows the name.
 * @returns The command frame.
 *
 * @example Usage
 * ```ts
 * import { commandFrame } from "./zmtp.ts";
 * console.assert(commandFrame("PONG", new Uint8Array()).length === 7);
 * ```
 */
export function commandFrame(name: string, data: Uint8Array): Uint8Array {
  const nameBytes = encoder.encode(name);
  const body = new Uint8Array(1 + nameBytes.length + data.length);
  body[0] = nameBytes.length;
  body.set(nameBytes, 1);
  body.set(data, 1 + nameBytes.length);
  const frame = new Uint8Array(frameHeaderLength(body.length) + body.length);
  const at = writeFrameHeader(frame, 0, body.length, FLAG_COMMAND);
  frame.set(body, at);
  return frame;
}

/**
 * Splits a command frame's body into its name and data.
 *
 * @param body A command frame's body.
 * @returns The command.
 * @throws {ZmtpError} When the name runs past the body.
 *
 * @example Usage
 * ```ts
 * import { commandFrame, parseCommand, ZmtpDecoder } from "./zmtp.ts";
 * const decoder = new ZmtpDecoder({ greeted: true });
 * decoder.write(commandFrame("PING", new Uint8Array([0, 0])));
 * console.assert(parseCommand(decoder.next()!.body).name === "PING");
 * ```
 */
export function parseCommand(body: Uint8Array): ZmtpCommand {
  const length = body[0];
  if (body.length === 0 || 1 + length > body.length) {
    throw new ZmtpError("The peer sent a command with a malformed name");
  }
  return {
    name: decodeByteString(body, 1, 1 + length),
    data: body.subarray(1 + length),
  };
}

/**
 * Reads the properties of a `READY` command (`Socket-Type`, `Identity`…).
 *
 * @param data The command's data.
 * @returns Property names and values (values as byte strings).
 * @throws {ZmtpError} When a property runs past the command.
 *
 * @example Usage
 * ```ts
 * import { parseCommand, readyCommand, readyProperties, ZmtpDecoder } from "./zmtp.ts";
 * const decoder = new ZmtpDecoder({ greeted: true });
 * decoder.write(readyCommand("PUSH"));
 * const { data } = parseCommand(decoder.next()!.body);
 * console.assert(readyProperties(data).get("socket-type") === "PUSH");
 * ```
 */
export function readyProperties(data: Uint8Array): Map<string, string> {
  const properties = new Map<string, string>();
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  while (at < data.length) {
    const nameLength = data[at];
    if (at + 1 + nameLength + 4 > data.length) {
      throw new ZmtpError(
        "The peer sent a READY command that ends mid-property",
      );
    }
    const name = decodeByteString(data, at + 1, at + 1 + nameLength);
    at += 1 + nameLength;
    const valueLength = view.getUint32(at);
    at += 4;
    if (at + valueLength > data.length) {
      throw new ZmtpError(
        "The peer sent a READY command that ends mid-property",
      );
    }
    // Property names are case-insensitive.
    properties.set(
      name.toLowerCase(),
      decodeByteString(data, at, at + valueLength),
    );
    at += valueLength;
  }
  return properties;
}

/**
 * Reads a subscription change from a SUB peer: a ZMTP 3.0 message whose
 * first byte is 1 (subscribe) or 0 (cancel), or a ZMTP 3.1 `SUBSCRIBE` or
 * `CANCEL` command.
 *
 * @param frame A frame from the peer.
 * @returns The change, with its topic as a byte string, or null when the frame is none.
 *
 * @example Usage
 * ```ts
 * import { subscriptionOf } from "./zmtp.ts";
 * const change = subscriptionOf({
 *   command: false, more: false, body: new Uint8Array([1, 0x61]),
 * });
 * console.assert(change?.subscribe === true && change.topic === "a");
 * ```
 */
export function subscriptionOf(
  frame: ZmtpFrame,
): { subscribe: boolean; topic: string } | null {
  if (frame.command) {
    const { name, data } = parseCommand(frame.body);
    if (name !== "SUBSCRIBE" && name !== "CANCEL") return null;
    return { subscribe: name === "SUBSCRIBE", topic: byteString(data) };
  }
  const kind = frame.body[0];
  if (frame.body.length === 0 || kind > 1) return null;
  return {
    subscribe: kind === 1,
    topic: byteString(frame.body.subarray(1)),
  };
}

/**
 * How many bytes the header of a frame of `size` bytes takes: 2 for a
 * short frame (under 256 bytes), 9 for a long one.
 *
 * @param size The frame body's length.
 * @returns 2 or 9.
 *
 * @example Usage
 * ```ts
 * import { frameHeaderLength } from "./zmtp.ts";
 * console.assert(frameHeaderLength(255) === 2 && frameHeaderLength(256) === 9);
 * ```
 */
export function frameHeaderLength(size: number): number {
  return size < 256 ? 2 : 9;
}

/**
 * Writes the header of a message frame (last frame of its message) of
 * `size` bytes into `target` at `at`.
 *
 * @param target Where to write.
 * @param at The offset.
 * @param size The frame body's length.
 * @param flags Extra flags (the command flag); none for a message frame.
 * @returns The offset just past the header, where the body goes.
 *
 * @example Usage
 * ```ts
 * import { frameHeaderLength, writeFrameHeader } from "./zmtp.ts";
 * const body = new TextEncoder().encode("hi");
 * const frame = new Uint8Array(frameHeaderLength(body.length) + body.length);
 * frame.set(body, writeFrameHeader(frame, 0, body.length));
 * console.assert(frame[0] === 0 && frame[1] === 2);
 * ```
 */
export function writeFrameHeader(
  target: Uint8Array,
  at: number,
  size: number,
  flags = 0,
): number {
  if (size < 256) {
    target[at] = flags;
    target[at + 1] = size;
    return at + 2;
  }
  target[at] = flags | FLAG_LONG;
  // Frames here stay far below 2^53; the high word is written as numbers.
  const view = new DataView(target.buffer, target.byteOffset + at + 1, 8);
  view.setUint32(0, Math.floor(size / 2 ** 32));
  view.setUint32(4, size >>> 0);
  return at + 9;
}

/** Options for {@linkcode ZmtpDecoder}. */
export interface ZmtpDecoderOptions {
  /**
   * Largest frame accepted; a larger one is a {@linkcode ZmtpError}.
   * Default 1 GiB.
   */
  maxFrameBytes?: number;
  /** The greeting was already read (for decoding bare frames). Default false. */
  greeted?: boolean;
}

/**
 * Splits the bytes a peer sends into its greeting and frames.
 *
 * The caller reads straight into {@linkcode ZmtpDecoder.space} and reports
 * how much arrived with {@linkcode ZmtpDecoder.commit} (or hands over bytes
 * with {@linkcode ZmtpDecoder.write}), then takes frames with
 * {@linkcode ZmtpDecoder.next} until it returns null. The buffer grows to
 * hold the largest frame in progress and shrinks once it has been taken.
 *
 * @example Usage
 * ```ts
 * import { greeting, readyCommand, ZmtpDecoder } from "./zmtp.ts";
 * const decoder = new ZmtpDecoder();
 * decoder.write(greeting());
 * decoder.write(readyCommand("PUSH"));
 * console.assert(decoder.next()?.command === true && decoder.peerVersion === "3.0");
 * ```
 */
export class ZmtpDecoder {
  readonly #maxFrameBytes: number;
  #buffer = new Uint8Array(DEFAULT_BUFFER_BYTES);
  #start = 0;
  #end = 0;
  #greeted: boolean;
  #peerVersion = "";

  /**
   * Makes a decoder for one connection.
   *
   * @param options Limits.
   */
  constructor(options: ZmtpDecoderOptions = {}) {
    this.#maxFrameBytes = options.maxFrameBytes ?? 2 ** 30;
    this.#greeted = options.greeted ?? false;
  }

  /** The peer's ZMTP version (`3.0`, `3.1`), once its greeting has arrived. */
  get peerVersion(): string {
    return this.#peerVersion;
  }

  /**
   * Free space to read into; at least `minimum` bytes.
   *
   * @param minimum The least space wanted.
   * @returns A view of the buffer's free space.
   */
  space(minimum = 16 * 1024): Uint8Array {
    if (this.#buffer.length - this.#end < minimum) {
      this.#makeRoom(this.#end - this.#start + minimum);
    }
    return this.#buffer.subarray(this.#end);
  }

  /**
   * Records that `count` bytes were read into {@linkcode ZmtpDecoder.space}.
   *
   * @param count How many bytes arrived.
   */
  commit(count: number): void {
    this.#end += count;
  }

  /**
   * Copies `bytes` in, for input that did not arrive through
   * {@linkcode ZmtpDecoder.space}.
   *
   * @param bytes The bytes.
   */
  write(bytes: Uint8Array): void {
    this.space(bytes.length).set(bytes);
    this.commit(bytes.length);
  }

  /**
   * The next complete frame, or null until more bytes arrive.
   *
   * @returns The frame.
   * @throws {ZmtpError} On a greeting m2fetch cannot speak to, or a frame
   * over the size limit.
   */
  next(): ZmtpFrame | null {
    if (!this.#greeted && !this.#readGreeting()) return null;
    const buffer = this.#buffer;
    const start = this.#start;
    const available = this.#end - start;
    if (available < 2) return this.#none();
    const flags = buffer[start];
    let size: number;
    let header: number;
    if ((flags & FLAG_LONG) === 0) {
      size = buffer[start + 1];
      header = 2;
    } else {
      if (available < 9) return this.#none();
      const view = new DataView(buffer.buffer, start + 1, 8);
      size = view.getUint32(0) * 2 ** 32 + view.getUint32(4);
      header = 9;
      if (size > this.#maxFrameBytes) {
        throw new ZmtpError(
          `The peer sent a frame of ${size} bytes, more than the ${this.#maxFrameBytes} m2fetch takes`,
        );
      }
    }
    if (available < header + size) {
      // Room for the whole frame now, so it is read in place.
      if (this.#buffer.length - start < header + size) {
        this.#makeRoom(header + size);
      }
      return null;
    }
    this.#start = start + header + size;
    return {
      command: (flags & FLAG_COMMAND) !== 0,
      more: (flags & FLAG_MORE) !== 0,
      body: buffer.slice(start + header, start + header + size),
    };
  }

  /** No complete frame yet: an empty buffer goes back to its usual size. */
  #none(): null {
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      if (this.#buffer.length > DEFAULT_BUFFER_BYTES) {
        this.#buffer = new Uint8Array(DEFAULT_BUFFER_BYTES);
      }
    }
    return null;
  }

  /** Moves what is unread to the front of a buffer of at least `size` bytes. */
  #makeRoom(size: number): void {
    if (size <= this.#buffer.length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
    } else {
      const larger = new Uint8Array(Math.max(size, this.#buffer.length * 2));
      larger.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = larger;
    }
    this.#end -= this.#start;
    this.#start = 0;
  }

  #readGreeting(): boolean {
    const buffer = this.#buffer;
    const start = this.#start;
    const available = this.#end - start;
    // The signature's first and last bytes tell a ZMTP peer at once.
    if (available >= 1 && buffer[start] !== 0xff) {
      throw new ZmtpError(
        "The peer is not a ZeroMQ socket (its first byte is not a ZMTP signature)",
      );
    }
    if (available >= 10 && (buffer[start + 9] & 1) !== 1) {
      throw new ZmtpError(
        "The peer is not a ZeroMQ socket (its greeting is not a ZMTP signature)",
      );
    }
    if (available >= 11 && buffer[start + 10] < 3) {
      throw new ZmtpError(
        `The peer speaks ZMTP ${
          buffer[start + 10] === 1 ? "2.0 (libzmq 3.x)" : "1.0 (libzmq 2.x)"
        }; m2fetch needs ZMTP 3 (libzmq 4 or later)`,
      );
    }
    if (available < GREETING_BYTES) return false;
    const mechanism = decodeByteString(buffer, start + 12, start + 32)
      .replace(/\0+$/, "");
    if (mechanism !== "NULL") {
      throw new ZmtpError(
        `The peer asks for the ${mechanism} security mechanism; m2fetch speaks only NULL`,
      );
    }
    this.#peerVersion = `${buffer[start + 10]}.${buffer[start + 11]}`;
    this.#start = start + GREETING_BYTES;
    this.#greeted = true;
    return true;
  }
}
