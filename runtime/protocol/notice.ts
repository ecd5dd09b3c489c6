/**
 * mongrel2's `@*` notices: `METHOD: "JSON"` messages on path `@*` whose body
 * is `{"type":"disconnect"}` or `{"type":"credits"}`.
 *
 * @module
 */

import { decodeByteString, parseDecimal } from "./bytes.ts";
import { ProtocolError } from "./errors.ts";
import { parseJsonBytes } from "./json_bytes.ts";
import {
  type Envelope,
  firstHeader,
  type Mongrel2Message,
  readEnvelope,
} from "./message.ts";

/** A notice mongrel2 sends about a connection rather than a request. */
export type Mongrel2Notice =
  | { type: "disconnect" }
  | { type: "credits"; credits: number };

/**
 * Returns the notice a message carries, or `null` when it is not a notice
 * (client "JSON socket" messages also use `METHOD: "JSON"`, but never the
 * `@*` path).
 *
 * @param message A parsed message.
 * @returns The notice, or `null`.
 * @throws {ProtocolError} When an `@*` message has an unknown or malformed body.
 *
 * @example Usage
 * ```ts
 * import { parseMessage } from "./message.ts";
 * import { parseNotice } from "./notice.ts";
 * const bytes = new TextEncoder().encode(
 *   'abc 3 @* 17:{"METHOD":"JSON"},21:{"type":"disconnect"},',
 * );
 * console.assert(parseNotice(parseMessage(bytes))?.type === "disconnect");
 * ```
 */
export function parseNotice(message: Mongrel2Message): Mongrel2Notice | null {
  if (
    message.path !== "@*" || firstHeader(message.headers, "METHOD") !== "JSON"
  ) {
    return null;
  }
  const body = parseJsonBytes(message.body);
  const type = typeof body === "object" && body !== null && !Array.isArray(body)
    ? body.type
    : undefined;
  if (type === "disconnect") return { type };
  if (type === "credits") {
    const text = firstHeader(message.headers, "DOWNLOAD_CREDITS") ?? "";
    const credits = /^\d{1,12}$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(credits)) {
      throw new ProtocolError(
        `Cannot parse credits notice: DOWNLOAD_CREDITS "${text}" is not a byte count`,
        0,
      );
    }
    return { type, credits };
  }
  throw new ProtocolError(
    `Cannot parse notice: unknown type ${JSON.stringify(type)}`,
    0,
  );
}

/** A credits notice read by {@linkcode readCreditsNotice}. */
export interface CreditsNotice {
  /** The handler's `send_ident`. */
  sender: string;
  /** The connection id (decimal digits). */
  connectionId: string;
  /** Bytes mongrel2 has written to the client. */
  credits: number;
}

const ascii = (text: string) => new TextEncoder().encode(text);
const NOTICE_PATH = ascii("@* ");
const TNET_KEY = ascii("16:DOWNLOAD_CREDITS,");
const TNET_REST = ascii("6:METHOD,4:JSON,");
const JSON_START = ascii('{"METHOD":"JSON","DOWNLOAD_CREDITS":"');
const JSON_END = ascii('"}');
const CREDITS_BODY = ascii('18:{"type":"credits"},');
const COLON = 0x3a;
const COMMA = 0x2c;
const DICT_END = 0x7d;
/** At most 12 digits, as {@linkcode parseNotice} accepts. */
const MAX_CREDITS_DIGITS = 12;

/**
 * Reads a credits notice straight from its bytes when it has exactly the
 * shape mongrel2 writes (one per write to a client with flow control on,
 * so about one per response): in tnetstring mode
 * `S ID @* 41:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,}18:{"type":"credits"},`,
 * in JSON mode `S ID @* 41:{"METHOD":"JSON","DOWNLOAD_CREDITS":"78"},` and
 * the same body. Anything else, valid or not, gives `null` and is left to
 * {@linkcode parseMessage} and {@linkcode parseNotice}, which agree with
 * this function wherever it answers.
 *
 * @param bytes One message from mongrel2.
 * @returns The notice, or `null`.
 *
 * @example Usage
 * ```ts
 * import { readCreditsNotice } from "./notice.ts";
 * const notice = readCreditsNotice(new TextEncoder().encode(
 *   'abc 7 @* 41:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,}18:{"type":"credits"},',
 * ));
 * console.assert(notice?.connectionId === "7" && notice.credits === 78);
 * ```
 */
