/**
 * Finds the Fetch handler in a user module, accepting the shapes users
 * already write: `export default { fetch }` (what `deno serve` runs),
 * `export default function`, or a named `export function fetch`; and
 * builds what it is called with for a mongrel2 request, on the main thread
 * and in handler workers alike.
 *
 * @module
 */

import { clientAddress, toRequest } from "./http/request.ts";
import { type Mongrel2RequestInfo, setMongrel2Info } from "./info.ts";
import { type Handshake, markHandshake } from "./websocket/upgrade.ts";

/**
 * A Fetch handler, as `deno serve` calls it.
 *
 * @example Usage
 * ```ts
 * import type { FetchHandler } from "@m2fetch/m2fetch";
 * const hello: FetchHandler = (_request, info) =>
 *   new Response(`hello ${info.remoteAddr.hostname}`);
 * ```
 */
export type FetchHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** The handler found in a module. */
export interface LoadedHandler {
  /** The Fetch handler, bound to its object where it had one. */
  fetch: FetchHandler;
  /** Which export it came from, for the start-up line. */
  source: "default.fetch" | "default" | "fetch";
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") {
    const keys = Object.keys(value as object);
    return keys.length === 0
      ? "an object with no properties"
      : `an object with ${keys.map((key) => `"${key}"`).join(", ")}`;
  }
  return `a ${typeof value}`;
}

/**
 * Returns the handler a module exports.
 *
 * @param module The module namespace (the result of `import()`).
 * @param name The module's name, for error messages.
 * @returns The handler and where it was found.
 * @throws {TypeError} When the module exports no usable handler.
 *
 * @example Usage
 * ```ts
 * import { findHandler } from "@m2fetch/m2fetch";
 * const found = findHandler({ default: { fetch: () => new Response("ok") } }, "app.ts");
 * console.assert(found.source === "default.fetch");
 * ```
 */
export function findHandler(
  module: Record<string, unknown>,
  name: string,
): LoadedHandler {
  const main = module.default;
  if (typeof main === "function") {
    return { fetch: main as FetchHandler, source: "default" };
  }
  if (typeof main === "object" && main !== null && "fetch" in main) {
    const fetch = (main as { fetch: unknown }).fetch;
    if (typeof fetch !== "function") {
      throw new TypeError(
        `Cannot serve ${name}: its default export's "fetch" is ${
          describe(fetch)
        }, not a function`,
      );
    }
    return { fetch: fetch.bind(main) as FetchHandler, source: "default.fetch" };
  }
  if (typeof module.fetch === "function") {
    return { fetch: module.fetch as FetchHandler, source: "fetch" };
  }
  const found = main === undefined
    ? `it has no default export${
      Object.keys(module).length > 0
        ? ` (exports: ${Object.keys(module).join(", ")})`
        : ""
    }`
    : `its default export is ${describe(main)}`;
  throw new TypeError(
    `Cannot serve ${name}: expected export default { fetch }, export default function, or export function fetch, but ${found}`,
  );
}

/**
 * Imports a handler module from a path or URL and finds its handler.
 *
 * @param specifier A file path (relative to the working directory) or URL.
 * @returns The handler.
 * @throws {Error} When the module is missing, fails to load, or has no handler.
 *
 * @example Usage
 * ```ts
 * import { loadHandler } from "@m2fetch/m2fetch";
 * const { fetch } = await loadHandler("examples/hello.ts");
 * ```
 */
