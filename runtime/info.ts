/**
 * mongrel2 facts about a request that `Deno.ServeHandlerInfo` has no room
 * for, reachable from the `Request` itself so handlers keep the
 * `deno serve` shape.
 *
 * @module
 */

import type { Mongrel2Headers } from "./protocol/message.ts";

/** What mongrel2 told m2fetch about a request. */
export interface Mongrel2RequestInfo {
  /** mongrel2's connection id: the same for every request on one TCP connection. */
  connectionId: string;
  /** The handler `send_ident` the request came with. */
  sender: string;
  /** The route pattern that matched (`PATTERN`), when mongrel2 sent one. */
  pattern: string | undefined;
  /** The raw, still percent-encoded path. */
  path: string;
  /** Every header of the message, mongrel2's upper-case keys included. */
  headers: Readonly<Mongrel2Headers>;
}

// A property rather than a WeakMap entry: the young generation's
// collections then have no ephemeron table to walk for every request.
// Symbol.for, so another copy of this module reads it too.
const INFO = Symbol.for("m2fetch.mongrel2Info");

type Marked = Request & { [INFO]?: Mongrel2RequestInfo };

/**
 * Records the mongrel2 facts of a request (done by the server).
 *
 * @param request The request given to the handler.
 * @param info The facts.
 *
 * @example Usage
 * ```ts
 * import { mongrel2Info, setMongrel2Info } from "./info.ts";
 * const request = new Request("http://localhost/");
 * setMongrel2Info(request, { connectionId: "7", sender: "abc", pattern: "/", path: "/", headers: {} });
 * console.assert(mongrel2Info(request)?.connectionId === "7");
 * ```
 */
export function setMongrel2Info(
  request: Request,
  info: Mongrel2RequestInfo,
): void {
  (request as Marked)[INFO] = info;
}

/**
 * Returns what mongrel2 said about a request, or `undefined` when the
 * request did not come through mongrel2 (for example under `deno serve`).
 *
 * @param request The request the handler received.
 * @returns Connection id, sender, route pattern, raw path and headers.
 *
 * @example Usage
 * ```ts
 * import { mongrel2Info } from "@m2fetch/m2fetch";
 * export default {
 *   fetch(request: Request) {
 *     const info = mongrel2Info(request);
 *     return new Response(info ? `connection ${info.connectionId}` : "direct");
 *   },
 * };
 * ```
 */
export function mongrel2Info(
  request: Request,
): Mongrel2RequestInfo | undefined {
  return (request as Marked)[INFO];
}
