/**
 * Builds a Web `Request` from a parsed mongrel2 message, or from the
 * mongrel2 facts a handler worker receives in its place.
 *
 * @module
 */

import type { Mongrel2RequestInfo } from "../info.ts";
import {
  firstHeader,
  type Mongrel2Headers,
  type Mongrel2Message,
} from "../protocol/message.ts";
import { byteStreamOf } from "./byte_stream.ts";
import { internalSymbol } from "./deno_internals.ts";
import { youngRequest } from "./young_request.ts";

/** Options for {@linkcode toRequest}. */
export interface ToRequestOptions {
  /** Aborts when the client goes away. */
  signal?: AbortSignal;
  /**
   * The request body; defaults to the message's inline body (none when
   * built from mongrel2 facts). Bytes become a byte stream; a stream is
   * used as it is. Ignored for GET and HEAD, which have no body in the
   * Fetch API.
   */
  body?: ReadableStream<Uint8Array> | Uint8Array | null;
}

/** Header keys that mongrel2 adds in lower case but that the client did not send. */
const MONGREL2_LOWER_CASE_KEYS = new Set([
  "x-mongrel2-upload-start",
  "x-mongrel2-upload-done",
]);

const BODILESS_METHODS = new Set(["GET", "HEAD"]);

/**
 * Deno's own abort step of an `AbortSignal` (its internal
 * `[[signalAbort]]` method), or undefined where a Deno version has none.
 *
 * `new Request(url, { signal })` makes the request's signal follow the one
 * given, which Deno tracks with a `WeakRef` and a `FinalizationRegistry`;
 * V8's minor collections keep such targets alive, so every request built
 * that way survives into the old generation and waits for a major
 * collection (300,000 requests: 253 MB live after a scavenge, against 17
 * MB without). Aborting the request's own signal with this step instead
 * keeps requests young, and the signal behaves the same: `reason`, one
 * `abort` event, clones and `fetch(request)` follow it.
 */
const signalAbort = internalSymbol(AbortSignal.prototype, "[[signalAbort]]");

/**
 * Returns true when a header key is one of mongrel2's own (upper case, such
 * as `METHOD` or `REMOTE_ADDR`) or an upload marker, rather than a header
 * the client sent. Client header names always arrive lower-cased.
 *
 * @param name A header key from the message.
 * @returns Whether the key belongs to mongrel2.
 *
 * @example Usage
 * ```ts
 * import { isMongrel2Key } from "./request.ts";
 * console.assert(isMongrel2Key("REMOTE_ADDR") && !isMongrel2Key("host"));
 * ```
 */
export function isMongrel2Key(name: string): boolean {
  return name !== name.toLowerCase() || MONGREL2_LOWER_CASE_KEYS.has(name);
}

/**
 * Builds the absolute URL of a request from `URL_SCHEME`, the `host` header
 * and `URI`. A missing or unusable host falls back to `localhost`, as there
 * is no listening address to use instead.
 *
 * @param message The parsed message, or the request's mongrel2 facts.
 * @returns The URL string.
 *
 * @example Usage
 * ```ts
 * import { requestUrl } from "./request.ts";
 * const url = requestUrl({
 *   sender: "s", connectionId: "1", path: "/a", body: new Uint8Array(),
 *   headerFormat: "json",
 *   headers: { URL_SCHEME: "http", URI: "/a?b=1", host: "[::1]:8080" },
 * });
 * console.assert(url === "http://[::1]:8080/a?b=1");
 * ```
 */
export function requestUrl(
  message: Mongrel2Message | Mongrel2RequestInfo,
): string {
  const headers = message.headers;
  const scheme = firstHeader(headers, "URL_SCHEME") === "https"
    ? "https"
    : "http";
  const uri = firstHeader(headers, "URI") ?? message.path;
  const target = uri.startsWith("/") ? uri : `/${uri}`;
  const host = firstHeader(headers, "host");
  if (host !== undefined && isUsableHost(host)) {
    return `${scheme}://${host}${target}`;
  }
  return `${scheme}://localhost${target}`;
}

// A host (reg-name or IPv4), or an IPv6 literal in brackets, with an
// optional port; anything else could change the URL's meaning.
const HOST =
  /^(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::\d{0,5})?$/;

function isUsableHost(host: string): boolean {
  // The pattern lets through hosts the URL parser still rejects, such as
  // a port above 65535 or the IPv4 address 1.2.3.256.
  return host.length > 0 && host.length <= 255 && HOST.test(host) &&
    URL.canParse(`http://${host}/`);
}

/**
 * Returns the client's address as mongrel2 saw it (`REMOTE_ADDR`), or an
 * empty string when the message has none.
 *
 * @param headers The message's headers.
 * @returns The address, e.g. `127.0.0.1`.
 *
 * @example Usage
 * ```ts
 * import { clientAddress } from "./request.ts";
 * console.assert(clientAddress({ REMOTE_ADDR: "::1" }) === "::1");
 * ```
 */
