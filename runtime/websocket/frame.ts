/**
 * Pure, synchronous RFC 6455 frame codec for WebSockets served through
 * mongrel2.
 *
 * Mongrel2 reassembles fragmented client messages, unmasks them and hands
 * each one to the handler as a `METHOD: "WEBSOCKET"` message whose `FLAGS`
 * header is `"0x%X"` of (first frame byte 0 | 0x80). It does not check
 * UTF-8, RSV bits or sizes, does not answer pings and does not answer close
 * frames; {@linkcode classifyMessage} does those checks. Replies to the
 * client are raw, unmasked server frames built with
 * {@linkcode encodeFrame}, {@linkcode encodeFrameHeader} and
 * {@linkcode encodeCloseFrame}.
 *
 * Everything here is free of I/O and clocks, except
 * {@linkcode computeAcceptKey}, which needs `crypto.subtle`.
 *
 * @example Classify a message and answer a ping
 * ```ts
 * import { classifyMessage, encodeFrame, OPCODE } from "./frame.ts";
 *
 * const message = classifyMessage("0x89", new Uint8Array([1, 2]), 1 << 20);
 * if (message.type === "ping") {
 *   const pong = encodeFrame(OPCODE.pong, message.data);
 *   console.log(pong); // Uint8Array(4) [ 138, 2, 1, 2 ]
 * }
 * ```
 *
 * @module
 */

/**
 * The opcodes defined by RFC 6455 §5.2, by name.
 *
 * @example
 * ```ts
 * import { buildWebSocketMessage, OPCODE } from "@m2fetch/m2fetch/testing";
 *
 * const handshake = {
 *   url: "/ws",
 *   headers: {
 *     upgrade: "websocket",
 *     connection: "Upgrade",
 *     "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
 *     "sec-websocket-version": "13",
 *   },
 * };
 * const message = await buildWebSocketMessage(handshake, {
 *   opcode: OPCODE.binary,
 *   data: new Uint8Array([1, 2, 3]),
 * });
 * console.assert(new TextDecoder().decode(message).includes("0x82"));
 * ```
 */
export const OPCODE = {
  continuation: 0,
  text: 1,
  binary: 2,
  close: 8,
  ping: 9,
  pong: 10,
} as const;

/**
 * One of the opcode numbers defined by RFC 6455 (a value of
 * {@linkcode OPCODE}).
 *
 * @example
 * ```ts
 * import { OPCODE, type WebSocketOpcode } from "./frame.ts";
 *
 * const opcode: WebSocketOpcode = OPCODE.text;
 * ```
 */
export type WebSocketOpcode = typeof OPCODE[keyof typeof OPCODE];

/**
 * A protocol violation by the peer. `closeCode` is the RFC 6455 status
 * code the connection should be closed with: 1002 (protocol error), 1007
 * (invalid payload data, e.g. bad UTF-8) or 1009 (message too big).
 *
 * @example
 * ```ts
 * import {
 *   decodeText,
 *   encodeCloseFrame,
 *   WebSocketProtocolError,
 * } from "./frame.ts";
 *
 * try {
 *   decodeText(new Uint8Array([0xff]));
 * } catch (error) {
 *   if (error instanceof WebSocketProtocolError) {
 *     encodeCloseFrame(error.closeCode); // 1007
 *   }
 * }
 * ```
 */
export class WebSocketProtocolError extends Error {
  /** The close code to send to the peer. */
  readonly closeCode: number;

  /**
   * Creates the error.
   *
   * @param message What failed and why.
   * @param closeCode The close code to send to the peer.
   * @param options Standard error options, e.g. `cause`.
   */
  constructor(message: string, closeCode: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "WebSocketProtocolError";
    this.closeCode = closeCode;
  }
}

/**
 * The bits of a frame's first byte, as reported by {@linkcode parseFlags}.
 *
 * @example
 * ```ts
 * import { parseFlags, type WebSocketFlags } from "./frame.ts";
 *
 * const flags: WebSocketFlags = parseFlags("0x82");
 * ```
 */
