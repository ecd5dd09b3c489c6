/**
 * Preloaded by `deno task test` (and so by CI): turns Deno's op sanitizer
 * on for every test that does not set it. Deno 2.9's test runner no longer
 * reports timers a test leaves behind unless `sanitizeOps` is set, and a
 * timer left by m2fetch (a poll that outlives its wait, a pool's timer
 * after close) is a bug the suite should show.
 *
 * ```sh
 * deno test -A --preload tests/op_sanitizer.ts tests/upload/
 * ```
 *
 * @module
 */

type TestArgs =
  | [Deno.TestDefinition]
  | [string, (t: Deno.TestContext) => void | Promise<void>]
  | [
    string,
    Omit<Deno.TestDefinition, "fn" | "name">,
    (t: Deno.TestContext) => void | Promise<void>,
  ]
  | [
    Omit<Deno.TestDefinition, "fn">,
    (t: Deno.TestContext) => void | Promise<void>,
  ]
  | [(t: Deno.TestContext) => void | Promise<void>];

function withOpSanitizer(args: TestArgs): Deno.TestDefinition {
  if (typeof args[0] === "function") {
    return { name: args[0].name, fn: args[0], sanitizeOps: true };
  }
  if (typeof args[0] === "string") {
    const [name, second, third] = args as [string, unknown, unknown];
    return typeof second === "function"
      ? { name, fn: second as Deno.TestDefinition["fn"], sanitizeOps: true }
      : {
        sanitizeOps: true,
        ...second as Omit<Deno.TestDefinition, "fn" | "name">,
        name,
        fn: third as Deno.TestDefinition["fn"],
      };
  }
  const [options, fn] = args as [Deno.TestDefinition, unknown];
  return typeof fn === "function"
    ? { sanitizeOps: true, ...options, fn: fn as Deno.TestDefinition["fn"] }
    : { sanitizeOps: true, ...options };
}

const register = Deno.test.bind(Deno);
const test = (...args: TestArgs) => register(withOpSanitizer(args));
Object.assign(test, {
  ignore: Deno.test.ignore,
  only: Deno.test.only,
});
Object.defineProperty(Deno, "test", { value: test });
