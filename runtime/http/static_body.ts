/**
 * Telling, without touching `response.body`, that a `Response`'s body was
 * made from a string or bytes, so that it can be read with `bytes()`.
 *
 * Reading `response.body` makes a `ReadableStream`, and in Deno 2.9 every
 * stream outlives V8's minor collections (200,000 streams: 225 MB live
 * after a scavenge, against 2 MB for as many promises), so a stream per
 * response promotes each response to the old generation, where only a major
 * collection frees it. `bytes()` on a body that is already complete makes
 * no stream. Deno keeps no public flag for this: the check reads Deno's
 * internal fields (`deno_internals.ts`), and answers false whenever they
 * are not as expected, which leaves the response to the stream path.
 *
 * @module
 */

import { internalSymbol } from "./deno_internals.ts";

const probe = new Response("");
/** Deno's inner response (its body among it), on every `Response`. */
const INNER = internalSymbol(probe, "response");
/** A string body Deno keeps as it is until it is read. */
const LAZY_BODY = internalSymbol(probe, "lazy static body");

/**
 * Whether `response`'s body is complete already (made from a string or
 * bytes, as `new Response("hi")` and `Response.json()` are): reading it
 * with `bytes()` then neither waits nor makes a stream. False for a
 * stream, a body already used, or an internal layout this check does not
 * know.
 *
 * @param response The response; not read.
 * @returns Whether `bytes()` is safe and cheap.
 *
 * @example Usage
 * ```ts
 * import { hasStaticBody } from "./static_body.ts";
 * console.assert(hasStaticBody(new Response("hello")));
 * console.assert(!hasStaticBody(new Response(new ReadableStream())));
 * ```
 */
export function hasStaticBody(response: Response): boolean {
  if (INNER === undefined) return false;
  const fields = response as unknown as Record<symbol, unknown>;
  const inner = fields[INNER] as
    | { body?: { streamOrStatic?: unknown } | null }
    | undefined;
  if (typeof inner !== "object" || inner === null) return false;
  if (inner.body === null) {
    return LAZY_BODY !== undefined && typeof fields[LAZY_BODY] === "string";
  }
  const source = inner.body?.streamOrStatic as
    | { body?: unknown; consumed?: unknown }
    | undefined;
  return typeof source === "object" && source !== null &&
    !(source instanceof ReadableStream) && source.consumed === false &&
    (typeof source.body === "string" || source.body instanceof Uint8Array);
}
