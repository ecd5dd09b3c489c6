/**
 * Test-only helpers for WebSocket frames: a client-side (masked) encoder, a
 * strict decoder for unmasked server frames, and a model of how mongrel2
 * turns client frames into `WEBSOCKET` handler messages.
 *
 * @module
 */

/** Options for {@linkcode encodeMaskedFrame}. */
export interface MaskedFrameOptions {
  /** The FIN bit; defaults to `true`. */
  fin?: boolean;
  /** The RSV bits (0–7); defaults to 0. */
  rsv?: number;
}

/**
 * Encodes a masked client frame, byte for byte as RFC 6455 §5.2 lays it out.
 *
 * @example
 * ```ts
 * import { encodeMaskedFrame } from "./frame_helpers.ts";
 *
 * // RFC 6455 §5.7: 81 85 37 fa 21 3d 7f 9f 4d 51 58
 * encodeMaskedFrame(1, new TextEncoder().encode("Hello"), [0x37, 0xfa, 0x21, 0x3d]);
 * ```
 */
export function encodeMaskedFrame(
  opcode: number,
  payload: Uint8Array,
  mask: ArrayLike<number>,
  options: MaskedFrameOptions = {},
): Uint8Array<ArrayBuffer> {
  if (mask.length !== 4) {
    throw new RangeError(`Cannot mask with ${mask.length} bytes: a mask is 4`);
  }
  const { fin = true, rsv = 0 } = options;
  const length = payload.byteLength;
  const lengthBytes = length <= 125 ? 0 : length <= 0xffff ? 2 : 8;
  const offset = 2 + lengthBytes + 4;
  const frame = new Uint8Array(offset + length);
  frame[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  const view = new DataView(frame.buffer);
  if (lengthBytes === 0) {
    frame[1] = 0x80 | length;
  } else if (lengthBytes === 2) {
    frame[1] = 0x80 | 126;
    view.setUint16(2, length);
  } else {
    frame[1] = 0x80 | 127;
    view.setBigUint64(2, BigInt(length));
  }
  frame.set(Array.from(mask), 2 + lengthBytes);
  for (let i = 0; i < length; i++) {
    frame[offset + i] = payload[i] ^ mask[i & 3];
  }
  return frame;
}

/** A frame decoded by {@linkcode decodeFrame}. */
export interface DecodedFrame {
  /** The FIN bit. */
  fin: boolean;
  /** The three RSV bits, 0 to 7. */
  rsv: number;
  /** The opcode, 0 to 15. */
  opcode: number;
  /** The mask key, or `undefined` for an unmasked frame. */
  mask: Uint8Array | undefined;
  /** Which length form was used: 7, 16 or 64 bits. */
  lengthForm: 7 | 16 | 64;
  /** The header size in bytes. */
  headerLength: number;
  /** The unmasked payload. */
  payload: Uint8Array;
  /** Total bytes consumed from the input. */
  frameLength: number;
}

/**
 * Decodes one frame at the start of `bytes` (masked or not), checking that
 * the shortest length form was used and the length's top bit is clear.
 *
 * @example
 * ```ts
 * import { decodeFrame } from "./frame_helpers.ts";
 *
 * decodeFrame(new Uint8Array([0x81, 0x02, 0x68, 0x69])).payload; // "hi" bytes
 * ```
 */
export function decodeFrame(bytes: Uint8Array): DecodedFrame {
  if (bytes.byteLength < 2) throw new Error("Frame is shorter than 2 bytes");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fin = (bytes[0] & 0x80) !== 0;
  const rsv = (bytes[0] >>> 4) & 7;
  const opcode = bytes[0] & 0x0f;
  const masked = (bytes[1] & 0x80) !== 0;
  const short = bytes[1] & 0x7f;
  let length: number;
  let offset: number;
  let lengthForm: 7 | 16 | 64;
  if (short <= 125) {
    length = short;
    offset = 2;
    lengthForm = 7;
  } else if (short === 126) {
    length = view.getUint16(2);
    offset = 4;
    lengthForm = 16;
    if (length <= 125) throw new Error(`Non-minimal 16-bit length ${length}`);
  } else {
    const big = view.getBigUint64(2);
    if (big >> 63n) throw new Error("64-bit length has its top bit set");
    length = Number(big);
    offset = 10;
    lengthForm = 64;
    if (length <= 0xffff) {
      throw new Error(`Non-minimal 64-bit length ${length}`);
    }
  }
  let mask: Uint8Array | undefined;
  if (masked) {
    mask = bytes.slice(offset, offset + 4);
    offset += 4;
  }
  if (bytes.byteLength < offset + length) {
    throw new Error(
      `Frame is truncated: need ${
        offset + length
      } bytes, have ${bytes.byteLength}`,
    );
  }
  let payload = bytes.subarray(offset, offset + length);
  if (mask) {
    const unmasked = new Uint8Array(length);
    for (let i = 0; i < length; i++) unmasked[i] = payload[i] ^ mask[i & 3];
    payload = unmasked;
  }
  return {
    fin,
    rsv,
    opcode,
    mask,
    lengthForm,
    headerLength: offset,
    payload,
    frameLength: offset + length,
  };
}

/**
 * Decodes one unmasked server frame that must fill `bytes` exactly.
 *
 * @example
 * ```ts
 * import { encodeFrame } from "../../runtime/websocket/frame.ts";
 * import { decodeServerFrame } from "./frame_helpers.ts";
 *
 * decodeServerFrame(encodeFrame(1, new Uint8Array(3)));
 * ```
 */
export function decodeServerFrame(bytes: Uint8Array): DecodedFrame {
  const frame = decodeFrame(bytes);
  if (frame.mask) throw new Error("Server frame is masked");
  if (frame.frameLength !== bytes.byteLength) {
    throw new Error(
      `Server frame has ${bytes.byteLength - frame.frameLength} trailing bytes`,
    );
  }
  return frame;
}

/** A handler message as mongrel2 would deliver it. */
export interface Mongrel2WebSocketMessage {
  /** The `FLAGS` header: `"0x%X"` of (first frame byte 0 | 0x80). */
  flags: string;
  /** The unmasked, reassembled payload. */
  body: Uint8Array;
}

/**
 * Models mongrel2 (`connection.c:743-854`): reads masked client frames,
 * forwards control frames at once and reassembles fragmented data messages.
 *
 * @example
 * ```ts
 * import { encodeMaskedFrame, mongrel2Deliver } from "./frame_helpers.ts";
 *
 * mongrel2Deliver([encodeMaskedFrame(1, new Uint8Array(0), [1, 2, 3, 4])]);
 * // [{ flags: "0x81", body: Uint8Array(0) }]
 * ```
 */
export function mongrel2Deliver(
  frames: Uint8Array[],
): Mongrel2WebSocketMessage[] {
  const out: Mongrel2WebSocketMessage[] = [];
  let first: number | undefined;
  let parts: Uint8Array[] = [];
  const flagsOf = (byte0: number) =>
    "0x" + (byte0 | 0x80).toString(16).toUpperCase();
  for (const bytes of frames) {
    const frame = decodeFrame(bytes);
    if (!frame.mask) throw new Error("Received unmasked WS packet");
    if (frame.opcode >= 8) {
      out.push({ flags: flagsOf(bytes[0]), body: frame.payload });
      continue;
    }
    if (first === undefined) first = bytes[0];
    parts.push(frame.payload);
    if (frame.fin) {
      const total = parts.reduce((sum, part) => sum + part.byteLength, 0);
      const body = new Uint8Array(total);
      let offset = 0;
      for (const part of parts) {
        body.set(part, offset);
        offset += part.byteLength;
      }
      out.push({ flags: flagsOf(first), body });
      first = undefined;
      parts = [];
    }
  }
  return out;
}

/**
 * Parses space-separated hex bytes, e.g. `"81 05 48"`.
 *
 * @example
 * ```ts
 * import { hex } from "./frame_helpers.ts";
 *
 * hex("81 05"); // Uint8Array(2) [ 129, 5 ]
 * ```
 */
export function hex(text: string): Uint8Array<ArrayBuffer> {
  const parts = text.trim().split(/\s+/).filter((part) => part !== "");
  return new Uint8Array(parts.map((part) => parseInt(part, 16)));
}

/**
 * A deterministic payload of `length` bytes (byte i is i mod 251).
 *
 * @example
 * ```ts
 * import { pattern } from "./frame_helpers.ts";
 *
 * pattern(3); // Uint8Array(3) [ 0, 1, 2 ]
 * ```
 */
export function pattern(length: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = i % 251;
  return bytes;
}
