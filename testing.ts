/**
 * Test Fetch handlers the way m2fetch serves them behind mongrel2, with
 * `deno test`, no sockets and no mongrel2: build the exact messages mongrel2
 * 1.12.2 would send, run the real m2fetch server on them over an in-memory
 * transport, and read back the HTTP response the client would get.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildRequestMessage, runHandler } from "@m2fetch/m2fetch/testing";
 *
 * const app = {
 *   fetch(request: Request): Response {
 *     const name = new URL(request.url).searchParams.get("name");
 *     return new Response(`hello ${name}\n`);
 *   },
 * };
 *
 * // In a test file, inside Deno.test("greets by name", async () => { ... }):
 * const run = await runHandler(app, await buildRequestMessage("/?name=ada"));
 * assert.equal(run.response.status, 200);
 * assert.equal(await run.response.text(), "hello ada\n");
 * ```
 *
 * @module
 */

import { MAX_CREDITS } from "./runtime/connection/connection.ts";
import { findHandler, loadHandler } from "./runtime/handler.ts";
import {
  parseResponses,
  toFetchResponse,
} from "./runtime/http/parse_response.ts";
import { headerList } from "./runtime/http/header_list.ts";
import type { ParsedResponse } from "./runtime/http/parse_response.ts";
import { createLogger, type Logger } from "./runtime/log.ts";
import { concatBytes, encodeByteString } from "./runtime/protocol/bytes.ts";
import { ProtocolError } from "./runtime/protocol/errors.ts";
import {
  firstHeader,
  type Mongrel2Message,
  parseMessage,
} from "./runtime/protocol/message.ts";
import { parseNotice } from "./runtime/protocol/notice.ts";
import { encodeTNetstring } from "./runtime/protocol/tnetstring.ts";
import {
  type FetchHandler,
  serveMongrel2,
  type ServeMongrel2Options,
} from "./runtime/server.ts";
import { MemoryTransport } from "./runtime/transport/memory.ts";
import {
  classifyMessage,
  computeAcceptKey,
  OPCODE,
  type WebSocketMessage,
} from "./runtime/websocket/frame.ts";

export { mongrel2Info, type Mongrel2RequestInfo } from "./runtime/info.ts";
export type {
  FetchHandler,
  ServeMongrel2Options,
  UploadOptions,
} from "./runtime/server.ts";
export type { UploadStore } from "./runtime/upload/policy.ts";
export type { AccessEntry, Logger } from "./runtime/log.ts";
export {
  type Mongrel2Headers,
  type Mongrel2Message,
  parseMessage,
} from "./runtime/protocol/message.ts";
export { type Mongrel2Notice, parseNotice } from "./runtime/protocol/notice.ts";
export { ProtocolError } from "./runtime/protocol/errors.ts";
export { OPCODE, type WebSocketMessage } from "./runtime/websocket/frame.ts";
export {
  MemoryTransport,
  type MemoryTransportOptions,
  type Transport,
  type WaitOptions,
} from "./runtime/transport/memory.ts";
export {
  type BodyFraming,
  HttpParseError,
  type ParsedResponse,
  parseResponse,
  type ParseResponseOptions,
  parseResponses,
  toFetchResponse,
} from "./runtime/http/parse_response.ts";

/**
 * The `send_ident` used when no `sender` is given: the one the captured
 * JSON fixtures were recorded with.
 */
export const DEFAULT_SENDER = "34f9ceee-cd52-4b7f-b197-88bf2f0ec378";

/** mongrel2's initial download window (`MAX_CREDITS`, 100 KiB). */
export const DEFAULT_DOWNLOAD_CREDITS: number = MAX_CREDITS;

/**
 * Client header fields. A record value that is an array, or a name that
 * repeats in a list of pairs, sends the field several times (mongrel2 then
 * passes a list). A `Headers` object joins repeats with `", "`, except
 * `set-cookie`.
 */
export type HeaderFields =
  | Headers
  | Iterable<readonly [string, string]>
  | Record<string, string | readonly string[]>;

/** A request described field by field, for what a `Request` cannot say. */
export interface RequestFields {
  /** Upper-case method (default `GET`); mongrel2 answers 400 to lower case. */
  method?: string;
  /**
   * Either a raw request target, `/path?query#fragment`, sent as written
   * (except that characters outside printable ASCII are percent-encoded as
   * UTF-8, as a client would), or an absolute URL, whose host becomes the
   * default `host` header and whose scheme becomes `URL_SCHEME`.
   */
  url: string | URL;
  /** Client header fields; `host` defaults to the URL's host or `localhost`. */
  headers?: HeaderFields;
  /**
   * The body. Like `fetch`, a body adds `content-length` (and, for strings,
   * forms and blobs, `content-type`) unless the headers set them.
   */
  body?: BodyInit | null;
  /** `HTTP/1.1` (default) or `HTTP/1.0`. */
  version?: "HTTP/1.0" | "HTTP/1.1";
}

/** How mongrel2 would deliver a request. */
export interface RequestMessageOptions {
  /** The handler's `protocol` setting (default `tnetstring`). */
  format?: "json" | "tnetstring";
  /** The handler's `send_ident` (default {@linkcode DEFAULT_SENDER}). */
  sender?: string;
  /** mongrel2's connection id (default 1). */
  connectionId?: number | string;
  /** The route pattern that matched (default `/`). */
  pattern?: string;
  /** The client's IP: `REMOTE_ADDR` and `x-forwarded-for` (default `127.0.0.1`). */
  remoteAddr?: string;
  /**
   * `DOWNLOAD_CREDITS`, which mongrel2 adds to the first request of a
   * connection when `download.flow_control` is on (default 102400), or
   * `false` for a later request on the same connection (which
   * {@linkcode runHandler} otherwise refuses) or a mongrel2 without flow
   * control.
   */
  downloadCredits?: number | false;
  /**
   * Build an async upload message instead (`upload.temp_store`): the body is
   * empty, `content-length` stays what the client declared, and
   * `x-mongrel2-upload-start` (plus `x-mongrel2-upload-done` at `done`)
   * name the temp file.
   */
  upload?: { path: string; stage: "start" | "done" };
}

/**
 * A client's WebSocket message for {@linkcode buildWebSocketMessage}, field
 * by field: for control frames, close codes and bits a string or bytes
 * cannot say.
 */
