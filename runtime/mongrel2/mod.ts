/**
 * A managed mongrel2 for dev mode, tests and benchmarks: render a config
 * ({@link renderMongrel2Config}), load and run it ({@link startMongrel2}),
 * stop it ({@link Mongrel2Process.stop}); and read a handler's wiring out of
 * any mongrel2's config.sqlite ({@link discoverHandler}).
 *
 * @example
 * ```ts ignore
 * import { startMongrel2 } from "./mod.ts";
 * await using m2 = await startMongrel2({
 *   dir: await Deno.makeTempDir(),
 *   handlers: [{ route: "/" }],
 * });
 * console.log(m2.url, m2.handlers[0].sendSpec);
 * ```
 *
 * @module
 */

export * from "./config.ts";
export * from "./discover.ts";
export * from "./process.ts";
