import assert from "node:assert/strict";
import { headerList } from "../../runtime/http/header_list.ts";

Deno.test("headerList() gives what iterating Headers gives: sorted, combined, set-cookie apart", () => {
  const headers = new Headers([
    ["set-cookie", "a=1"],
    ["X-B", "1"],
    ["set-cookie", "b=2"],
    ["x-b", "2"],
    ["content-type", "text/plain"],
    ["a", "z"],
  ]);
  assert.deepEqual(headerList(headers), [...headers]);
  assert.deepEqual(headerList(headers), [
    ["a", "z"],
    ["content-type", "text/plain"],
    ["set-cookie", "a=1"],
    ["set-cookie", "b=2"],
    ["x-b", "1, 2"],
  ]);
  assert.deepEqual(headerList(new Headers()), []);
});

Deno.test("headerList() reads thousands of fields", () => {
  const headers = new Headers();
  for (let i = 0; i < 5000; i++) headers.append(`x-${i % 4000}`, String(i));
  const pairs = headerList(headers);
  assert.equal(pairs.length, 4000);
  assert.deepEqual(pairs.find(([name]) => name === "x-7"), ["x-7", "7, 4007"]);
});