export interface WebSocketFrameFields {
  /** A name of {@linkcode OPCODE} or an opcode number (0–15). */
  opcode: keyof typeof OPCODE | number;
  /** The payload (text is UTF-8 encoded); for a close frame, see `code`. */
  data?: string | Uint8Array;
  /** A close frame's status code; its payload is then the code and `reason`. */
  code?: number;
  /** A close frame's reason, with `code`. */
  reason?: string;
  /** The RSV bits, 0–7 (RSV1 is 4); mongrel2 passes them on unchecked. */
  rsv?: number;
}

/** Options for {@linkcode buildNotice}. */
export interface NoticeOptions {
  /** The handler's `protocol` setting (default `tnetstring`). */
  format?: "json" | "tnetstring";
  /** The handler's `send_ident` (default {@linkcode DEFAULT_SENDER}). */
  sender?: string;
  /** The connection the notice is about (default 1). */
  connectionId?: number | string;
  /** For a credits notice: the bytes mongrel2 wrote to the client. */
  credits?: number;
}

/** A reply m2fetch sent to mongrel2, split into its parts. */
export interface ParsedReply {
  /** The sender it echoes. */
  sender: string;
  /** The target connection ids. */
  ids: string[];
  /** Whether it is an extended (`X`) reply such as a `ctl` command. */
  extended: boolean;
  /** The bytes for the client, or the extended command; empty means close. */
  body: Uint8Array;
}

/** What a reply hook may do while {@linkcode runHandler} runs. */
export interface RunControl {
  /** Delivers another message, as if mongrel2 had sent it (a notice, a request). */
  deliver(message: Uint8Array): void;
  /** Every reply so far, oldest first. */
  readonly replies: readonly Uint8Array[];
}

/** Options for {@linkcode runHandler}. */
export interface RunHandlerOptions {
  /**
   * Simulate mongrel2's credits notices: after each reply that writes
   * bytes to a connection whose first request carried `DOWNLOAD_CREDITS`,
   * deliver a credits notice for those bytes, as mongrel2 does once it has
   * written them to a client that reads (default true).
   */
  credits?: boolean;
  /**
   * Called for every reply, after the credits notice (if any) was
   * delivered. It can deliver more messages, for example a disconnect
   * notice in the middle of a streamed response. If it throws,
   * {@linkcode runHandler} rejects with that error.
   */
  onReply?: (reply: Uint8Array, control: RunControl) => void;
  /**
   * Runs beside the handler once the server has started, to deliver
   * messages when the test chooses: say, a disconnect notice once a long
   * poll is waiting, which no reply announces. The run ends after it has
   * settled and every request is answered; if it rejects,
   * {@linkcode runHandler} rejects with that error.
   */
  script?: (control: RunControl) => void | Promise<void>;
  /**
   * Give up when the responses are not complete after this many
   * milliseconds (default 10 000): the server is shut down and the promise
   * rejects.
   */
  timeout?: number;
  /**
   * Where the server logs. Default: lines collected in
   * {@linkcode HandlerRun.logs} (a handler error's stack is there).
   */
  logger?: Logger;
  /** Turns a handler error into a response (default: 500 Internal Server Error). */
  onError?: (error: unknown) => Response | Promise<Response>;
  /**
   * Further options for {@linkcode serveMongrel2}, for example `uploads`
   * to accept upload messages, or `flowControl`.
   */
  server?: RunServerOptions;
}

/** The {@linkcode ServeMongrel2Options} that {@linkcode runHandler} passes through. */
export type RunServerOptions = Omit<
  ServeMongrel2Options,
  "handler" | "transport" | "logger" | "onError"
>;

/** The outcome of {@linkcode runHandler}. */
export interface HandlerRun {
  /** Every reply message m2fetch sent, raw, in order. */
  readonly replies: Uint8Array[];
  /** All non-extended reply bodies concatenated: the bytes the client received. */
  readonly raw: Uint8Array;
  /** Whether m2fetch sent a 0-length reply, which makes mongrel2 close the connection. */
  readonly closed: boolean;
  /**
   * The first final response, parsed back from the reply bytes. If the body
   * was cut off (the client left), it holds what was sent.
   *
   * @throws {Error} When m2fetch sent no response head at all.
   */
  readonly response: Response;
  /** Every final (status 200–599) response, in request order. */
  readonly responses: Response[];
  /** The parsed form of every response, interim ones included. */
  readonly parsed: ParsedResponse[];
  /**
   * The WebSocket messages m2fetch sent after a 101 (on the first connection
   * that upgraded), decoded as a client would.
   */
  readonly frames: WebSocketMessage[];
  /**
   * Whether every request got a complete response. A WebSocket's is its 101
   * followed by whole frames.
   */
  readonly complete: boolean;
  /** Log lines written by the server (when no `logger` was given). */
  readonly logs: string[];
}

/** What {@linkcode runHandler} accepts as the handler. */
export type HandlerSource = FetchHandler | object | string | URL;

const SENDER = /^[A-Za-z0-9-]{1,128}$/;
const METHOD = /^[A-Z0-9]{1,20}$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** mongrel2's `MAX_DUPE_HEADERS`: later repeats of a field are dropped. */
const MAX_DUPLICATES = 5;
/** mongrel2's default `limits.header_count`. */
const MAX_HEADER_COUNT = 1280;

interface Target {
  method: string;
  version: string;
  path: string;
  query: string | null;
  fragment: string | null;
  scheme: "http" | "https";
  host: string | null;
  headers: [string, string][];
  body: Uint8Array | null;
  contentType: string | null;
}

/**
 * Builds the message mongrel2 1.12.2 sends a handler for a request, byte
 * for byte, key order included: client header names lower-cased, repeats
 * as a list (at most 5), `x-forwarded-for` replaced by the client address,
 * `DOWNLOAD_CREDITS`, and mongrel2's upper-case keys (`PATH`, `METHOD`,
 * `VERSION`, `URI`, `QUERY` when there is a query, `FRAGMENT` when the
 * fields give one, never for a `Request`, `PATTERN`, `URL_SCHEME`,
 * `REMOTE_ADDR`). Header values are byte strings (one character per byte).
 * A WebSocket upgrade becomes mongrel2's `WEBSOCKET_HANDSHAKE` message,
 * whose body is the `Sec-WebSocket-Accept` value; the client's messages on
 * it come from {@linkcode buildWebSocketMessage}.
 *
 * It is async because reading a `Request` body is. The `Request` given is
 * not consumed (its clone is read).
 *
 * @param input A `Request`, request fields, or a URL or raw path for a GET.
 * @param options Format, sender, connection id and the rest of mongrel2's view.
 * @returns The message bytes.
 * @throws {TypeError} When mongrel2 would not forward such a request (bad
 *   method, header or target), or would spool its body to a file (chunked:
 *   build it with the `upload` option).
 * @throws {RangeError} On an option out of range.
 *
 * @example Usage
 * ```ts
 * import { buildRequestMessage } from "@m2fetch/m2fetch/testing";
 * const message = await buildRequestMessage("/hello?x=1", { format: "json" });
 * const text = new TextDecoder().decode(message);
 * console.assert(text.startsWith("34f9ceee-cd52-4b7f-b197-88bf2f0ec378 1 /hello "));
 * console.assert(text.includes('"QUERY":"x=1"'));
 * ```
 */
