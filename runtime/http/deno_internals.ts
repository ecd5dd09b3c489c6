/**
 * The one place m2fetch looks up Deno's private fields, for three fast
 * paths (`static_body.ts`, `request.ts`, `young_request.ts`). Each symbol
 * is found once, by its description; where a Deno release renames or drops one, the lookup
 * answers undefined and the caller takes its public-API path. The tests
 * that use these fast paths fail on such a release, so that it is noticed.
 *
 * @module
 */

/**
 * The own symbol-keyed property of `object` whose symbol has
 * `description`, found once so that per-request code indexes it directly.
 *
 * @param object An object of the kind that carries the symbol (every
 * instance of a Deno class holds the same symbols).
 * @param description The symbol's description, as Deno gives it.
 * @returns The symbol, or undefined where this Deno has none.
 *
 * @example Usage
 * ```ts
 * import { internalSymbol } from "./deno_internals.ts";
 * const inner = internalSymbol(new Response(""), "response");
 * console.assert(inner === undefined || typeof inner === "symbol");
 * ```
 */
export function internalSymbol(
  object: object,
  description: string,
): symbol | undefined {
  return Object.getOwnPropertySymbols(object).find((symbol) =>
    symbol.description === description
  );
}