export async function loadHandler(specifier: string): Promise<LoadedHandler> {
  const url =
    /^[a-z][a-z0-9+.-]*:/i.test(specifier) && !/^[a-z]:\\/i.test(specifier)
      ? new URL(specifier)
      : new URL(specifier, `file://${Deno.cwd()}/`);
  if (url.protocol === "file:") {
    try {
      await Deno.stat(url);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error(
          `Cannot load handler module ${specifier}: file not found`,
        );
      }
      throw error;
    }
  }
  let module: Record<string, unknown>;
  try {
    module = await import(url.href);
  } catch (error) {
    throw new Error(
      `Cannot load handler module ${specifier}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return findHandler(module, specifier);
}

/**
 * Gives the handler module its own command-line arguments in `Deno.args`
 * (those after `--`), as `deno serve APP ARGS` does, instead of m2fetch's.
 * Call it before the module loads, on every thread that loads it.
 *
 * @param args The handler's arguments.
 *
 * @example Usage
 * ```ts
 * import { setHandlerArgs } from "./handler.ts";
 * setHandlerArgs(["--greeting", "hey"]);
 * console.assert(Deno.args[1] === "hey");
 * ```
 */
export function setHandlerArgs(args: readonly string[]): void {
  Object.defineProperty(Deno, "args", {
    value: Object.freeze([...args]),
    configurable: true,
    enumerable: true,
  });
}

/**
 * Checks what a handler returned, as `deno serve` does: a Response that
 * can still be sent. Anything else is the handler's error (answered 500).
 *
 * @param result The handler's return value, awaited.
 * @throws {TypeError} For a non-Response, a network error
 * (`Response.error()`), or a Response whose body was read already (one
 * kept and returned twice, say).
 *
 * @example Usage
 * ```ts
 * import { checkHandlerResult } from "./handler.ts";
 * checkHandlerResult(new Response("ok"));
 * ```
 */
export function checkHandlerResult(
  result: unknown,
): asserts result is Response {
  if (!(result instanceof Response)) {
    throw new TypeError(
      `Return value from the handler must be a Response or a promise resolving to one, received ${
        result === null ? "null" : typeof result
      }`,
    );
  }
  if (result.type === "error") {
    throw new TypeError(
      "Return value from the handler must not be a network error (Response.error()): there is no status to send",
    );
  }
  if (result.bodyUsed) {
    throw new TypeError(
      "Return value from the handler must be a Response whose body was not read (a Response can be sent once)",
    );
  }
}

/**
 * What {@linkcode handlerCall} needs besides mongrel2's facts.
 *
 * @example Usage
 * ```ts
 * import type { HandlerCallInit } from "./handler.ts";
 * const init: HandlerCallInit = {
 *   signal: new AbortController().signal,
 *   body: new TextEncoder().encode("hello"),
 *   completed: Promise.resolve(),
 *   acceptKey: undefined,
 * };
 * console.assert(init.acceptKey === undefined);
 * ```
 */
export interface HandlerCallInit {
  /** Behind `request.signal`. */
  signal: AbortSignal;
  /** The request body (ignored for GET and HEAD). */
  body: ReadableStream<Uint8Array> | Uint8Array | null;
  /** Becomes `info.completed`. */
  completed: Promise<void>;
  /** For a WebSocket handshake: the `Sec-WebSocket-Accept` value mongrel2 computed. */
  acceptKey: string | undefined;
}

/**
 * A handler's arguments for a mongrel2 request ({@linkcode handlerCall}).
 *
 * @example Usage
 * ```ts
 * import type { FetchHandler, HandlerCall } from "./handler.ts";
 * function call(handler: FetchHandler, { request, info }: HandlerCall) {
 *   return handler(request, info);
 * }
 * console.assert(typeof call === "function");
 * ```
 */
export interface HandlerCall {
  /** The request, carrying its mongrel2 facts (`mongrel2Info()`). */
  request: Request;
  /** The handler's second argument: the client address and `completed`. */
  info: Deno.ServeHandlerInfo<Deno.NetAddr>;
  /** The request's handshake mark, when it is a WebSocket handshake. */
  handshake: Handshake | undefined;
}

/**
 * Builds what the handler is called with for a mongrel2 request: the
 * `Request` (marked with mongrel2's facts and, for a WebSocket handshake,
 * the accept key) and the `info` argument, whose address is the client's
 * as mongrel2 saw it. The main thread and the handler workers both call
 * it, so a handler gets the same request either way.
 *
 * @param source What mongrel2 told m2fetch about the request.
 * @param init Signal, body, completion and accept key.
 * @returns The request, the info and the handshake mark.
 * @throws {TypeError} When the method or a header cannot be represented (a bad request).
 *
 * @example Usage
 * ```ts
 * import { handlerCall } from "./handler.ts";
 * const { request, info } = handlerCall({
 *   connectionId: "7", sender: "s", pattern: "/", path: "/hi",
 *   headers: { METHOD: "GET", URI: "/hi", host: "example.com", REMOTE_ADDR: "::1" },
 * }, {
 *   signal: new AbortController().signal, body: null,
 *   completed: Promise.resolve(), acceptKey: undefined,
 * });
 * console.assert(request.url === "http://example.com/hi");
 * console.assert(info.remoteAddr.hostname === "::1");
 * ```
 */
export function handlerCall(
  source: Mongrel2RequestInfo,
  init: HandlerCallInit,
): HandlerCall {
  const request = toRequest(source, { signal: init.signal, body: init.body });
  setMongrel2Info(request, source);
  return {
    request,
    info: {
      remoteAddr: {
        transport: "tcp",
        hostname: clientAddress(source.headers),
        port: 0,
      },
      completed: init.completed,
    },
    handshake: init.acceptKey === undefined
      ? undefined
      : markHandshake(request, init.acceptKey),
  };
}

/**
 * A handler that builds the `Request` itself from mongrel2's facts, so the
 * server builds none: the worker pool, whose workers each build their own.
 * The server calls it in place of the {@linkcode FetchHandler} it is
 * attached to ({@linkcode withFactsHandler}).
 *
 * @example Usage
 * ```ts
 * import type { FactsHandler } from "./handler.ts";
 * const facts: FactsHandler = (source) => new Response(`id ${source.connectionId}`);
 * ```
 */
export type FactsHandler = (
  source: Mongrel2RequestInfo,
  init: HandlerCallInit,
  handshake: Handshake | undefined,
) => Response | Promise<Response>;

const FACTS_HANDLER = Symbol("m2fetch.factsHandler");

/**
 * Attaches a {@linkcode FactsHandler} to a Fetch handler that does the same
 * from a `Request`.
 *
 * @param handler The Fetch handler (what users and tests call).
 * @param facts What the server calls instead.
 * @returns `handler`, carrying `facts`.
 *
 * @example Usage
 * ```ts
 * import { factsHandlerOf, withFactsHandler } from "./handler.ts";
 * const handler = withFactsHandler(() => new Response("a"), () => new Response("b"));
 * console.assert(factsHandlerOf(handler) !== undefined);
 * ```
 */
export function withFactsHandler(
  handler: FetchHandler,
  facts: FactsHandler,
): FetchHandler {
  return Object.assign(handler, { [FACTS_HANDLER]: facts });
}

/**
 * Returns the {@linkcode FactsHandler} attached to a Fetch handler.
 *
 * @param handler A Fetch handler.
 * @returns The facts handler, or `undefined`.
 *
 * @example Usage
 * ```ts
 * import { factsHandlerOf } from "./handler.ts";
 * console.assert(factsHandlerOf(() => new Response("a")) === undefined);
 * ```
 */
export function factsHandlerOf(
  handler: FetchHandler,
): FactsHandler | undefined {
  return (handler as { [FACTS_HANDLER]?: FactsHandler })[FACTS_HANDLER];
}

/**
 * A request mongrel2 passed that `Request` cannot represent (a method or
 * header value it rejects): a bad request, answered 400 before any
 * handler runs. Thrown where the `Request` is built, in a worker too.
 *
 * @example Usage
 * ```ts
 * import { UnrepresentableRequestError } from "./handler.ts";
 * const error = new UnrepresentableRequestError("Method is forbidden");
 * console.assert(error.name === "UnrepresentableRequestError");
 * ```
 */
export class UnrepresentableRequestError extends TypeError {
  /**
   * Creates the error.
   *
   * @param message Why `Request` refused it.
   */
  constructor(message: string) {
    super(message);
    this.name = "UnrepresentableRequestError";
  }
}

/**
 * Longest a reload waits for the handler module to load (a top-level
 * `await` that never settles must not block every later reload).
 */
export const RELOAD_LOAD_TIMEOUT_MS = 30_000;

/**
 * Waits for a reload's module to load, at most `ms`.
 *
 * @param loading The load under way.
 * @param ms The limit.
 * @returns What the load gave.
 * @throws {Error} When the limit passes first (the load may go on, but the
 * reload gives up on it).
 *
 * @example Usage
 * ```ts
 * import { loadedWithin } from "./handler.ts";
 * console.assert(await loadedWithin(Promise.resolve(7), 1000) === 7);
 * ```
 */
export function loadedWithin<T>(
  loading: Promise<T>,
  ms: number = RELOAD_LOAD_TIMEOUT_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `The handler module did not finish loading within ${
              ms / 1000
            } s (a top-level await that never settles?)`,
          ),
        ),
      ms,
    );
  });
  return Promise.race([loading, limit]).finally(() => clearTimeout(timer));
}