export async function buildRequestMessage(
  input: Request | RequestFields | string | URL,
  options: RequestMessageOptions = {},
): Promise<Uint8Array> {
  const { target, table } = await requestTable(input, options);
  let method = target.method;
  let body = target.body ?? new Uint8Array(0);
  if (options.upload !== undefined) {
    const { stage } = options.upload;
    const path = checkValue("the upload path", options.upload.path);
    if (stage !== "start" && stage !== "done") {
      throw new RangeError(
        `Cannot build upload message: stage "${stage}" is neither "start" nor "done"`,
      );
    }
    table.set("x-mongrel2-upload-start", path);
    if (stage === "done") table.set("x-mongrel2-upload-done", path);
    body = new Uint8Array(0);
  } else if (isWebSocketHandshake(table)) {
    // mongrel2 answers nothing itself: it hands the handler the accept
    // value it computed, and the handler writes the 101.
    method = "WEBSOCKET_HANDSHAKE";
    body = encodeByteString(
      await computeAcceptKey(table.get("sec-websocket-key")!),
    );
  } else if (
    /\bchunked\b/i.test(table.get("transfer-encoding") ?? "")
  ) {
    throw new TypeError(
      "Cannot build request message: mongrel2 spools every chunked body to a temp file, so build it with the upload option (upload-start and upload-done messages)",
    );
  }
  return encodeRequestMessage(target, table, options, method, body);
}

/**
 * Builds the message mongrel2 1.12.2 sends a handler for one message of a
 * WebSocket the handler accepted, byte for byte: mongrel2 repeats every
 * header of the handshake request, with `METHOD: "WEBSOCKET"`, adds `FLAGS`
 * (`"0x%X"` of the first frame byte, FIN set) and delivers the payload
 * unmasked, a fragmented message reassembled into one.
 *
 * @param handshake The handshake request, as given to
 *   {@linkcode buildRequestMessage} (it must carry the WebSocket upgrade
 *   headers mongrel2 looks for).
 * @param frame What the client sent: a string (a text message), bytes (a
 *   binary message), or {@linkcode WebSocketFrameFields}.
 * @param options Format, sender, connection id and the rest of mongrel2's
 *   view; the same as for the handshake.
 * @returns The message bytes.
 * @throws {TypeError} When the handshake is not a WebSocket upgrade mongrel2
 *   would accept, or for what {@linkcode buildRequestMessage} rejects.
 * @throws {RangeError} On an opcode or close code out of range.
 *
 * @example Usage
 * ```ts
 * import { buildWebSocketMessage } from "@m2fetch/m2fetch/testing";
 * const handshake = {
 *   url: "/ws",
 *   headers: {
 *     upgrade: "websocket",
 *     connection: "Upgrade",
 *     "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
 *     "sec-websocket-version": "13",
 *   },
 * };
 * const message = await buildWebSocketMessage(handshake, "hello", { format: "json" });
 * const text = new TextDecoder().decode(message);
 * console.assert(text.includes('"METHOD":"WEBSOCKET"') && text.includes('"FLAGS":"0x81"'));
 * console.assert(text.endsWith(",5:hello,"));
 * ```
 */
export async function buildWebSocketMessage(
  handshake: Request | RequestFields | string | URL,
  frame: string | Uint8Array | WebSocketFrameFields,
  options: Omit<RequestMessageOptions, "upload"> = {},
): Promise<Uint8Array> {
  const { target, table } = await requestTable(handshake, options);
  if (!isWebSocketHandshake(table)) {
    throw new TypeError(
      "Cannot build WebSocket message: the handshake lacks the headers mongrel2 needs to upgrade (upgrade: websocket, connection: upgrade, sec-websocket-key, sec-websocket-version, host)",
    );
  }
  const { flags, payload } = frameParts(frame);
  table.set("FLAGS", `0x${(flags | 0x80).toString(16).toUpperCase()}`);
  return encodeRequestMessage(target, table, options, "WEBSOCKET", payload);
}

/** The target of a request and mongrel2's header table for it. */
async function requestTable(
  input: Request | RequestFields | string | URL,
  options: RequestMessageOptions,
): Promise<{ target: Target; table: HeaderTable }> {
  const target = input instanceof Request
    ? await fromRequest(input)
    : await fromFields(
      typeof input === "string" || input instanceof URL
        ? { url: input }
        : input,
    );
  const remoteAddr = checkValue(
    "option remoteAddr",
    options.remoteAddr ?? "127.0.0.1",
  );
  const credits = options.downloadCredits ?? DEFAULT_DOWNLOAD_CREDITS;
  if (credits !== false && (!Number.isSafeInteger(credits) || credits < 0)) {
    throw new RangeError(
      `Cannot build request message: downloadCredits ${credits} is not a byte count`,
    );
  }

  // The header hash, in insertion order, as mongrel2 fills it.
  const table = new HeaderTable();
  const fields = [...target.headers];
  if (!fields.some(([name]) => name.toLowerCase() === "host")) {
    fields.unshift(["host", target.host ?? "localhost"]);
  }
  const has = (name: string) =>
    fields.some(([key]) => key.toLowerCase() === name);
  if (
    target.body !== null && !has("content-length") &&
    !has("transfer-encoding")
  ) {
    fields.push(["content-length", String(target.body.length)]);
  }
  if (target.contentType !== null && !has("content-type")) {
    fields.push(["content-type", target.contentType]);
  }
  for (const [name, value] of fields) {
    table.add(
      checkName(name).toLowerCase(),
      // mongrel2's parser skips the blanks before a value, not after it.
      checkValue(`the value of header "${name}"`, value.replace(/^[ \t]+/, "")),
    );
  }
  table.set("x-forwarded-for", remoteAddr);
  if (credits !== false) table.set("DOWNLOAD_CREDITS", String(credits));
  return { target, table };
}