export interface WebSocketFlags {
  /** The FIN bit. Mongrel2 always sets it. */
  fin: boolean;
  /** The three RSV bits, as a number from 0 to 7 (RSV1 is 4). */
  rsv: number;
  /** The opcode, from 0 to 15; not necessarily a defined one. */
  opcode: number;
}

/**
 * Options for {@linkcode encodeFrame}.
 *
 * @example
 * ```ts
 * import { encodeFrame, type EncodeFrameOptions, OPCODE } from "./frame.ts";
 *
 * const options: EncodeFrameOptions = { fin: false };
 * encodeFrame(OPCODE.text, new TextEncoder().encode("frag1-"), options);
 * ```
 */
export interface EncodeFrameOptions {
  /** Whether this is the final frame of its message. Defaults to `true`. */
  fin?: boolean;
}

/**
 * A complete message from the client, as returned by
 * {@linkcode classifyMessage}.
 *
 * @example
 * ```ts
 * import type { WebSocketMessage } from "@m2fetch/m2fetch/testing";
 *
 * // What runHandler's `run.frames` holds, one per message the handler sent.
 * const frames: WebSocketMessage[] = [
 *   { type: "text", data: "echo hi" },
 *   { type: "close", code: 1000, reason: "" },
 * ];
 * console.assert(frames[0].type === "text");
 * ```
 */
export type WebSocketMessage =
  | { type: "text"; data: string }
  | { type: "binary"; data: Uint8Array }
  | { type: "ping"; data: Uint8Array }
  | { type: "pong"; data: Uint8Array }
  | { type: "close"; code: number; reason: string };

/** The largest payload a control frame may carry (RFC 6455 §5.5). */
const MAX_CONTROL_PAYLOAD = 125;
/** The largest close reason, in UTF-8 bytes: 125 minus the 2-byte code. */
const MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2;
const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const FLAGS_PATTERN = /^0[xX][0-9a-fA-F]{1,2}$/;

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

/**
 * Parses mongrel2's `FLAGS` header of a `WEBSOCKET` message, e.g. `"0x81"`.
 * The hex digits and the `x` may be either case.
 *
 * @param flags The `FLAGS` header value.
 * @returns The FIN bit, the RSV bits and the opcode.
 * @throws {WebSocketProtocolError} With close code 1002 when `flags` is not
 * `0x` followed by one or two hex digits.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./frame.ts";
 *
 * parseFlags("0x81"); // { fin: true, rsv: 0, opcode: 1 }
 * parseFlags("0xC1"); // { fin: true, rsv: 4, opcode: 1 }
 * ```
 */
export function parseFlags(flags: string): WebSocketFlags {
  if (typeof flags !== "string" || !FLAGS_PATTERN.test(flags)) {
    throw new WebSocketProtocolError(
      `Cannot parse WebSocket FLAGS ${
        JSON.stringify(flags)
      }: expected "0x" and one or two hex digits, such as "0x81"`,
      1002,
    );
  }
  const byte = parseInt(flags.slice(2), 16);
  return {
    fin: (byte & 0x80) !== 0,
    rsv: (byte >>> 4) & 0x07,
    opcode: byte & 0x0f,
  };
}

function isControlOpcode(opcode: number): boolean {
  return opcode >= 8;
}

function isDefinedOpcode(opcode: number): boolean {
  return opcode === OPCODE.continuation || opcode === OPCODE.text ||
    opcode === OPCODE.binary || opcode === OPCODE.close ||
    opcode === OPCODE.ping || opcode === OPCODE.pong;
}

function checkOutgoingFrame(opcode: number, length: number, fin: boolean) {
  if (!isDefinedOpcode(opcode)) {
    throw new RangeError(
      `Cannot encode a WebSocket frame with opcode ${opcode}: it is not one of 0, 1, 2, 8, 9 or 10`,
    );
  }
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(
      `Cannot encode a WebSocket frame of length ${length}: the length must be a non-negative safe integer`,
    );
  }
  if (isControlOpcode(opcode)) {
    if (length > MAX_CONTROL_PAYLOAD) {
      throw new RangeError(
        `Cannot encode a control frame (opcode ${opcode}) with a ${length}-byte payload: control payloads are limited to ${MAX_CONTROL_PAYLOAD} bytes`,
      );
    }
    if (!fin) {
      throw new RangeError(
        `Cannot encode a control frame (opcode ${opcode}) without FIN: control frames must not be fragmented`,
      );
    }
  }
}