export function readCreditsNotice(bytes: Uint8Array): CreditsNotice | null {
  // parseMessage and parseNotice take about 0.8 µs and leave 1.2 KB of
  // garbage per notice; this takes about 0.25 µs and 0.4 KB.
  let envelope: Envelope;
  try {
    envelope = readEnvelope(bytes);
  } catch {
    return null;
  }
  const { senderEnd, idEnd, pathEnd } = envelope;
  if (
    pathEnd !== idEnd + NOTICE_PATH.length ||
    !matches(bytes, idEnd + 1, NOTICE_PATH)
  ) {
    return null;
  }
  // The headers' netstring: a length of at most 3 digits, then the bytes.
  const lengthStart = pathEnd + 1;
  const colon = bytes.indexOf(COLON, lengthStart);
  if (colon <= lengthStart || colon > lengthStart + 3) return null;
  const length = parseDecimal(bytes, lengthStart, colon);
  const start = colon + 1;
  const end = start + length;
  if (
    length < 0 || end + 1 + CREDITS_BODY.length !== bytes.length ||
    !matches(bytes, end + 1, CREDITS_BODY)
  ) {
    return null;
  }
  const digits = bytes[end] === DICT_END
    ? tnetCreditsDigits(bytes, start, end)
    : bytes[end] === COMMA
    ? jsonCreditsDigits(bytes, start, end)
    : null;
  if (digits === null) return null;
  const credits = parseDecimal(bytes, digits[0], digits[1]);
  if (credits < 0 || digits[1] - digits[0] > MAX_CREDITS_DIGITS) return null;
  const prefix = decodeByteString(bytes, 0, idEnd);
  return {
    sender: prefix.slice(0, senderEnd),
    connectionId: prefix.slice(senderEnd + 1),
    credits,
  };
}

/** `16:DOWNLOAD_CREDITS,N:DIGITS,6:METHOD,4:JSON,` filling `[start, end)`. */
function tnetCreditsDigits(
  bytes: Uint8Array,
  start: number,
  end: number,
): [number, number] | null {
  if (!matches(bytes, start, TNET_KEY)) return null;
  const lengthStart = start + TNET_KEY.length;
  const colon = bytes.indexOf(COLON, lengthStart);
  if (colon <= lengthStart || colon > lengthStart + 2) return null;
  const length = parseDecimal(bytes, lengthStart, colon);
  const digitsEnd = colon + 1 + length;
  if (
    length < 1 || bytes[digitsEnd] !== COMMA ||
    digitsEnd + 1 + TNET_REST.length !== end ||
    !matches(bytes, digitsEnd + 1, TNET_REST)
  ) {
    return null;
  }
  return [colon + 1, digitsEnd];
}

/** `{"METHOD":"JSON","DOWNLOAD_CREDITS":"DIGITS"}` filling `[start, end)`. */
function jsonCreditsDigits(
  bytes: Uint8Array,
  start: number,
  end: number,
): [number, number] | null {
  const digitsStart = start + JSON_START.length;
  const digitsEnd = end - JSON_END.length;
  if (
    digitsEnd <= digitsStart || !matches(bytes, start, JSON_START) ||
    !matches(bytes, digitsEnd, JSON_END)
  ) {
    return null;
  }
  return [digitsStart, digitsEnd];
}

function matches(bytes: Uint8Array, at: number, expected: Uint8Array): boolean {
  if (at < 0 || at + expected.length > bytes.length) return false;
  for (let i = 0; i < expected.length; i++) {
    if (bytes[at + i] !== expected[i]) return false;
  }
  return true;
}