/** mongrel2's `Request_is_websocket`. */
function isWebSocketHandshake(table: HeaderTable): boolean {
  const upgrade = table.get("upgrade");
  const connection = table.get("connection");
  return table.get("sec-websocket-key") !== undefined &&
    table.get("sec-websocket-version") !== undefined &&
    table.get("host") !== undefined &&
    upgrade?.toLowerCase() === "websocket" &&
    connection?.toLowerCase().includes("upgrade") === true;
}

/** The message bytes for a request target and its filled header table. */
function encodeRequestMessage(
  target: Target,
  table: HeaderTable,
  options: RequestMessageOptions,
  method: string,
  body: Uint8Array,
): Uint8Array {
  const sender = checkSender(options.sender ?? DEFAULT_SENDER);
  const connectionId = checkConnectionId(options.connectionId ?? 1);
  const remoteAddr = table.get("x-forwarded-for")!;
  const pattern = checkValue("option pattern", options.pattern ?? "/");
  const uri = target.query === null
    ? target.path
    : `${target.path}?${target.query}`;
  const tail: [string, string | null][] = [
    ["METHOD", method],
    ["VERSION", target.version],
    ["URI", uri],
    ["QUERY", target.query],
    ["FRAGMENT", target.fragment],
    ["PATTERN", pattern],
    ["URL_SCHEME", target.scheme],
    ["REMOTE_ADDR", remoteAddr],
  ];
  const scanned = table.scan();
  let headers: Uint8Array;
  if ((options.format ?? "tnetstring") === "json") {
    const entries: [string, string | string[]][] = [
      ["PATH", target.path],
      ...scanned,
      ...tail.filter((entry): entry is [string, string] => entry[1] !== null),
    ];
    const json = "{" + entries.map(([key, value]) =>
      `"${key}":` + (Array.isArray(value)
        ? `[${value.map(jsonString).join(",")}]`
        : jsonString(value))
    ).join(",") + "}";
    headers = concatBytes([
      encodeByteString(`${json.length}:`),
      encodeByteString(json),
      encodeByteString(","),
    ]);
  } else {
    // mongrel2 renders tnetstrings back to front: the hash in scan order,
    // then PATH … REMOTE_ADDR, all reversed.
    const order: [string, string | string[] | null][] = [
      ...scanned,
      ["PATH", target.path],
      ["VERSION", target.version],
      ["URI", uri],
      ["QUERY", target.query],
      ["FRAGMENT", target.fragment],
      ["PATTERN", pattern],
      ["URL_SCHEME", target.scheme],
      ["METHOD", method],
      ["REMOTE_ADDR", remoteAddr],
    ];
    const parts: Uint8Array[] = [];
    for (const [key, value] of order.reverse()) {
      if (value === null) continue;
      parts.push(encodeTNetstring(key), encodeTNetstring(value));
    }
    const dict = concatBytes(parts);
    headers = concatBytes([
      encodeByteString(`${dict.length}:`),
      dict,
      encodeByteString("}"),
    ]);
  }
  return concatBytes([
    encodeByteString(`${sender} ${connectionId} ${target.path} `),
    headers,
    encodeByteString(`${body.length}:`),
    body,
    encodeByteString(","),
  ]);
}

/** The first frame byte (without FIN) and the payload of a client message. */
function frameParts(
  frame: string | Uint8Array | WebSocketFrameFields,
): { flags: number; payload: Uint8Array } {
  if (typeof frame === "string") {
    return { flags: OPCODE.text, payload: new TextEncoder().encode(frame) };
  }
  if (frame instanceof Uint8Array) {
    return { flags: OPCODE.binary, payload: frame };
  }
  const opcode = typeof frame.opcode === "number"
    ? frame.opcode
    : OPCODE[frame.opcode];
  if (!Number.isInteger(opcode) || opcode < 0 || opcode > 15) {
    throw new RangeError(
      `Cannot build WebSocket message: opcode ${
        JSON.stringify(frame.opcode)
      } is not a name of OPCODE or a number from 0 to 15`,
    );
  }
  const rsv = frame.rsv ?? 0;
  if (!Number.isInteger(rsv) || rsv < 0 || rsv > 7) {
    throw new RangeError(
      `Cannot build WebSocket message: rsv ${rsv} is not a number from 0 to 7`,
    );
  }
  let payload: Uint8Array;
  if (frame.code !== undefined) {
    if (opcode !== OPCODE.close) {
      throw new RangeError(
        "Cannot build WebSocket message: only a close frame carries a code",
      );
    }
    const reason = new TextEncoder().encode(frame.reason ?? "");
    payload = new Uint8Array(2 + reason.length);
    new DataView(payload.buffer).setUint16(0, frame.code);
    payload.set(reason, 2);
  } else if (typeof frame.data === "string") {
    payload = new TextEncoder().encode(frame.data);
  } else {
    payload = frame.data ?? new Uint8Array(0);
  }
  return { flags: (rsv << 4) | opcode, payload };
}

/**
 * Builds a mongrel2 notice, byte for byte as mongrel2 1.12.2 sends it: a
 * `disconnect` (the client left) or `credits` (mongrel2 wrote that many
 * bytes to the client; only with `download.flow_control`).
 *
 * @param type `disconnect` or `credits`.
 * @param options Format, sender, connection id, and the credits.
 * @returns The message bytes.
 * @throws {RangeError} For a credits notice without a byte count, or an unknown type.
 *
 * @example Usage
 * ```ts
 * import { buildNotice } from "@m2fetch/m2fetch/testing";
 * const notice = buildNotice("disconnect", { format: "json", sender: "abc", connectionId: 7 });
 * console.assert(
 *   new TextDecoder().decode(notice) ===
 *     'abc 7 @* 17:{"METHOD":"JSON"},21:{"type":"disconnect"},',
 * );
 * ```
 */
export function buildNotice(
  type: "disconnect" | "credits",
  options: NoticeOptions = {},
): Uint8Array {
  const sender = checkSender(options.sender ?? DEFAULT_SENDER);
  const id = checkConnectionId(options.connectionId ?? 1);
  const json = (options.format ?? "tnetstring") === "json";
  let headers: string;
  if (type === "disconnect") {
    headers = json ? '{"METHOD":"JSON"}' : "6:METHOD,4:JSON,";
  } else if (type === "credits") {
    const credits = options.credits;
    if (
      credits === undefined || !Number.isSafeInteger(credits) || credits < 0
    ) {
      throw new RangeError(
        `Cannot build credits notice: credits ${credits} is not a byte count`,
      );
    }
    const value = String(credits);
    headers = json
      ? `{"METHOD":"JSON","DOWNLOAD_CREDITS":"${value}"}`
      : `16:DOWNLOAD_CREDITS,${value.length}:${value},6:METHOD,4:JSON,`;
  } else {
    throw new RangeError(
      `Cannot build notice: type "${type}" is neither "disconnect" nor "credits"`,
    );
  }
  const body = `{"type":"${type}"}`;
  return encodeByteString(
    `${sender} ${id} @* ${headers.length}:${headers}${json ? "," : "}"}` +
      `${body.length}:${body},`,
  );
}