function headerSize(length: number): number {
  return length <= 125 ? 2 : length <= 0xffff ? 4 : 10;
}

/** Writes a server (unmasked) frame header at the start of `target`. */
function writeHeader(
  target: Uint8Array,
  opcode: number,
  length: number,
  fin: boolean,
): void {
  target[0] = (fin ? 0x80 : 0) | opcode;
  if (length <= 125) {
    target[1] = length;
  } else if (length <= 0xffff) {
    target[1] = 126;
    target[2] = length >>> 8;
    target[3] = length;
  } else {
    const high = Math.floor(length / 0x1_0000_0000);
    const low = length >>> 0;
    target[1] = 127;
    target[2] = high >>> 24;
    target[3] = high >>> 16;
    target[4] = high >>> 8;
    target[5] = high;
    target[6] = low >>> 24;
    target[7] = low >>> 16;
    target[8] = low >>> 8;
    target[9] = low;
  }
}

/**
 * Encodes the header of an unmasked server frame, using the shortest length
 * form: 7-bit up to 125 bytes, 16-bit up to 65535, 64-bit beyond. Send the
 * payload right after it; this avoids copying large payloads.
 *
 * @param opcode One of the {@linkcode OPCODE} values.
 * @param length The payload length in bytes.
 * @param fin Whether this is the final frame of its message. Defaults to
 * `true`.
 * @returns 2, 4 or 10 header bytes.
 * @throws {RangeError} When the opcode is not defined, the length is not a
 * non-negative safe integer, or a control frame is over 125 bytes or not
 * final.
 *
 * @example
 * ```ts
 * import { encodeFrameHeader, OPCODE } from "./frame.ts";
 *
 * encodeFrameHeader(OPCODE.binary, 256); // Uint8Array(4) [ 130, 126, 1, 0 ]
 * ```
 */
export function encodeFrameHeader(
  opcode: number,
  length: number,
  fin = true,
): Uint8Array<ArrayBuffer> {
  checkOutgoingFrame(opcode, length, fin);
  const header = new Uint8Array(headerSize(length));
  writeHeader(header, opcode, length, fin);
  return header;
}

/**
 * Encodes a whole unmasked server frame (header and payload) in a single
 * allocation.
 *
 * @param opcode One of the {@linkcode OPCODE} values.
 * @param payload The payload; it is copied, not kept.
 * @param options `fin: false` for a non-final fragment.
 * @returns The frame bytes.
 * @throws {RangeError} When the opcode is not defined, or a control frame is
 * over 125 bytes or not final.
 *
 * @example
 * ```ts
 * import { encodeFrame, OPCODE } from "./frame.ts";
 *
 * const frame = encodeFrame(OPCODE.text, new TextEncoder().encode("Hello"));
 * // 81 05 48 65 6c 6c 6f
 * ```
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array,
  options?: EncodeFrameOptions,
): Uint8Array<ArrayBuffer> {
  const fin = options?.fin ?? true;
  const length = payload.byteLength;
  checkOutgoingFrame(opcode, length, fin);
  const offset = headerSize(length);
  const frame = new Uint8Array(offset + length);
  writeHeader(frame, opcode, length, fin);
  frame.set(payload, offset);
  return frame;
}

function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/**
 * Encodes a close frame. Without a code the payload is empty (the peer sees
 * status 1005).
 *
 * @param code A close code that may be sent: 1000–1003, 1007–1014 or
 * 3000–4999. 1004, 1005, 1006 and 1015 are never sent.
 * @param reason A reason of at most 123 UTF-8 bytes; needs a code.
 * @returns The close frame bytes.
 * @throws {RangeError} When the code may not be sent or the reason is over
 * 123 bytes.
 * @throws {TypeError} When a reason is given without a code.
 *
 * @example
 * ```ts
 * import { encodeCloseFrame } from "./frame.ts";
 *
 * encodeCloseFrame(1000, "bye"); // 88 05 03 e8 62 79 65
 * encodeCloseFrame(); // 88 00
 * ```
 */
