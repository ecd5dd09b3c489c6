/**
 * Builds a `Request` whose state V8 can free in a minor collection.
 *
 * `new Request()` keeps its state in an object literal with accessors, which
 * V8 does not free in a minor collection. Everything that literal points to
 * (the URL, the header list, their strings, the body's stream) then outlives
 * every minor collection too and waits for a major one: about 200 bytes a
 * request, most of what m2fetch promoted. Copying them made each scavenge,
 * which stops every request in flight, take 1.5–3 ms instead of 0.1–0.2 ms.
 * Deno's own server builds its requests around an ordinary object instead;
 * this module does the same for requests in the common, already canonical
 * shape, through Deno's internal fields, and says when it cannot, so that
 * the caller uses the constructor. A body given as bytes stays bytes until
 * something asks for its stream, so `text()` and `json()` make none.
 *
 * @module
 */

import { internalSymbol } from "./deno_internals.ts";
import { byteStreamOf } from "./byte_stream.ts";

const probe = new Request("http://localhost/");
const BRAND = internalSymbol(probe, "[[webidl.brand]]");
const INNER = internalSymbol(probe, "request");
const GUARD = internalSymbol(probe, "headers guard");

/** Deno's inner body, as far as this module uses it. */
interface InnerBodyFields {
  streamOrStatic: ReadableStream<Uint8Array> | StaticBody;
  readonly stream: ReadableStream<Uint8Array>;
  clone(): InnerBodyFields;
}
interface StaticBody {
  body: Uint8Array;
  consumed: boolean;
}
const bodyProbe = new Request("http://localhost/", {
  method: "POST",
  body: "x",
}) as unknown as Record<symbol, { body?: object } | undefined>;
const InnerBody = (INNER && bodyProbe[INNER]?.body?.constructor) as
  | (new (source: StaticBody) => InnerBodyFields)
  | undefined;

/**
 * A body held as bytes until something asks for its stream: `text()`,
 * `json()` and `bytes()` read the bytes without making one, and the stream,
 * when made, is a byte stream as under deno serve.
 */
const YoungBody = InnerBody && class extends InnerBody {
  constructor(bytes: Uint8Array) {
    super({ body: bytes, consumed: false });
  }

  #unread(): StaticBody | undefined {
    const source = this.streamOrStatic;
    return source instanceof ReadableStream || source.consumed
      ? undefined
      : source;
  }

  override get stream(): ReadableStream<Uint8Array> {
    const unread = this.#unread();
    if (unread !== undefined) {
      this.streamOrStatic = byteStreamOf(unread.body);
    }
    return super.stream;
  }

  override clone(): InnerBodyFields {
    const unread = this.#unread();
    // A copy: each branch of a clone reads bytes of its own.
    return unread === undefined
      ? super.clone()
      : new YoungBody!(unread.body.slice());
  }
};

// Methods the constructor keeps as they are (it upper-cases the others
// it knows, and refuses CONNECT, TRACE and TRACK).
const METHODS = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS",
]);

// Deno's own URL parser, as the constructor uses it, even where a handler
// later replaces the global `URL`.
const NativeURL = URL;

// What `Headers` would store unchanged: a lower-case token name, and a
// value of visible ASCII with no surrounding whitespace (or none at all).
// Anything else goes through `Headers`, which normalises or refuses it.
const CANONICAL_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
const CANONICAL_VALUE = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/;

/**
 * Deno's inner request, as its `Request` methods, `clone()` and `fetch()`
 * read it, in a class: instances are ordinary young objects.
 */
class InnerRequest {
  readonly method: string;
  readonly headerList: [string, string][];
  readonly body: InnerBodyFields | null;
  readonly redirectMode = "follow";
  readonly redirectCount = 0;
  readonly urlList: (() => string)[];
  readonly urlListProcessed: string[];
  readonly clientRid = null;
  readonly blobUrlEntry = null;
  readonly #onSignal: (() => void) | undefined;

  constructor(
    method: string,
    url: string,
    headerList: [string, string][],
    onSignal: (() => void) | undefined,
    body: InnerBodyFields | null,
  ) {
    this.method = method;
    this.body = body;
    this.headerList = headerList;
    this.urlList = [() => url];
    this.urlListProcessed = [url];
    this.#onSignal = onSignal;
  }

  url(): string {
    return this.urlListProcessed[0] ??= this.urlList[0]();
  }

  currentUrl(): string {
    const last = this.urlList.length - 1;
    return this.urlListProcessed[last] ??= this.urlList[last]();
  }

  /** Deno calls this when `request.signal` is first read. */
  onCancel(): void {
    this.#onSignal?.();
  }
}

/**
 * Whether {@linkcode youngRequest} can build requests on this Deno: false
 * where a Deno release renamed the internal fields it uses.
 *
 * @example Usage
 * ```ts
 * import { canBuildYoungRequests } from "./young_request.ts";
 * console.assert(typeof canBuildYoungRequests === "boolean");
 * ```
 */
export const canBuildYoungRequests: boolean = BRAND !== undefined &&
  INNER !== undefined && GUARD !== undefined;

/**
 * Builds a `Request`, or returns undefined when the constructor would change
 * or refuse the input (a method it upper-cases or refuses, headers not in
 * the shape `Headers` stores, a URL that is not http or https, a body on GET
 * or HEAD) or this Deno lacks the fields; the caller then builds it with
 * `new Request()`.
 *
 * @param method The method, as the request should have it.
 * @param url The absolute URL.
 * @param headerList The client's headers as name/value pairs; the request
 * keeps the array.
 * @param onSignal Called once, when the handler first reads
 * `request.signal`, with the signal already in place.
 * @param body The body's bytes (copied), or null for none. Its stream,
 * when asked for, is a byte stream, as under deno serve.
 * @returns The request, or undefined.
 *
 * @example Usage
 * ```ts
 * import { youngRequest } from "./young_request.ts";
 * const request = youngRequest(
 *   "POST",
 *   "http://example.com/",
 *   [["content-type", "application/json"]],
 *   undefined,
 *   new TextEncoder().encode('{"a":1}'),
 * );
 * console.assert(request === undefined || (await request.json()).a === 1);
 * ```
 */
export function youngRequest(
  method: string,
  url: string,
  headerList: [string, string][],
  onSignal?: (request: Request) => void,
  body: Uint8Array | null = null,
): Request | undefined {
  if (!canBuildYoungRequests || !METHODS.has(method)) return undefined;
  if (body !== null) {
    // The constructor refuses a body on these; and holding the bytes needs
    // Deno's inner body class.
    if (method === "GET" || method === "HEAD") return undefined;
    if (YoungBody === undefined) return undefined;
  }
  for (const [name, value] of headerList) {
    if (!CANONICAL_NAME.test(name) || !CANONICAL_VALUE.test(value)) {
      return undefined;
    }
  }
  // Parsed as the constructor parses it (IPv6 hosts, dot segments, escapes).
  const href = NativeURL.parse(url)?.href;
  // Only http and https: for a blob: URL the constructor also looks up the
  // blob (fetch() reads it even once the URL is revoked), which this
  // inner request does not do.
  if (
    href === undefined ||
    !(href.startsWith("http:") || href.startsWith("https:"))
  ) {
    return undefined;
  }
  const request = new Request(BRAND as unknown as string);
  const fields = request as unknown as Record<symbol, unknown>;
  fields[INNER!] = new InnerRequest(
    method,
    href,
    headerList,
    onSignal && (() => onSignal(request)),
    body && new YoungBody!(body.slice()),
  );
  fields[GUARD!] = "request";
  return request;
}