/**
 * Splits a reply m2fetch sent (`UUID SP LEN:IDS, SP BODY`).
 *
 * @param reply One reply message.
 * @returns Sender, target ids, whether it is extended, and the body.
 * @throws {ProtocolError} When the reply does not follow mongrel2's grammar.
 *
 * @example Usage
 * ```ts
 * import { parseReply } from "@m2fetch/m2fetch/testing";
 * const reply = parseReply(new TextEncoder().encode("abc 3:6 7, hi"));
 * console.assert(reply.ids.join() === "6,7" && reply.body.length === 2);
 * ```
 */
export function parseReply(reply: Uint8Array): ParsedReply {
  const text = latin1Prefix(reply, 160);
  const match = /^([A-Za-z0-9-]+) (\d{1,4}):/.exec(text);
  if (match === null) {
    throw new ProtocolError(
      "Cannot parse reply: it does not start with a sender and an id list length",
      0,
    );
  }
  const listStart = match[0].length;
  const listEnd = listStart + Number(match[2]);
  if (
    reply.length < listEnd + 2 || reply[listEnd] !== 0x2c ||
    reply[listEnd + 1] !== 0x20
  ) {
    throw new ProtocolError(
      "Cannot parse reply: the id list is not followed by ', '",
      listEnd,
    );
  }
  let list = latin1Prefix(reply.subarray(listStart, listEnd), listEnd);
  const extended = list.startsWith("X ");
  if (extended) list = list.slice(2);
  const ids = list.trimEnd().split(" ");
  if (!ids.every((id) => /^\d+$/.test(id))) {
    throw new ProtocolError(
      `Cannot parse reply: id list "${list}" is not decimal ids separated by spaces`,
      listStart,
    );
  }
  return {
    sender: match[1],
    ids,
    extended,
    body: reply.subarray(listEnd + 2),
  };
}

/**
 * Runs the real m2fetch server on `messages` with `handler`, over an
 * in-memory transport: delivers the messages, simulates mongrel2's credits
 * notices so streamed responses complete and a WebSocket client's answer to
 * the handler's close frame, waits until no request is in
 * flight, shuts the server down, and returns the replies together with the
 * HTTP responses parsed back from them.
 *
 * @param handler A Fetch handler; a module namespace or object with
 *   `default` / `fetch` (what `deno serve` accepts); or a module path
 *   (relative to the working directory) or URL to load.
 * @param messages One message or several, delivered in order (see
 *   {@linkcode buildRequestMessage} and {@linkcode buildNotice}).
 * @param options Credits simulation, a reply hook, timeout and logging.
 * @returns The replies and the responses.
 * @throws {TypeError} When a message is not bytes (an unawaited builder), or
 *   a later request on a connection carries `DOWNLOAD_CREDITS`, which only a
 *   connection's first request has (build it with `downloadCredits: false`).
 * @throws {Error} When the handler cannot be loaded, the responses are not
 *   complete in time, or the reply hook throws.
 *
 * @example Usage
 * ```ts
 * import { buildRequestMessage, runHandler } from "@m2fetch/m2fetch/testing";
 * const run = await runHandler(
 *   () => new Response("hi"),
 *   await buildRequestMessage("/"),
 * );
 * console.assert(run.response.status === 200 && (await run.response.text()) === "hi");
 * ```
 */
