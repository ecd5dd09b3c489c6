import assert from "node:assert/strict";
import {
  HttpParseError,
  parseResponse,
  parseResponses,
  toFetchResponse,
} from "../../runtime/http/parse_response.ts";
import { ResponseEncoder } from "../../runtime/http/response_encoder.ts";

const encoder = new TextEncoder();
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => Uint8Array.from(value, (c) => c.charCodeAt(0));

function assertParseError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof HttpParseError, `got ${error}`);
    assert.ok(error instanceof SyntaxError);
    assert.equal(error.name, "HttpParseError");
    assert.match(error.message, /^Cannot parse /);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("parseResponse: content-length body", () => {
  const response = parseResponse(
    encoder.encode(
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
    ),
  );
  assert.ok(response);
  assert.equal(response.version, "HTTP/1.1");
  assert.equal(response.status, 200);
  assert.equal(response.statusText, "OK");
  assert.deepEqual(response.headers, [
    ["content-type", "text/plain"],
    ["content-length", "5"],
  ]);
  assert.equal(response.framing, "length");
  assert.equal(text(response.body), "hello");
  assert.equal(response.complete, true);
  assert.equal(response.end, 69);
});

Deno.test("parseResponse: incomplete head is null, incomplete body is partial", () => {
  assert.equal(
    parseResponse(encoder.encode("HTTP/1.1 200 OK\r\nA: b\r\n")),
    null,
  );
  const partial = parseResponse(
    encoder.encode("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"),
  );
  assert.equal(partial?.complete, false);
  assert.equal(text(partial!.body), "abc");
});

Deno.test("parseResponse: chunked body with extensions and trailers", () => {
  const raw = encoder.encode(
    "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n" +
      "5;name=x\r\nhello\r\n1A\r\n" + "z".repeat(26) + "\r\n" +
      "0\r\nx-sum: 42\r\n\r\nNEXT",
  );
  const response = parseResponse(raw);
  assert.ok(response);
  assert.equal(response.framing, "chunked");
  assert.equal(text(response.body), "hello" + "z".repeat(26));
  assert.deepEqual(response.trailers, [["x-sum", "42"]]);
  assert.equal(response.complete, true);
  assert.equal(text(raw.subarray(response.end)), "NEXT");
});

Deno.test("parseResponse: a chunked body cut off keeps what arrived", () => {
  const head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
  for (
    const [tail, body] of [
      ["", ""],
      ["5\r\nhel", "hel"],
      ["5\r\nhello", "hello"],
      ["5\r\nhello\r\n", "hello"],
      ["5\r\nhello\r\n0\r\n", "hello"],
    ]
  ) {
    const response = parseResponse(encoder.encode(head + tail));
    assert.equal(response?.complete, false, JSON.stringify(tail));
    assert.equal(text(response!.body), body, JSON.stringify(tail));
  }
});

Deno.test("parseResponse: close-delimited body needs the close", () => {
  const raw = encoder.encode("HTTP/1.0 200 OK\r\n\r\nuntil the end");
  const open = parseResponse(raw);
  assert.equal(open?.framing, "close");
  assert.equal(open?.complete, false);
  const closed = parseResponse(raw, { closed: true });
  assert.equal(closed?.complete, true);
  assert.equal(text(closed!.body), "until the end");
  // A last coding other than chunked is also delimited by the close.
  const gzip = parseResponse(
    encoder.encode("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nxy"),
    { closed: true },
  );
  assert.equal(gzip?.framing, "close");
  assert.equal(text(gzip!.body), "xy");
});