export function encodeCloseFrame(
  code?: number,
  reason = "",
): Uint8Array<ArrayBuffer> {
  if (code === undefined) {
    if (reason !== "") {
      throw new TypeError(
        "Cannot encode a close frame with a reason but no code: RFC 6455 puts the reason after the code",
      );
    }
    return encodeFrame(OPCODE.close, new Uint8Array(0));
  }
  if (!Number.isInteger(code) || !isValidCloseCode(code)) {
    throw new RangeError(
      `Cannot send close code ${code}: allowed codes are 1000-1003, 1007-1014 and 3000-4999`,
    );
  }
  const reasonBytes = utf8Encoder.encode(reason);
  if (reasonBytes.byteLength > MAX_CLOSE_REASON) {
    throw new RangeError(
      `Cannot send a close reason of ${reasonBytes.byteLength} bytes: it must be at most ${MAX_CLOSE_REASON} bytes of UTF-8`,
    );
  }
  const length = 2 + reasonBytes.byteLength;
  const frame = new Uint8Array(2 + length);
  frame[0] = 0x80 | OPCODE.close;
  frame[1] = length;
  frame[2] = code >>> 8;
  frame[3] = code;
  frame.set(reasonBytes, 4);
  return frame;
}

/**
 * Decodes a UTF-8 payload strictly. A byte order mark is kept as U+FEFF.
 *
 * @param payload The payload bytes.
 * @returns The text.
 * @throws {WebSocketProtocolError} With close code 1007 when the payload is
 * not valid UTF-8 (including surrogates, overlong forms and truncated
 * sequences).
 *
 * @example
 * ```ts
 * import { decodeText } from "./frame.ts";
 *
 * decodeText(new Uint8Array([0xce, 0xba])); // "κ"
 * ```
 */
export function decodeText(payload: Uint8Array): string {
  try {
    return utf8Decoder.decode(payload);
  } catch (cause) {
    throw new WebSocketProtocolError(
      `Cannot decode a ${payload.byteLength}-byte WebSocket text payload: it is not valid UTF-8`,
      1007,
      { cause },
    );
  }
}

/**
 * Parses the payload of a close frame from the client.
 *
 * @param payload The close frame payload.
 * @returns The code and reason; an empty payload gives code 1005 and an
 * empty reason.
 * @throws {WebSocketProtocolError} With close code 1002 when the payload is
 * 1 byte or over 125 bytes or the code is not a valid one (1000–1003,
 * 1007–1014, 3000–4999), and 1007 when the reason is not valid UTF-8.
 *
 * @example
 * ```ts
 * import { parseClosePayload } from "./frame.ts";
 *
 * parseClosePayload(new Uint8Array([0x03, 0xe8, 0x62, 0x79, 0x65]));
 * // { code: 1000, reason: "bye" }
 * ```
 */
export function parseClosePayload(
  payload: Uint8Array,
): { code: number; reason: string } {
  const length = payload.byteLength;
  if (length === 0) return { code: 1005, reason: "" };
  if (length === 1) {
    throw new WebSocketProtocolError(
      "Cannot parse a 1-byte close payload: a close code takes 2 bytes",
      1002,
    );
  }
  if (length > MAX_CONTROL_PAYLOAD) {
    throw new WebSocketProtocolError(
      `Cannot parse a ${length}-byte close payload: control payloads are limited to ${MAX_CONTROL_PAYLOAD} bytes`,
      1002,
    );
  }
  const code = (payload[0] << 8) | payload[1];
  if (!isValidCloseCode(code)) {
    throw new WebSocketProtocolError(
      `Received invalid close code ${code}: valid codes are 1000-1003, 1007-1014 and 3000-4999`,
      1002,
    );
  }
  let reason: string;
  try {
    reason = utf8Decoder.decode(payload.subarray(2));
  } catch (cause) {
    throw new WebSocketProtocolError(
      `Cannot decode the close reason: it is not valid UTF-8`,
      1007,
      { cause },
    );
  }
  return { code, reason };
}