export async function runHandler(
  handler: HandlerSource,
  messages: Uint8Array | readonly Uint8Array[],
  options: RunHandlerOptions = {},
): Promise<HandlerRun> {
  const fetch = await resolveHandler(handler);
  const logs: string[] = [];
  const base = options.logger ??
    createLogger({ write: (line) => logs.push(line) });
  let exchangeEnded: (() => void) | null = null;
  const logger: Logger = {
    error: (message, error) => base.error(message, error),
    warn: (message) => base.warn(message),
    info: (message) => base.info(message),
    access: (entry) => {
      base.access(entry);
      exchangeEnded?.();
    },
  };

  const connections = new Map<string, ConnectionRecord>();
  let hookError: { error: unknown } | null = null;
  let failed: ((error: unknown) => void) | null = null;
  const transport: MemoryTransport = new MemoryTransport({
    onReply: (reply) => onReply(reply),
  });
  const deliver = (message: Uint8Array) => {
    const given: unknown = message;
    if (!(given instanceof Uint8Array)) {
      throw new TypeError(
        `Cannot deliver ${
          given instanceof Promise ? "a Promise" : typeof given
        }: a message is the Uint8Array that buildRequestMessage, buildWebSocketMessage or buildNotice built (await the async builders)`,
      );
    }
    track(connections, message);
    transport.deliver(message);
  };
  const control: RunControl = {
    deliver,
    get replies() {
      return transport.replies;
    },
  };
  const onReply = (reply: Uint8Array) => {
    playMongrel2AndClient(reply);
    if (options.onReply !== undefined && hookError === null) {
      try {
        options.onReply(reply, control);
      } catch (error) {
        hookError = { error };
        failed?.(error);
      }
    }
  };
  // What mongrel2 and the client would answer to a reply with a body:
  // credits for what it took, and a close frame echoing the handler's.
  const playMongrel2AndClient = (reply: Uint8Array) => {
    let parsed: ParsedReply;
    try {
      parsed = parseReply(reply);
    } catch {
      return;
    }
    if (parsed.extended || parsed.body.length === 0) return;
    for (const id of parsed.ids) {
      const record = connections.get(`${parsed.sender} ${id}`);
      if (record === undefined) continue;
      if (options.credits ?? true) grantCredits(parsed, id, record);
      echoClose(parsed, record);
    }
  };
  const grantCredits = (
    parsed: ParsedReply,
    id: string,
    record: ConnectionRecord,
  ) => {
    if (!record.flowControl || !transport.receiving) return;
    transport.deliver(
      buildNotice("credits", {
        format: record.format,
        sender: parsed.sender,
        connectionId: id,
        credits: parsed.body.length,
      }),
    );
  };
  // A client answers the server's close frame with its own (RFC 6455
  // 5.5.1), which ends the socket cleanly; without it the socket waits 5 s
  // and closes with 1006.
  const echoClose = (parsed: ParsedReply, record: ConnectionRecord) => {
    if (record.handshake === undefined || record.closing) return;
    // What the server sent and was not decoded yet: the 101's head, then
    // frames.
    let bytes = concatBytes([record.unread ?? new Uint8Array(0), parsed.body]);
    if (!record.upgraded) {
      const upgrade = parseResponses(bytes, ["WEBSOCKET_HANDSHAKE"], false)[0];
      if (upgrade?.status !== 101 || !upgrade.complete) {
        record.unread = bytes;
        return;
      }
      record.upgraded = true;
      bytes = bytes.subarray(upgrade.end);
    }
    const sent = decodeServerFrames(bytes);
    record.unread = bytes.slice(sent.end);
    const close = sent.messages.find((message) => message.type === "close");
    if (close === undefined || !transport.receiving) return;
    record.closing = true;
    record.unread = undefined;
    transport.deliver(closeEcho(record.handshake, close));
  };

  const given: unknown = messages;
  for (
    const message of given instanceof Uint8Array ||
        !(Symbol.iterator in Object(given))
      ? [messages as Uint8Array]
      : messages as readonly Uint8Array[]
  ) {
    deliver(message);
  }
  const server = serveMongrel2({
    ...options.server,
    handler: fetch,
    transport,
    logger,
    onError: options.onError,
  });

  const timeoutMs = options.timeout ?? 10_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stop = new Promise<never>((_, reject) => {
    failed = reject;
    timer = setTimeout(() => {
      const upgraded = [...connections.values()].some((record) =>
        record.methods.includes("WEBSOCKET_HANDSHAKE")
      );
      reject(
        new Error(
          `Cannot finish the run: ${server.inFlight} request(s) still in flight after ${timeoutMs} ms (${transport.replies.length} replies so far)` +
            (upgraded
              ? "; a WebSocket stays in flight until it closes: deliver a close message built with buildWebSocketMessage"
              : ""),
        ),
      );
    }, timeoutMs);
  });
  try {
    await Promise.race([
      (async () => {
        await options.script?.(control);
        while (true) {
          await transport.consumed();
          if (server.inFlight === 0 || hookError !== null) return;
          await new Promise<void>((resolve) => exchangeEnded = resolve);
          exchangeEnded = null;
        }
      })(),
      stop,
    ]);
    if (hookError !== null) throw (hookError as { error: unknown }).error;
  } catch (error) {
    await server.shutdown(0);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  // Every response is complete and every reply sent: nothing is left for
  // the drain to wait for (with `credits: false` the credits it waits for
  // would never come).
  await server.shutdown(0);
  return collect(transport.replies, connections, logs);
}

interface ConnectionRecord {
  format: "json" | "tnetstring";
  flowControl: boolean;
  methods: string[];
  order: number;
  /** A WebSocket's handshake message, to build the client's close echo. */
  handshake?: Mongrel2Message;
  /** Whether a close frame from either side has been seen, or the client left. */
  closing?: boolean;
  /** Whether the server's 101 has been sent whole. */
  upgraded?: boolean;
  /** What the server sent that is not decoded yet (a part of a frame). */
  unread?: Uint8Array;
}

/** Notes the format, flow control and methods of each connection's requests. */
function track(
  connections: Map<string, ConnectionRecord>,
  message: Uint8Array,
): void {
  let parsed;
  try {
    parsed = parseMessage(message);
  } catch {
    return;
  }
  const key = `${parsed.sender} ${parsed.connectionId}`;
  if (parsed.path === "@*") {
    const record = connections.get(key);
    // The client left: no close echo is to come.
    if (record !== undefined && isDisconnect(parsed)) record.closing = true;
    return;
  }
  const method = parsed.headers.METHOD;
  if (method === "WEBSOCKET") {
    const flags = Number(firstHeader(parsed.headers, "FLAGS"));
    const record = connections.get(key);
    if (record !== undefined && (flags & 0x0f) === OPCODE.close) {
      record.closing = true;
    }
    return;
  }
  if (
    typeof method !== "string" || method === "JSON" || method === "XML"
  ) {
    return;
  }
  // An upload-done continues the request its upload-start began.
  if (parsed.headers["x-mongrel2-upload-done"] !== undefined) return;
  let record = connections.get(key);
  if (record === undefined) {
    record = {
      format: parsed.headerFormat,
      flowControl: false,
      methods: [],
      order: connections.size,
    };
    connections.set(key, record);
  }
  if (parsed.headers.DOWNLOAD_CREDITS !== undefined) {
    if (record.methods.length > 0) {
      // m2fetch takes it for a new client reusing the id (a mongrel2
      // restart), and drops the requests it holds for the old one.
      throw new TypeError(
        `Cannot deliver ${method} ${parsed.path}: connection ${parsed.connectionId} already had a request, and this one carries DOWNLOAD_CREDITS, which mongrel2 sends only with a connection's first request; build later requests on a connection with { downloadCredits: false }, or give each request its own connectionId`,
      );
    }
    record.flowControl = true;
  }
  record.methods.push(method);
  if (method === "WEBSOCKET_HANDSHAKE") record.handshake = parsed;
}

function isDisconnect(message: Mongrel2Message): boolean {
  try {
    return parseNotice(message)?.type === "disconnect";
  } catch {
    return false;
  }
}

function collect(
  replies: Uint8Array[],
  connections: Map<string, ConnectionRecord>,
  logs: string[],
): HandlerRun {
  const raw: Uint8Array[] = [];
  const perConnection = new Map<
    string,
    { bytes: Uint8Array[]; closed: boolean }
  >();
  let closed = false;
  for (const reply of replies) {
    let parsed: ParsedReply;
    try {
      parsed = parseReply(reply);
    } catch {
      continue;
    }
    if (parsed.extended) continue;
    raw.push(parsed.body);
    if (parsed.body.length === 0) closed = true;
    for (const id of parsed.ids) {
      const key = `${parsed.sender} ${id}`;
      let stream = perConnection.get(key);
      if (stream === undefined) {
        stream = { bytes: [], closed: false };
        perConnection.set(key, stream);
      }
      if (parsed.body.length === 0) stream.closed = true;
      else stream.bytes.push(parsed.body);
    }
  }
  const parsed: ParsedResponse[] = [];
  let frames: WebSocketMessage[] | null = null;
  let complete = true;
  const keys = [...perConnection.keys()].sort((a, b) =>
    (connections.get(a)?.order ?? Infinity) -
    (connections.get(b)?.order ?? Infinity)
  );
  for (const key of keys) {
    const stream = perConnection.get(key)!;
    const methods = connections.get(key)?.methods ?? [];
    const responses = parseResponses(
      concatBytes(stream.bytes),
      methods,
      stream.closed,
    );
    parsed.push(...responses);
    const last = responses.at(-1);
    if (last?.status === 101 && last.complete) {
      const sent = decodeServerFrames(
        concatBytes(stream.bytes).subarray(last.end),
      );
      if (!sent.whole) complete = false;
      frames ??= sent.messages;
    }
    const finals = responses.filter((r) => r.status >= 200 || r.status === 101);
    if (
      finals.length < methods.length || responses.some((r) => !r.complete)
    ) {
      complete = false;
    }
  }
  for (const [key, record] of connections) {
    if (!perConnection.has(key) && record.methods.length > 0) complete = false;
  }
  const responses = parsed.filter((r) => r.status >= 200 && r.status <= 599)
    .map(toFetchResponse);
  return {
    replies,
    raw: concatBytes(raw),
    closed,
    get response(): Response {
      if (responses.length === 0) {
        const other = parsed.find((r) => r.status < 200);
        throw new Error(
          other === undefined
            ? `Cannot read the response: m2fetch sent no response head (${replies.length} replies; see run.raw and run.logs)`
            : other.status === 101
            ? "Cannot read the response: it is a 101 WebSocket upgrade, which a Fetch Response cannot hold; see run.parsed for its head and run.frames for the messages"
            : `Cannot read the response: the only response has status ${other.status}, which a Fetch Response cannot hold; see run.parsed`,
        );
      }
      return responses[0];
    },
    responses,
    parsed,
    frames: frames ?? [],
    complete,
    logs,
  };
}

/**
 * Decodes the unmasked frames a server sent (m2fetch sends every message as
 * one frame), and says whether the bytes end on a frame boundary.
 */
function decodeServerFrames(
  bytes: Uint8Array,
): { messages: WebSocketMessage[]; whole: boolean; end: number } {
  const messages: WebSocketMessage[] = [];
  let offset = 0;
  while (offset + 2 <= bytes.length) {
    let length = bytes[offset + 1] & 0x7f;
    let start = offset + 2;
    if (length === 126) {
      if (start + 2 > bytes.length) break;
      length = (bytes[start] << 8) | bytes[start + 1];
      start += 2;
    } else if (length === 127) {
      if (start + 8 > bytes.length) break;
      length = Number(
        new DataView(bytes.buffer, bytes.byteOffset + start, 8)
          .getBigUint64(0),
      );
      start += 8;
    }
    if (start + length > bytes.length) break;
    messages.push(
      classifyServerFrame(bytes[offset], bytes.subarray(start, start + length)),
    );
    offset = start + length;
  }
  return { messages, whole: offset === bytes.length, end: offset };
}

function classifyServerFrame(
  first: number,
  payload: Uint8Array,
): WebSocketMessage {
  return classifyMessage(
    `0x${first.toString(16).toUpperCase()}`,
    payload,
    Infinity,
  );
}

/**
 * The client's close frame echoing the server's, as mongrel2 passes it on:
 * the handshake's headers with `METHOD: "WEBSOCKET"` and `FLAGS`.
 */
function closeEcho(
  handshake: Mongrel2Message,
  close: WebSocketMessage,
): Uint8Array {
  // A close without a code reads as 1005, which is never sent back.
  const code = close.type === "close" && close.code !== 1005
    ? close.code
    : undefined;
  const payload = new Uint8Array(code === undefined ? 0 : 2);
  if (code !== undefined) new DataView(payload.buffer).setUint16(0, code);
  const headers = {
    ...handshake.headers,
    METHOD: "WEBSOCKET",
    FLAGS: `0x${(0x80 | OPCODE.close).toString(16).toUpperCase()}`,
  };
  return concatBytes([
    encodeByteString(
      `${handshake.sender} ${handshake.connectionId} ${handshake.path} `,
    ),
    encodeTNetstring(headers),
    encodeTNetstring(payload),
  ]);
}

async function resolveHandler(handler: HandlerSource): Promise<FetchHandler> {
  if (typeof handler === "string" || handler instanceof URL) {
    return (await loadHandler(String(handler))).fetch;
  }
  if (typeof handler === "function") return handler as FetchHandler;
  if (typeof handler === "object" && handler !== null) {
    const found = findHandler(
      handler as Record<string, unknown>,
      "the handler given to runHandler",
    );
    // `{ fetch }` itself (a default export) must keep its `this`.
    return found.source === "fetch" ? found.fetch.bind(handler) : found.fetch;
  }
  throw new TypeError(
    `Cannot run handler: expected a function, a module, or a module path, got ${
      handler === null ? "null" : typeof handler
    }`,
  );
}

async function fromRequest(request: Request): Promise<Target> {
  const url = new URL(request.url);
  const body = request.body === null
    ? null
    : new Uint8Array(await request.clone().arrayBuffer());
  return {
    method: checkMethod(request.method),
    version: "HTTP/1.1",
    path: url.pathname,
    query: urlQuery(url),
    fragment: null,
    scheme: url.protocol === "https:" ? "https" : "http",
    host: url.host,
    headers: headerList(request.headers),
    body,
    contentType: null,
  };
}

async function fromFields(fields: RequestFields): Promise<Target> {
  const version = fields.version ?? "HTTP/1.1";
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    throw new TypeError(
      `Cannot build request message: mongrel2 answers 400 to version "${version}" (only HTTP/1.0 and HTTP/1.1)`,
    );
  }
  let path: string;
  let query: string | null;
  let fragment: string | null;
  let scheme: "http" | "https" = "http";
  let host: string | null = null;
  const url = fields.url;
  if (typeof url === "string" && url.startsWith("/")) {
    const encoded = url.replace(
      /[^\x21-\x7e]|["<>]/gu,
      (char) =>
        char === '"' || char === "<" || char === ">"
          ? `%${char.charCodeAt(0).toString(16).toUpperCase()}`
          : encodeURIComponent(char),
    );
    const hash = encoded.indexOf("#");
    const beforeHash = hash < 0 ? encoded : encoded.slice(0, hash);
    fragment = hash < 0 ? null : encoded.slice(hash + 1);
    const question = beforeHash.indexOf("?");
    path = question < 0 ? beforeHash : beforeHash.slice(0, question);
    query = question < 0 ? null : beforeHash.slice(question + 1);
  } else {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new TypeError(
        `Cannot build request message: url "${url}" is neither a path starting with "/" nor an absolute URL`,
      );
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new TypeError(
        `Cannot build request message: url "${url}" is not http or https`,
      );
    }
    path = parsed.pathname;
    query = urlQuery(parsed);
    fragment = parsed.hash === "" ? null : parsed.hash.slice(1);
    scheme = parsed.protocol === "https:" ? "https" : "http";
    host = parsed.host;
  }
  let body: Uint8Array | null = null;
  let contentType: string | null = null;
  if (fields.body !== undefined && fields.body !== null) {
    const response = new Response(fields.body);
    body = new Uint8Array(await response.arrayBuffer());
    contentType = response.headers.get("content-type");
  }
  return {
    method: checkMethod(fields.method ?? "GET"),
    version,
    path,
    query,
    fragment,
    scheme,
    host,
    headers: headerPairs(fields.headers),
    body,
    contentType,
  };
}

