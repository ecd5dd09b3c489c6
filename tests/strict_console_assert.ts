/**
 * Preloaded by the doc-example run (`deno task ok`): the examples check
 * their results with `console.assert`, which only prints; here a false one
 * throws, so the example fails.
 *
 * @module
 */

const report = console.assert;
console.assert = (condition?: boolean, ...data: unknown[]): void => {
  if (!condition) {
    throw new Error(`Assertion failed in a doc example: ${data.join(" ")}`);
  }
  report(condition, ...data);
};