/**
 * Validates and decodes one message delivered by mongrel2 (`METHOD:
 * "WEBSOCKET"`). Binary, ping and pong data is the given payload itself,
 * not a copy.
 *
 * @param flags The message's `FLAGS` header, e.g. `"0x81"`.
 * @param payload The message body (already unmasked by mongrel2).
 * @param maxMessageSize The largest payload accepted, in bytes (may be
 * `Infinity`).
 * @returns The message, by type.
 * @throws {WebSocketProtocolError} With close code 1002 for bad flags, RSV
 * bits, a continuation or undefined opcode, a non-final frame, a control
 * payload over 125 bytes or a bad close payload; 1009 when the payload is
 * larger than `maxMessageSize`; 1007 for invalid UTF-8 text or close reason.
 * @throws {RangeError} When `maxMessageSize` is negative or NaN.
 *
 * @example
 * ```ts
 * import { classifyMessage } from "./frame.ts";
 *
 * const payload = new TextEncoder().encode("frag1-frag2");
 * classifyMessage("0x81", payload, 65536);
 * // { type: "text", data: "frag1-frag2" }
 * ```
 */
export function classifyMessage(
  flags: string,
  payload: Uint8Array,
  maxMessageSize: number,
): WebSocketMessage {
  if (!(maxMessageSize >= 0)) {
    throw new RangeError(
      `Cannot use a maximum message size of ${maxMessageSize}: it must be a non-negative number`,
    );
  }
  const { fin, rsv, opcode } = parseFlags(flags);
  if (rsv !== 0) {
    throw new WebSocketProtocolError(
      `Received a WebSocket frame with RSV bits ${rsv} set: no extension was negotiated`,
      1002,
    );
  }
  if (!fin) {
    throw new WebSocketProtocolError(
      `Received WebSocket FLAGS ${flags} without FIN: mongrel2 should deliver whole messages`,
      1002,
    );
  }
  const length = payload.byteLength;
  if (isControlOpcode(opcode) && length > MAX_CONTROL_PAYLOAD) {
    throw new WebSocketProtocolError(
      `Received a control frame (opcode ${opcode}) with a ${length}-byte payload: control payloads are limited to ${MAX_CONTROL_PAYLOAD} bytes`,
      1002,
    );
  }
  if (length > maxMessageSize) {
    throw new WebSocketProtocolError(
      `Received a ${length}-byte WebSocket message: the limit is ${maxMessageSize} bytes`,
      1009,
    );
  }
  switch (opcode) {
    case OPCODE.text:
      return { type: "text", data: decodeText(payload) };
    case OPCODE.binary:
      return { type: "binary", data: payload };
    case OPCODE.ping:
      return { type: "ping", data: payload };
    case OPCODE.pong:
      return { type: "pong", data: payload };
    case OPCODE.close:
      return { type: "close", ...parseClosePayload(payload) };
    case OPCODE.continuation:
      throw new WebSocketProtocolError(
        "Received a continuation frame on its own: there is no message to continue",
        1002,
      );
    default:
      throw new WebSocketProtocolError(
        `Received a WebSocket frame with undefined opcode ${opcode}`,
        1002,
      );
  }
}

/**
 * Computes the `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`:
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). Mongrel2
 * computes it too and sends it as the body of the `WEBSOCKET_HANDSHAKE`
 * message.
 *
 * @param key The `Sec-WebSocket-Key` header value, as sent.
 * @returns The 28-character accept value.
 *
 * @example
 * ```ts
 * import { computeAcceptKey } from "./frame.ts";
 *
 * await computeAcceptKey("dGhlIHNhbXBsZSBub25jZQ==");
 * // "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
 * ```
 */
export async function computeAcceptKey(key: string): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest(
      "SHA-1",
      utf8Encoder.encode(key + ACCEPT_GUID),
    ),
  );
  return btoa(String.fromCharCode(...digest));
}