Deno.test("parseResponse: no body for HEAD, 1xx, 204 and 304", () => {
  const head = parseResponse(
    encoder.encode("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
    { method: "HEAD" },
  );
  assert.equal(head?.framing, "none");
  assert.equal(head?.body.length, 0);
  assert.equal(head?.complete, true);
  for (const status of ["100 Continue", "204 No Content", "304 Not Modified"]) {
    const response = parseResponse(
      encoder.encode(`HTTP/1.1 ${status}\r\n\r\nHTTP/1.1`),
    );
    assert.equal(response?.framing, "none", status);
    assert.equal(response?.end, `HTTP/1.1 ${status}\r\n\r\n`.length, status);
  }
});

Deno.test("parseResponse: status line without a reason, values trimmed, byte strings", () => {
  const response = parseResponse(
    bytes(
      "HTTP/1.1 599\r\nx-a:  v \t\r\nx-b: caf\xe9\r\ncontent-length: 0\r\n\r\n",
    ),
  );
  assert.equal(response?.status, 599);
  assert.equal(response?.statusText, "");
  assert.deepEqual(response?.headers.slice(0, 2), [
    ["x-a", "v"],
    ["x-b", "caf\xe9"],
  ]);
});

Deno.test("parseResponse: equal repeated content-lengths are one length", () => {
  const response = parseResponse(
    encoder.encode(
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2, 2\r\n\r\nok",
    ),
  );
  assert.equal(text(response!.body), "ok");
});

Deno.test("parseResponse: rejects malformed responses", () => {
  assertParseError(
    () => parseResponse(encoder.encode("HTTP/2 200 OK\r\n\r\n")),
    /status line "HTTP\/2 200 OK" is not "HTTP\/1.x NNN reason"/,
  );
  assertParseError(
    () => parseResponse(encoder.encode("HTTP/1.1 200 OK\nA: b\r\n\r\n")),
    /bare LF/,
  );
  assertParseError(
    () => parseResponse(encoder.encode("\r\nHTTP/1.1 200 OK\r\n\r\n")),
    /starts with an empty line/,
  );
  assertParseError(
    () => parseResponse(encoder.encode("HTTP/1.1 200 OK\r\nno colon\r\n\r\n")),
    /line "no colon" is not "name: value"/,
  );
  assertParseError(
    () =>
      parseResponse(encoder.encode("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n")),
    /obsolete line folding/,
  );
  assertParseError(
    () =>
      parseResponse(
        encoder.encode(
          "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        ),
      ),
    /content-length "1, 2" is not one byte count/,
  );
  assertParseError(
    () =>
      parseResponse(
        encoder.encode(
          "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ),
      ),
    /chunk size "zz" is not a hexadecimal number/,
  );
  assertParseError(
    () =>
      parseResponse(
        encoder.encode(
          "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n",
        ),
      ),
    /the 2-byte chunk is not followed by CRLF/,
  );
});

Deno.test("parseResponses: pipelined responses pair with request methods", () => {
  const raw = encoder.encode(
    "HTTP/1.1 100 Continue\r\n\r\n" +
      "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n" +
      "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nhi" +
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\n",
  );
  const responses = parseResponses(raw, ["HEAD", "POST", "GET"], false);
  assert.deepEqual(responses.map((r) => r.status), [100, 200, 201, 200]);
  assert.equal(responses[1].body.length, 0);
  assert.equal(text(responses[2].body), "hi");
  assert.equal(responses[3].complete, false);
});

Deno.test("parseResponses: stops after a 101", () => {
  const raw = encoder.encode(
    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n\x81\x02hi",
  );
  const responses = parseResponses(raw, ["GET"], false);
  assert.equal(responses.length, 1);
  assert.equal(responses[0].status, 101);
});

Deno.test("toFetchResponse: builds a Response; null-body statuses stay null", async () => {
  const response = toFetchResponse(
    parseResponse(
      encoder.encode(
        "HTTP/1.1 404 Not Found\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 4\r\n\r\nnope",
      ),
    )!,
  );
  assert.equal(response.status, 404);
  assert.equal(response.statusText, "Not Found");
  assert.deepEqual(response.headers.getSetCookie(), ["a=1", "b=2"]);
  assert.equal(await response.text(), "nope");
  const empty = toFetchResponse(
    parseResponse(encoder.encode("HTTP/1.1 204 No Content\r\n\r\n"))!,
  );
  assert.equal(empty.body, null);
  assert.throws(
    () =>
      toFetchResponse(
        parseResponse(
          encoder.encode("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        )!,
      ),
    /Cannot build a Response with status 101: the Fetch API only allows 200 to 599/,
  );
});

Deno.test("parseResponse reads back what ResponseEncoder writes", async () => {
  const cases: [Response, string, string][] = [
    [new Response("fixed"), "GET", "HTTP/1.1"],
    [
      new Response(
        new ReadableStream({
          async pull(controller) {
            await new Promise((resolve) => setTimeout(resolve, 0));
            controller.enqueue(encoder.encode("streamed "));
            controller.close();
          },
        }),
      ),
      "GET",
      "HTTP/1.1",
    ],
    [new Response("old"), "GET", "HTTP/1.0"],
  ];
  for (const [response, method, version] of cases) {
    const expected = await response.clone().text();
    const out = new ResponseEncoder(response, {
      method,
      version,
      keepAlive: version === "HTTP/1.1",
      date: "Thu, 01 Jan 1970 00:00:00 GMT",
    });
    const pieces: Uint8Array[] = [];
    let segment: Uint8Array[] | null;
    while ((segment = await out.next()) !== null) pieces.push(...segment);
    const raw = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const piece of pieces) {
      raw.set(piece, at);
      at += piece.length;
    }
    const parsed = parseResponse(raw, { method, closed: true });
    assert.equal(parsed?.complete, true, `${version} ${expected}`);
    assert.equal(parsed?.version, version);
    assert.equal(text(parsed!.body), expected);
    assert.equal(parsed?.end, raw.length);
  }
});
