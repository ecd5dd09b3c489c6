import assert from "node:assert/strict";
import { hasStaticBody } from "../../runtime/http/static_body.ts";

Deno.test("hasStaticBody() knows bodies made from strings and bytes, on this Deno", () => {
  // These are the bodies read without a stream; when a Deno upgrade makes
  // one false here, responses still work (the stream path) but each one
  // outlives V8's minor collections again.
  const known: [string, Response][] = [
    ["a string", new Response("hello")],
    ["a string, with headers", new Response("x", { headers: { a: "1" } })],
    ["Response.json()", Response.json({ a: 1 })],
    ["bytes", new Response(new Uint8Array([1, 2, 3]))],
    ["an ArrayBuffer", new Response(new ArrayBuffer(4))],
    ["URLSearchParams", new Response(new URLSearchParams("a=1"))],
    ["an empty string", new Response("")],
  ];
  for (const [what, response] of known) {
    assert.ok(hasStaticBody(response), what);
  }
  const probed = new Response("probed");
  assert.equal(probed.bodyUsed, false);
  assert.ok(hasStaticBody(probed), "after bodyUsed was read");
});

Deno.test("hasStaticBody() is false for every body that is not complete and unread", async () => {
  const used = new Response("used");
  await used.text();
  const streamed = new Response("streamed");
  void streamed.body;
  const cases: [string, Response][] = [
    ["a stream", new Response(new ReadableStream())],
    ["no body", new Response(null)],
    ["a Blob", new Response(new Blob(["abc"]))],
    ["a body already read", used],
    ["a body whose stream was taken", streamed],
  ];
  for (const [what, response] of cases) {
    assert.equal(hasStaticBody(response), false, what);
  }
});
