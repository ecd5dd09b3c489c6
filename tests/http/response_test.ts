import assert from "node:assert/strict";
import {
  allowsBody,
  chunkPieces,
  decodedByFetch,
  encodeResponseHead,
  httpDate,
  lastChunk,
  requestKeepsAlive,
  type ResponseHeadOptions,
} from "../../runtime/http/response.ts";
import { latin1 } from "../protocol/helpers.ts";

const DATE = "Thu, 01 Jan 1970 00:00:00 GMT";

function head(
  response: Response,
  options: Partial<ResponseHeadOptions> = {},
): {
  text: string;
  framing: string;
  contentLength: number;
  keepAlive: boolean;
} {
  const result = encodeResponseHead(response, {
    method: "GET",
    version: "HTTP/1.1",
    keepAlive: true,
    bodyLength: null,
    date: DATE,
    ...options,
  });
  return {
    text: latin1(result.head),
    framing: result.framing,
    contentLength: result.contentLength,
    keepAlive: result.keepAlive,
  };
}

function upgradeResponse(): Response {
  const request = new Request("http://localhost/ws", {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  return Deno.upgradeWebSocket(request).response;
}

// --- encodeResponseHead ---------------------------------------------------

Deno.test("encodeResponseHead() writes content-length for a known-length body", () => {
  assert.deepEqual(head(new Response("hello"), { bodyLength: 5 }), {
    text: "HTTP/1.1 200 OK\r\n" +
      "content-type: text/plain;charset=UTF-8\r\n" +
      `date: ${DATE}\r\n` +
      "content-length: 5\r\n\r\n",
    framing: "length",
    contentLength: 5,
    keepAlive: true,
  });
  assert.deepEqual(head(new Response(null), { bodyLength: 0 }), {
    text: `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 0\r\n\r\n`,
    framing: "length",
    contentLength: 0,
    keepAlive: true,
  });
});

Deno.test("encodeResponseHead() uses the canonical reason phrase", () => {
  const cases: [number, string][] = [
    [201, "Created"],
    [404, "Not Found"],
    [418, "I'm a teapot"],
    [500, "Internal Server Error"],
    [599, ""],
  ];
  for (const [status, reason] of cases) {
    const response = new Response(null, { status, statusText: "Custom" });
    assert.ok(
      head(response, { bodyLength: 0 }).text.startsWith(
        `HTTP/1.1 ${status} ${reason}\r\n`,
      ),
      `${status}`,
    );
  }
});

Deno.test("encodeResponseHead() writes every status line as deno serve 2.9 does", async () => {
  // Captured from `deno serve` answering `new Response(null, { status })`
  // for each status from 200 to 599: the text after "HTTP/1.1 NNN ".
  const captured: Record<string, string> = JSON.parse(
    await Deno.readTextFile(
      new URL("../fixtures/deno_serve_reasons.json", import.meta.url),
    ),
  );
  for (let status = 200; status <= 599; status++) {
    const text = head(new Response(null, { status }), { bodyLength: 0 }).text;
    assert.equal(
      text.slice(0, text.indexOf("\r\n")),
      `HTTP/1.1 ${status} ${captured[status]}`,
    );
  }
});

Deno.test("encodeResponseHead() honours a handler's connection: close", () => {
  const closing = new Response("bye", {
    headers: { connection: "Keep-Alive, Close" },
  });
  assert.deepEqual(head(closing, { bodyLength: 3 }), {
    text:
      `HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\ndate: ${DATE}\r\ncontent-length: 3\r\nconnection: close\r\n\r\n`,
    framing: "length",
    contentLength: 3,
    keepAlive: false,
  });
  // Other connection options stay m2fetch's business.
  const other = new Response("x", { headers: { connection: "closer" } });
  assert.equal(head(other, { bodyLength: 1 }).keepAlive, true);
});

Deno.test("encodeResponseHead() keeps content-length on HEAD and sends no body", () => {
  assert.deepEqual(
    head(new Response("hello"), { method: "HEAD", bodyLength: 5 }),
    {
      text: "HTTP/1.1 200 OK\r\n" +
        "content-type: text/plain;charset=UTF-8\r\n" +
        `date: ${DATE}\r\n` +
        "content-length: 5\r\n\r\n",
      framing: "none",
      contentLength: 5,
      keepAlive: true,
    },
  );
  // A declared length on a streamed HEAD response is kept too.
  const declared = new Response(null, { headers: { "content-length": "42" } });
  assert.deepEqual(head(declared, { method: "HEAD" }), {
    text: `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 42\r\n\r\n`,
    framing: "none",
    contentLength: 42,
    keepAlive: true,
  });
  // Over the (empty) body the handler returned for the HEAD, too.
  assert.deepEqual(head(declared, { method: "HEAD", bodyLength: 0 }), {
    text: `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 42\r\n\r\n`,
    framing: "none",
    contentLength: 42,
    keepAlive: true,
  });
  // Without any length a HEAD response has neither length nor chunking.
  assert.deepEqual(head(new Response(null), { method: "HEAD" }), {
    text: `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\n\r\n`,
    framing: "none",
    contentLength: 0,
    keepAlive: true,
  });
});

Deno.test("encodeResponseHead() sends no body and no content-length for 204 and 304", () => {
  for (
    const [status, reason] of [[204, "No Content"], [
      304,
      "Not Modified",
    ]] as const
  ) {
    const response = new Response(null, {
      status,
      headers: { "content-length": "10", etag: '"x"' },
    });
    for (const bodyLength of [0, null]) {
      assert.deepEqual(head(response, { bodyLength }), {
        text:
          `HTTP/1.1 ${status} ${reason}\r\netag: "x"\r\ndate: ${DATE}\r\n\r\n`,
        framing: "none",
        contentLength: 0,
        keepAlive: true,
      });
    }
  }
});

Deno.test("encodeResponseHead() sends no body and no content-length for 1xx", () => {
  const result = head(upgradeResponse(), { bodyLength: 0 });
  assert.ok(result.framing !== "length" && result.framing !== "chunked");
  assert.equal(result.contentLength, 0);
  assert.ok(result.text.startsWith("HTTP/1.1 101 Switching Protocols\r\n"));
  assert.doesNotMatch(result.text, /content-length|transfer-encoding/);
  assert.match(
    result.text,
    /\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/,
  );
  assert.ok(result.text.endsWith("\r\n\r\n"));
});

Deno.test("encodeResponseHead() keeps Upgrade and Connection on a 101", () => {
  // RFC 9110 §15.2.2: a 101 must say which protocol the connection switches to.
  assert.equal(
    head(upgradeResponse(), { bodyLength: 0 }).text,
    "HTTP/1.1 101 Switching Protocols\r\n" +
      "connection: Upgrade\r\n" +
      "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
      "upgrade: websocket\r\n" +
      `date: ${DATE}\r\n\r\n`,
  );
});

Deno.test("encodeResponseHead() chunks a stream on HTTP/1.1", () => {
  assert.deepEqual(head(new Response("x")), {
    text: "HTTP/1.1 200 OK\r\n" +
      "content-type: text/plain;charset=UTF-8\r\n" +
      `date: ${DATE}\r\n` +
      "transfer-encoding: chunked\r\n\r\n",
    framing: "chunked",
    contentLength: 0,
    keepAlive: true,
  });
});

Deno.test("encodeResponseHead() delimits a stream by close on HTTP/1.0", () => {
  for (const keepAlive of [false, true]) {
    assert.deepEqual(
      head(new Response("x"), { version: "HTTP/1.0", keepAlive }),
      {
        text: "HTTP/1.0 200 OK\r\n" +
          "content-type: text/plain;charset=UTF-8\r\n" +
          `date: ${DATE}\r\n\r\n`,
        framing: "close",
        contentLength: 0,
        keepAlive: false,
      },
    );
  }
});

Deno.test("encodeResponseHead() answers an HTTP/1.0 keep-alive request with connection: keep-alive", () => {
  assert.deepEqual(
    head(new Response("hello"), {
      version: "HTTP/1.0",
      keepAlive: true,
      bodyLength: 5,
    }),
    {
      text: "HTTP/1.0 200 OK\r\n" +
        "content-type: text/plain;charset=UTF-8\r\n" +
        `date: ${DATE}\r\n` +
        "content-length: 5\r\n" +
        "connection: keep-alive\r\n\r\n",
      framing: "length",
      contentLength: 5,
      keepAlive: true,
    },
  );
  // Without keep-alive HTTP/1.0 closes by default: no header needed.
  assert.equal(
    head(new Response(null), {
      version: "HTTP/1.0",
      keepAlive: false,
      bodyLength: 0,
    }).text,
    `HTTP/1.0 200 OK\r\ndate: ${DATE}\r\ncontent-length: 0\r\n\r\n`,
  );
});

Deno.test("encodeResponseHead() writes connection: close when the request asked to close", () => {
  assert.deepEqual(
    head(new Response(null), { keepAlive: false, bodyLength: 0 }),
    {
      text:
        `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`,
      framing: "length",
      contentLength: 0,
      keepAlive: false,
    },
  );
  assert.equal(
    head(new Response("x"), { keepAlive: false }).text,
    "HTTP/1.1 200 OK\r\n" +
      "content-type: text/plain;charset=UTF-8\r\n" +
      `date: ${DATE}\r\n` +
      "transfer-encoding: chunked\r\n" +
      "connection: close\r\n\r\n",
  );
});

Deno.test("encodeResponseHead() writes each set-cookie on its own line", () => {
  const headers = new Headers();
  headers.append("set-cookie", "a=1; Path=/");
  headers.append("set-cookie", "b=2, with comma");
  headers.append("x-list", "one");
  headers.append("x-list", "two");
  assert.equal(
    head(new Response(null, { headers }), { bodyLength: 0 }).text,
    "HTTP/1.1 200 OK\r\n" +
      "set-cookie: a=1; Path=/\r\n" +
      "set-cookie: b=2, with comma\r\n" +
      "x-list: one, two\r\n" +
      `date: ${DATE}\r\n` +
      "content-length: 0\r\n\r\n",
  );
});

Deno.test("encodeResponseHead() drops framing and connection headers the handler set", () => {
  const response = new Response(null, {
    headers: {
      "transfer-encoding": "chunked",
      connection: "keep-alive, x-custom",
      "keep-alive": "timeout=5",
      upgrade: "h2c",
      "content-length": "999",
      "x-kept": "yes",
    },
  });
  assert.equal(
    head(response, { bodyLength: 3 }).text,
    `HTTP/1.1 200 OK\r\nx-kept: yes\r\ndate: ${DATE}\r\ncontent-length: 3\r\n\r\n`,
  );
});

Deno.test("encodeResponseHead() adds date unless the handler set one", () => {
  const own = "Fri, 04 Dec 2026 19:49:38 GMT";
  const text = head(new Response(null, { headers: { Date: own } }), {
    bodyLength: 0,
  }).text;
  assert.equal(
    text,
    `HTTP/1.1 200 OK\r\ndate: ${own}\r\ncontent-length: 0\r\n\r\n`,
  );
  assert.equal(text.match(/date:/g)?.length, 1);
});

Deno.test("encodeResponseHead() honours a declared content-length on a stream", () => {
  const response = new Response("x", { headers: { "content-length": "5" } });
  assert.deepEqual(head(response), {
    text: "HTTP/1.1 200 OK\r\n" +
      "content-type: text/plain;charset=UTF-8\r\n" +
      `date: ${DATE}\r\n` +
      "content-length: 5\r\n\r\n",
    framing: "length",
    contentLength: 5,
    keepAlive: true,
  });
  // A known body length wins over the declared one.
  assert.equal(head(response, { bodyLength: 1 }).contentLength, 1);
});

Deno.test("encodeResponseHead() chunks a stream whose declared content-length is not a number", () => {
  for (
    const value of [
      "abc",
      "-1",
      "1.5",
      "1e3",
      "0x10",
      "1, 2",
      "9999999999999999",
    ]
  ) {
    const response = new Response("x", {
      headers: { "content-length": value },
    });
    assert.equal(head(response).framing, "chunked", value);
  }
  const spaced = new Response("x", { headers: { "content-length": " 7 " } });
  assert.equal(head(spaced).contentLength, 7);
});

Deno.test("encodeResponseHead() writes header bytes 0x80-0xFF as single bytes", () => {
  const response = new Response(null, {
    headers: { "x-latin1": "caf\u00e9", "x-utf8": "caf\u00c3\u00a9" },
  });
  const { head: bytes } = encodeResponseHead(response, {
    method: "GET",
    version: "HTTP/1.1",
    keepAlive: true,
    bodyLength: 0,
    date: DATE,
  });
  const text = latin1(bytes);
  assert.equal(bytes.length, text.length);
  assert.ok(text.includes("x-latin1: caf\u00e9\r\n"));
  assert.ok(text.includes("x-utf8: caf\u00c3\u00a9\r\n"));
  assert.equal(bytes[text.indexOf("caf\u00e9") + 3], 0xe9);
});

Deno.test("encodeResponseHead() refuses a header value with a control byte HTTP/1.1 forbids", () => {
  // Headers refuses NUL, CR and LF only; a handler copying decoded input
  // (a query parameter) into a header can carry any other control byte.
  for (const byte of [0x01, 0x08, 0x0b, 0x0c, 0x1b, 0x1f, 0x7f]) {
    const value = `a${String.fromCharCode(byte)}b`;
    const response = new Response(null, { headers: { "x-echo": value } });
    assert.throws(
      () => head(response, { bodyLength: 0 }),
      {
        name: "TypeError",
        message:
          `Cannot send the response header "x-echo": its value holds the control byte 0x${
            byte.toString(16).padStart(2, "0")
          }, which HTTP/1.1 forbids`,
      },
    );
  }
  // TAB and bytes from 0x80 are field content.
  const allowed = new Response(null, { headers: { "x-ok": "a\tb\u00e9" } });
  assert.ok(head(allowed, { bodyLength: 0 }).text.includes("x-ok: a\tb\u00e9"));
});

Deno.test("encodeResponseHead() answers any version other than HTTP/1.0 as HTTP/1.1", () => {
  assert.ok(
    head(new Response(null), { version: "HTTP/2", bodyLength: 0 }).text
      .startsWith("HTTP/1.1 200 OK\r\n"),
  );
});

// --- helpers ---------------------------------------------------------------

Deno.test("allowsBody() is false for HEAD, 1xx, 204 and 304", () => {
  assert.equal(allowsBody(200, "GET"), true);
  assert.equal(allowsBody(205, "POST"), true);
  assert.equal(allowsBody(404, "DELETE"), true);
  assert.equal(allowsBody(200, "HEAD"), false);
  assert.equal(allowsBody(100, "GET"), false);
  assert.equal(allowsBody(101, "GET"), false);
  assert.equal(allowsBody(199, "GET"), false);
  assert.equal(allowsBody(204, "GET"), false);
  assert.equal(allowsBody(304, "GET"), false);
});

Deno.test("requestKeepsAlive() follows the HTTP/1.0 and HTTP/1.1 defaults", () => {
  assert.equal(requestKeepsAlive("HTTP/1.1", undefined), true);
  assert.equal(requestKeepsAlive("HTTP/1.1", "close"), false);
  assert.equal(requestKeepsAlive("HTTP/1.1", "Close"), false);
  assert.equal(requestKeepsAlive("HTTP/1.1", "Upgrade, close"), false);
  assert.equal(requestKeepsAlive("HTTP/1.1", ["keep-alive", "close"]), false);
  assert.equal(requestKeepsAlive("HTTP/1.1", "Upgrade"), true);
  assert.equal(requestKeepsAlive("HTTP/1.0", undefined), false);
  assert.equal(requestKeepsAlive("HTTP/1.0", "keep-alive"), true);
  assert.equal(requestKeepsAlive("HTTP/1.0", "Keep-Alive"), true);
  assert.equal(requestKeepsAlive("HTTP/1.0", ["x", " keep-alive "]), true);
  assert.equal(requestKeepsAlive("HTTP/1.0", "keep-alive, close"), false);
  assert.equal(requestKeepsAlive("HTTP/1.0", "closed"), false);
});

Deno.test("chunkPieces() frames data and skips empty chunks", () => {
  const data = new Uint8Array(300).fill(0x61);
  const pieces = chunkPieces(data);
  assert.equal(pieces.length, 3);
  assert.equal(latin1(pieces[0]), "12c\r\n");
  assert.equal(pieces[1], data);
  assert.equal(latin1(pieces[2]), "\r\n");
  assert.deepEqual(chunkPieces(new Uint8Array(0)), []);
  assert.equal(latin1(lastChunk()), "0\r\n\r\n");
});

Deno.test("httpDate() formats an IMF-fixdate and caches per second", () => {
  assert.equal(httpDate(0), DATE);
  assert.equal(httpDate(999), DATE);
  assert.equal(httpDate(1000), "Thu, 01 Jan 1970 00:00:01 GMT");
  assert.equal(httpDate(1796413778000), "Fri, 04 Dec 2026 19:49:38 GMT");
  assert.match(
    httpDate(),
    /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/,
  );
});

Deno.test("a body fetch() decompressed goes out without the upstream's content-encoding and length", async () => {
  const plain = "hello world ".repeat(1000);
  const gzipped = await new Response(
    new Blob([plain]).stream().pipeThrough(new CompressionStream("gzip")),
  ).arrayBuffer();
  await using upstream = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    () =>
      new Response(gzipped, {
        headers: { "content-encoding": "gzip", "x-upstream": "yes" },
      }),
  );
  const fetched = await fetch(`http://127.0.0.1:${upstream.addr.port}/`);
  assert.equal(fetched.headers.get("content-encoding"), "gzip");
  assert.ok(decodedByFetch(fetched));
  const { head } = encodeResponseHead(fetched, {
    method: "GET",
    version: "HTTP/1.1",
    keepAlive: true,
    bodyLength: plain.length,
    date: "Thu, 01 Jan 1970 00:00:00 GMT",
  });
  const text = new TextDecoder().decode(head);
  assert.doesNotMatch(text, /content-encoding/);
  assert.match(text, new RegExp(`\r\ncontent-length: ${plain.length}\r\n`));
  assert.match(text, /\r\nx-upstream: yes\r\n/);
  assert.equal(await fetched.text(), plain);
  // A handler's own compressed body keeps its header.
  assert.equal(
    decodedByFetch(
      new Response(gzipped, { headers: { "content-encoding": "gzip" } }),
    ),
    false,
  );
});