/** The raw query, `""` for a bare `?`, or null when there is no `?`. */
function urlQuery(url: URL): string | null {
  if (url.search !== "") return url.search.slice(1);
  const href = url.hash === "" ? url.href : url.href.slice(0, -url.hash.length);
  return href.endsWith("?") ? "" : null;
}

function headerPairs(headers: HeaderFields | undefined): [string, string][] {
  if (headers === undefined) return [];
  if (headers instanceof Headers) return headerList(headers);
  if (Symbol.iterator in headers) {
    return [...(headers as Iterable<readonly [string, string]>)].map((
      [name, value],
    ) => [name, value]);
  }
  const pairs: [string, string][] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value === "string") pairs.push([name, value]);
    else for (const item of value) pairs.push([name, item]);
  }
  return pairs;
}

function checkMethod(method: string): string {
  if (!METHOD.test(method)) {
    throw new TypeError(
      `Cannot build request message: mongrel2 answers 400 to method "${method}" (1 to 20 upper-case letters or digits)`,
    );
  }
  return method;
}

function checkName(name: string): string {
  if (!TOKEN.test(name)) {
    throw new TypeError(
      `Cannot build request message: header name "${name}" is not an HTTP token`,
    );
  }
  return name;
}

function checkValue(what: string, value: string): string {
  if (hasControlCharacter(value)) {
    throw new TypeError(
      `Cannot build request message: ${what} holds a control character, which mongrel2 answers with 400`,
    );
  }
  if (/[\u0100-\uffff]/.test(value)) {
    throw new TypeError(
      `Cannot build request message: ${what} has a character above U+00FF; header values are byte strings, so encode the bytes one character each`,
    );
  }
  return value;
}

