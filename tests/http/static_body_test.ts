import assert from "node:assert/strict";
import { hasStaticBody } from "../../runtime/http/static_body.ts";
import { ResponseEncoder } from "../../runtime/http/response_encoder.ts";
import { concatBytes } from "../../runtime/protocol/bytes.ts";

const decoder = new TextDecoder();

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

async function encode(response: Response, method = "GET"): Promise<string> {
  const encoder = new ResponseEncoder(response, {
    method,
    version: "HTTP/1.1",
    keepAlive: true,
    date: "Sat, 05 Dec 2026 00:00:00 GMT",
  });
  const pieces: Uint8Array[] = [];
  let segment: Uint8Array[] | null;
  while ((segment = await encoder.next()) !== null) pieces.push(...segment);
  return decoder.decode(concatBytes(pieces));
}

Deno.test("ResponseEncoder writes a static body as it writes the same bytes from a stream", async () => {
  const text = "Hello from m2fetch\n";
  const streamOf = () =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(text));
        controller.close();
      },
    });
  for (const method of ["GET", "HEAD"]) {
    const fromString = await encode(new Response(text), method);
    // A string body comes with its content type; the stream gets the same.
    const fromStream = await encode(
      new Response(streamOf(), {
        headers: { "content-type": "text/plain;charset=UTF-8" },
      }),
      method,
    );
    assert.equal(fromString, fromStream, method);
    assert.match(fromString, /\r\ncontent-length: 19\r\n/i);
    assert.equal(
      fromString.endsWith(method === "HEAD" ? "\r\n\r\n" : text),
      true,
    );
  }
  // Empty.
  assert.match(await encode(new Response("")), /content-length: 0\r\n\r\n$/i);
});