export function clientAddress(headers: Mongrel2Headers): string {
  return firstHeader(headers, "REMOTE_ADDR") ?? "";
}

/**
 * Returns the method the client sent. mongrel2 reports the GET of a
 * WebSocket handshake as `WEBSOCKET_HANDSHAKE` (with the accept key as its
 * body), which is mongrel2's word, not the client's.
 *
 * @param message The parsed message, or the request's mongrel2 facts.
 * @returns The method, e.g. `GET`.
 *
 * @example Usage
 * ```ts
 * import { requestMethod } from "./request.ts";
 * const method = requestMethod({
 *   sender: "s", connectionId: "1", path: "/ws", body: new Uint8Array(),
 *   headerFormat: "tnetstring", headers: { METHOD: "WEBSOCKET_HANDSHAKE" },
 * });
 * console.assert(method === "GET");
 * ```
 */
export function requestMethod(
  message: Mongrel2Message | Mongrel2RequestInfo,
): string {
  const method = firstHeader(message.headers, "METHOD") ?? "GET";
  return method === "WEBSOCKET_HANDSHAKE" ? "GET" : method;
}

/**
 * Converts a mongrel2 request message into a `Request`, with every client
 * header (duplicates appended as separate values, mongrel2's own keys left
 * out) and the body as a stream.
 *
 * @param message The parsed message, or the request's mongrel2 facts.
 * @param options Signal and body.
 * @returns The request.
 * @throws {TypeError} When the method or a header cannot be represented (a bad request).
 *
 * @example Usage
 * ```ts
 * import { toRequest } from "./request.ts";
 * const request = toRequest({
 *   sender: "s", connectionId: "1", path: "/", body: new Uint8Array(),
 *   headerFormat: "tnetstring",
 *   headers: { METHOD: "GET", URI: "/", host: "example.com", "x-dup": ["a", "b"] },
 * });
 * console.assert(request.headers.get("x-dup") === "a, b");
 * ```
 */
export function toRequest(
  message: Mongrel2Message | Mongrel2RequestInfo,
  options: ToRequestOptions = {},
): Request {
  const method = requestMethod(message);
  const url = requestUrl(message);
  const signal = options.signal;
  const body = BODILESS_METHODS.has(method)
    ? null
    : options.body !== undefined
    ? options.body
    : "body" in message
    ? message.body
    : null;
  // Most requests: one V8 can free young, its signal made on first use.
  if (signalAbort !== undefined && !(body instanceof ReadableStream)) {
    const young = youngRequest(
      method,
      url,
      headerPairs(message.headers),
      signal && ((request) => follow(request, signal, signalAbort)),
      body,
    );
    if (young !== undefined) return young;
  }
  const headers = clientHeaders(message.headers);
  const init: RequestInit = { method, headers };
  if (signal !== undefined && signalAbort === undefined) init.signal = signal;
  // As under deno serve, the body is a byte stream (BYOB readers work).
  if (body instanceof Uint8Array) init.body = byteStreamOf(body);
  else if (body !== null) init.body = body;
  const request = new Request(url, init);
  if (signal !== undefined && signalAbort !== undefined) {
    follow(request, signal, signalAbort);
  }
  return request;
}

/**
 * Aborts `request.signal` (its own, made on first use) with `source`. As a
 * signal made to follow `source` does, it waits for `source` to abort: an
 * `abort` event dispatched on a signal that is not aborted is no abort.
 */
function follow(request: Request, source: AbortSignal, abort: symbol): void {
  const abortRequest = () =>
    (request.signal as unknown as Record<symbol, (reason: unknown) => void>)
      [abort](source.reason);
  if (source.aborted) return abortRequest();
  const onAbort = () => {
    if (!source.aborted) return;
    source.removeEventListener("abort", onAbort);
    abortRequest();
  };
  source.addEventListener("abort", onAbort);
}

/**
 * The client's headers as a record, which `Request` copies with a third
 * less time and memory than a list of pairs; as pairs when a name repeats
 * (each value kept, as `getSetCookie()` needs) or is `__proto__`.
 */
function clientHeaders(
  headers: Mongrel2Headers,
): Record<string, string> | [string, string][] {
  const record: Record<string, string> = {};
  for (const name in headers) {
    if (isMongrel2Key(name)) continue;
    const value = headers[name];
    if (typeof value !== "string" || name === "__proto__") {
      return headerPairs(headers);
    }
    record[name] = value;
  }
  return record;
}

function headerPairs(headers: Mongrel2Headers): [string, string][] {
  const pairs: [string, string][] = [];
  for (const name in headers) {
    if (isMongrel2Key(name)) continue;
    const value = headers[name];
    if (typeof value === "string") pairs.push([name, value]);
    // Several Cookie lines (HTTP/2 proxies send one per cookie) are one
    // cookie list: joined with "; ", as Deno's server does, not the ", "
    // Headers puts between repeated values.
    else if (name === "cookie") pairs.push([name, value.join("; ")]);
    else for (const item of value) pairs.push([name, item]);
  }
  return pairs;
}