/** Whether `value` holds a control character other than TAB. */
function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if ((code < 0x20 && code !== 0x09) || code === 0x7f) return true;
  }
  return false;
}

function checkSender(sender: string): string {
  if (!SENDER.test(sender)) {
    throw new TypeError(
      `Cannot build message: sender "${sender}" must be 1 to 128 letters, digits or '-', or mongrel2 rejects the replies`,
    );
  }
  return sender;
}

function checkConnectionId(id: number | string): string {
  const text = String(id);
  if (!/^\d{1,10}$/.test(text) || Number(text) > 0xffffffff) {
    throw new RangeError(
      `Cannot build message: connection id ${
        JSON.stringify(id)
      } is not an integer from 0 to 4294967295`,
    );
  }
  return String(Number(text));
}

/** A JSON string as mongrel2 writes it: only `"` and `\` are escaped. */
function jsonString(value: string): string {
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}

function latin1Prefix(bytes: Uint8Array, max: number): string {
  let text = "";
  const end = Math.min(bytes.length, max);
  for (let i = 0; i < end; i++) text += String.fromCharCode(bytes[i]);
  return text;
}

/** FNV-1a, 32 bit, over the key's bytes (mongrel2's `bstr_hash_fun`). */
function fnv1a(key: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 16777619) >>> 0;
  }
  return hash;
}

interface HeaderNode {
  key: string;
  hash: number;
  values: string[];
}

/**
 * mongrel2's request header hash (kazlib `hash_t`, FNV-1a keys): 64 chains
 * that double at 2 nodes per chain, new nodes at the head of their chain,
 * scanned chain by chain. Its scan order is the key order of the message.
 */
class HeaderTable {
  #chains: HeaderNode[][] = Array.from({ length: 64 }, () => []);
  #count = 0;
  #highmark = 128;
  readonly #nodes = new Map<string, HeaderNode>();

  /** A client field: repeats append, up to mongrel2's limits. */
  add(key: string, value: string): void {
    // mongrel2 drops every field, repeat or not, once the hash is full.
    if (this.#count >= MAX_HEADER_COUNT) return;
    const node = this.#nodes.get(key);
    if (node === undefined) this.#insert(key, value);
    else if (node.values.length < MAX_DUPLICATES) node.values.push(value);
  }

  /** mongrel2's own `Request_set(..., replace=1)`. */
  set(key: string, value: string): void {
    const node = this.#nodes.get(key);
    if (node !== undefined) node.values = [value];
    else this.#insert(key, value);
  }

  /** mongrel2's `Request_get`: the first value of a field. */
  get(key: string): string | undefined {
    return this.#nodes.get(key)?.values[0];
  }

  scan(): [string, string | string[]][] {
    return this.#chains.flat().map((
      node,
    ) => [node.key, node.values.length > 1 ? node.values : node.values[0]]);
  }

  #insert(key: string, value: string): void {
    if (this.#count >= this.#highmark) this.#grow();
    const node = { key, hash: fnv1a(key), values: [value] };
    this.#chains[node.hash & (this.#chains.length - 1)].unshift(node);
    this.#nodes.set(key, node);
    this.#count++;
  }

  #grow(): void {
    const size = this.#chains.length;
    const chains: HeaderNode[][] = Array.from({ length: size * 2 }, () => []);
    for (let chain = 0; chain < size; chain++) {
      // kazlib pushes each node onto the head of its new chain.
      for (const node of this.#chains[chain]) {
        chains[node.hash & size ? chain + size : chain].unshift(node);
      }
    }
    this.#chains = chains;
    this.#highmark *= 2;
  }
}
