/**
 * Reading every field of a `Headers` object in linear time.
 *
 * @module
 */

/**
 * The fields of `headers` as `[name, value]` pairs, in the order (sorted,
 * repeated names combined, `set-cookie` kept apart) that iterating gives.
 * Deno's `Headers` iterator sorts the whole list again for every step, so
 * `[...headers]` takes quadratic time (1.4 s for 5,000 fields); `forEach`
 * sorts once, and is faster for a handful of fields too.
 *
 * @param headers The headers to read.
 * @returns The pairs.
 *
 * @example Usage
 * ```ts
 * import { headerList } from "./header_list.ts";
 * const pairs = headerList(new Headers({ b: "2", a: "1" }));
 * console.assert(pairs[0][0] === "a" && pairs[1][1] === "2");
 * ```
 */
export function headerList(headers: Headers): [string, string][] {
  const pairs: [string, string][] = [];
  headers.forEach((value, name) => pairs.push([name, value]));
  return pairs;
}
