import assert from "node:assert/strict";
import {
  type ResponseContext,
  ResponseEncoder,
} from "../../runtime/http/response_encoder.ts";
import {
  ALL_BYTES,
  assertSentence,
  bytes,
  latin1,
} from "../protocol/helpers.ts";

const DATE = "Thu, 01 Jan 1970 00:00:00 GMT";
const HTTP11: ResponseContext = {
  method: "GET",
  version: "HTTP/1.1",
  keepAlive: true,
  date: DATE,
};
const HTTP10: ResponseContext = {
  ...HTTP11,
  version: "HTTP/1.0",
  keepAlive: false,
};

function encoderFor(
  response: Response,
  context: Partial<ResponseContext> = {},
): ResponseEncoder {
  return new ResponseEncoder(response, { ...HTTP11, ...context });
}

/** Calls next() until it returns null; returns each segment's bytes. */
async function drain(encoder: ResponseEncoder): Promise<string[]> {
  const segments: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const pieces = await encoder.next();
    if (pieces === null) return segments;
    segments.push(pieces.map(latin1).join(""));
  }
  throw new Error("ResponseEncoder never finished");
}

async function encode(
  response: Response,
  context: Partial<ResponseContext> = {},
): Promise<string> {
  return (await drain(encoderFor(response, context))).join("");
}

/** A stream the test feeds by hand, recording cancel reasons. */
function manualStream(): {
  stream: ReadableStream<Uint8Array>;
  controller: ReadableStreamDefaultController<Uint8Array>;
  cancelled: unknown[];
} {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const cancelled: unknown[] = [];
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel(reason) {
      cancelled.push(reason);
    },
  });
  return { stream, controller, cancelled };
}

/** A stream that yields each chunk after a timer, like real I/O. */
function timedStream(chunks: (string | Uint8Array | Error)[]): ReadableStream<
  Uint8Array
> {
  let index = 0;
  let tick: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await new Promise((resolve) => tick = setTimeout(resolve, 1));
      if (index >= chunks.length) {
        controller.close();
        return;
      }
      const chunk = chunks[index++];
      if (chunk instanceof Error) {
        controller.error(chunk);
      } else {
        controller.enqueue(typeof chunk === "string" ? bytes(chunk) : chunk);
      }
    },
    // A pull waiting on its timer when the encoder cancels never resumes.
    cancel() {
      clearTimeout(tick);
    },
  }, { highWaterMark: 0 });
}

/** Decodes a chunked body, checking the framing as it goes. */
function dechunk(text: string): string {
  let body = "";
  let at = 0;
  while (true) {
    const eol = text.indexOf("\r\n", at);
    assert.ok(eol > at, `chunk size line at ${at}`);
    const size = parseInt(text.slice(at, eol), 16);
    assert.match(text.slice(at, eol), /^[0-9a-f]+$/);
    at = eol + 2;
    if (size === 0) {
      assert.equal(text.slice(at), "\r\n", "last chunk ends the body");
      return body;
    }
    body += text.slice(at, at + size);
    assert.equal(text.slice(at + size, at + size + 2), "\r\n");
    at += size + 2;
  }
}

async function assertRejects(
  promise: Promise<unknown>,
  check: (error: unknown) => void,
): Promise<void> {
  let caught: unknown = undefined;
  let rejected = false;
  try {
    await promise;
  } catch (error) {
    rejected = true;
    caught = error;
  }
  assert.ok(rejected, "expected the promise to reject");
  check(caught);
}

// --- known-length bodies ----------------------------------------------------

Deno.test("ResponseEncoder writes a known-length body with content-length", async () => {
  const encoder = encoderFor(new Response("hello"));
  assert.deepEqual(await drain(encoder), [
    "HTTP/1.1 200 OK\r\n" +
    "content-type: text/plain;charset=UTF-8\r\n" +
    `date: ${DATE}\r\n` +
    "content-length: 5\r\n\r\n" +
    "hello",
  ]);
  assert.equal(encoder.keepAlive, true);
  assert.equal(encoder.status, 200);
  assert.equal(encoder.bodyBytes, 5);
  assert.equal(await encoder.next(), null);
});

Deno.test("ResponseEncoder writes a binary body byte for byte", async () => {
  const pieces = await encoderFor(new Response(ALL_BYTES)).next();
  assert.ok(pieces !== null);
  const text = pieces.map(latin1).join("");
  assert.ok(text.includes("\r\ncontent-length: 256\r\n\r\n"));
  assert.equal(text.slice(-256), latin1(ALL_BYTES));
});

Deno.test("ResponseEncoder writes content-length: 0 for an empty body", async () => {
  assert.equal(
    await encode(new Response(null)),
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 0\r\n\r\n`,
  );
  assert.equal(
    await encode(new Response("")),
    "HTTP/1.1 200 OK\r\n" +
      "content-type: text/plain;charset=UTF-8\r\n" +
      `date: ${DATE}\r\ncontent-length: 0\r\n\r\n`,
  );
});

Deno.test("ResponseEncoder keeps content-length on HEAD and sends no body", async () => {
  const encoder = encoderFor(new Response("hello"), { method: "HEAD" });
  assert.deepEqual(await drain(encoder), [
    "HTTP/1.1 200 OK\r\n" +
    "content-type: text/plain;charset=UTF-8\r\n" +
    `date: ${DATE}\r\n` +
    "content-length: 5\r\n\r\n",
  ]);
  assert.equal(encoder.bodyBytes, 0);
});

Deno.test("ResponseEncoder cancels a streamed HEAD body and sends only the head", async () => {
  const { stream, cancelled } = manualStream();
  const encoder = encoderFor(new Response(stream), { method: "HEAD" });
  assert.deepEqual(await drain(encoder), [
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\n\r\n`,
  ]);
  assert.equal(cancelled.length, 1);
  assert.equal(encoder.keepAlive, true);
});

Deno.test("ResponseEncoder sends no body and no content-length for 204 and 304", async () => {
  assert.equal(
    await encode(new Response(null, { status: 204 })),
    `HTTP/1.1 204 No Content\r\ndate: ${DATE}\r\n\r\n`,
  );
  assert.equal(
    await encode(
      new Response(null, { status: 304, headers: { "content-length": "9" } }),
    ),
    `HTTP/1.1 304 Not Modified\r\ndate: ${DATE}\r\n\r\n`,
  );
});

Deno.test("ResponseEncoder sends no body and no content-length for 1xx", async () => {
  const request = new Request("http://localhost/ws", {
    headers: {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
    },
  });
  const encoder = encoderFor(Deno.upgradeWebSocket(request).response);
  const segments = await drain(encoder);
  assert.equal(segments.length, 1);
  assert.ok(segments[0].startsWith("HTTP/1.1 101 Switching Protocols\r\n"));
  assert.ok(segments[0].endsWith("\r\n\r\n"));
  assert.doesNotMatch(segments[0], /content-length|transfer-encoding/);
  assert.equal(encoder.status, 101);
});

// --- streaming bodies -------------------------------------------------------

Deno.test("ResponseEncoder chunks a streaming body on HTTP/1.1", async () => {
  const { stream, controller } = manualStream();
  const encoder = encoderFor(new Response(stream));
  assert.deepEqual((await encoder.next())?.map(latin1), [
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ntransfer-encoding: chunked\r\n\r\n`,
  ]);
  controller.enqueue(bytes("hello"));
  assert.deepEqual((await encoder.next())?.map(latin1), [
    "5\r\n",
    "hello",
    "\r\n",
  ]);
  controller.enqueue(bytes(" world"));
  controller.enqueue(bytes(", again"));
  assert.deepEqual((await encoder.next())?.map(latin1), [
    "6\r\n",
    " world",
    "\r\n",
    "7\r\n",
    ", again",
    "\r\n",
  ]);
  controller.close();
  assert.deepEqual((await encoder.next())?.map(latin1), ["0\r\n\r\n"]);
  assert.equal(await encoder.next(), null);
  assert.equal(encoder.bodyBytes, 18);
  assert.equal(encoder.keepAlive, true);
});

Deno.test("ResponseEncoder sends a timed stream as one valid chunked body", async () => {
  const text = await encode(
    new Response(timedStream(["a", "bc", bytes("\x00\xff"), "d".repeat(300)])),
  );
  const split = text.indexOf("\r\n\r\n") + 4;
  assert.equal(
    text.slice(0, split),
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ntransfer-encoding: chunked\r\n\r\n`,
  );
  assert.equal(dechunk(text.slice(split)), "abc\x00\xff" + "d".repeat(300));
});

Deno.test("ResponseEncoder delimits a streaming body by close on HTTP/1.0", async () => {
  const encoder = new ResponseEncoder(
    new Response(timedStream(["hello", " world"])),
    HTTP10,
  );
  assert.equal(
    (await drain(encoder)).join(""),
    `HTTP/1.0 200 OK\r\ndate: ${DATE}\r\n\r\nhello world`,
  );
  assert.equal(encoder.keepAlive, false);
});

Deno.test("ResponseEncoder gives up keep-alive for a close-delimited HTTP/1.0 stream", async () => {
  const encoder = new ResponseEncoder(new Response(timedStream(["x"])), {
    ...HTTP10,
    keepAlive: true,
  });
  const text = (await drain(encoder)).join("");
  assert.equal(text, `HTTP/1.0 200 OK\r\ndate: ${DATE}\r\n\r\nx`);
  assert.equal(encoder.keepAlive, false);
});

Deno.test("ResponseEncoder answers an HTTP/1.0 keep-alive request with connection: keep-alive", async () => {
  const encoder = new ResponseEncoder(new Response("hi"), {
    ...HTTP10,
    keepAlive: true,
  });
  assert.equal(
    (await drain(encoder)).join(""),
    "HTTP/1.0 200 OK\r\n" +
      "content-type: text/plain;charset=UTF-8\r\n" +
      `date: ${DATE}\r\n` +
      "content-length: 2\r\n" +
      "connection: keep-alive\r\n\r\nhi",
  );
  assert.equal(encoder.keepAlive, true);
});

Deno.test("ResponseEncoder writes connection: close for a Connection: close request", async () => {
  const encoder = encoderFor(new Response("hi"), { keepAlive: false });
  assert.equal(
    (await drain(encoder)).join(""),
    "HTTP/1.1 200 OK\r\n" +
      "content-type: text/plain;charset=UTF-8\r\n" +
      `date: ${DATE}\r\n` +
      "content-length: 2\r\n" +
      "connection: close\r\n\r\nhi",
  );
  assert.equal(encoder.keepAlive, false);
});

Deno.test("ResponseEncoder writes several set-cookie headers on separate lines", async () => {
  const headers = new Headers([["set-cookie", "a=1"], ["set-cookie", "b=2"]]);
  assert.equal(
    await encode(new Response(null, { headers })),
    "HTTP/1.1 200 OK\r\n" +
      "set-cookie: a=1\r\n" +
      "set-cookie: b=2\r\n" +
      `date: ${DATE}\r\ncontent-length: 0\r\n\r\n`,
  );
});

Deno.test("ResponseEncoder frames the body itself, but honours the handler's connection: close", async () => {
  const response = new Response("hi", {
    headers: {
      "transfer-encoding": "chunked",
      connection: "keep-alive",
      "content-type": "text/plain",
    },
  });
  const encoder = encoderFor(response);
  assert.equal(
    (await drain(encoder)).join(""),
    "HTTP/1.1 200 OK\r\n" +
      "content-type: text/plain\r\n" +
      `date: ${DATE}\r\n` +
      "content-length: 2\r\n\r\nhi",
  );
  assert.equal(encoder.keepAlive, true);
  const closing = encoderFor(
    new Response("hi", { headers: { connection: "close" } }),
  );
  assert.equal(
    (await drain(closing)).join(""),
    "HTTP/1.1 200 OK\r\n" +
      "content-type: text/plain;charset=UTF-8\r\n" +
      `date: ${DATE}\r\n` +
      "content-length: 2\r\nconnection: close\r\n\r\nhi",
  );
  assert.equal(closing.keepAlive, false);
});

Deno.test("ResponseEncoder adds date unless the handler set it", async () => {
  const own = "Fri, 04 Dec 2026 19:49:38 GMT";
  assert.equal(
    await encode(new Response(null, { headers: { date: own } })),
    `HTTP/1.1 200 OK\r\ndate: ${own}\r\ncontent-length: 0\r\n\r\n`,
  );
});

// --- declared content-length on a stream --------------------------------------

Deno.test("ResponseEncoder honours a declared content-length on a stream", async () => {
  const response = new Response(timedStream(["hello", " world"]), {
    headers: { "content-length": "11" },
  });
  const encoder = encoderFor(response);
  assert.equal(
    (await drain(encoder)).join(""),
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 11\r\n\r\nhello world`,
  );
  assert.equal(encoder.bodyBytes, 11);
});

Deno.test("ResponseEncoder rejects next() with RangeError for a stream shorter than its content-length", async () => {
  const response = new Response(timedStream(["hel"]), {
    headers: { "content-length": "5" },
  });
  const encoder = encoderFor(response);
  const head = await encoder.next();
  assert.ok(head !== null && latin1(head[0]).includes("content-length: 5\r\n"));
  let result: Uint8Array[] | null = [];
  await assertRejects(
    (async () => {
      while (result !== null) result = await encoder.next();
    })(),
    (error) => {
      assert.ok(error instanceof RangeError, String(error));
      assertSentence(error.message);
      assert.match(error.message, /ended after 3 of its 5 declared bytes/);
    },
  );
});

Deno.test("ResponseEncoder ends a stream's response at its declared content-length and cancels the rest, as deno serve does", async () => {
  let cancelled = false;
  const source = timedStream(["hello", " world"]);
  const reader = source.getReader();
  const response = new Response(
    new ReadableStream<Uint8Array>({
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        cancelled = true;
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 }),
    { headers: { "content-length": "5" } },
  );
  const encoder = encoderFor(response);
  // Once the declared bytes are out the response is complete: the next
  // request need not wait for the stream to end (or overrun).
  assert.equal(
    (await drain(encoder)).join(""),
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 5\r\n\r\nhello`,
  );
  assert.equal(encoder.bodyBytes, 5);
  assert.ok(encoder.keepAlive);
  assert.ok(cancelled, "the stream was not cancelled");
});

Deno.test("ResponseEncoder sends a segment that overruns its content-length up to that length and cancels the rest, as deno serve does", async () => {
  let cancelled = false;
  const response = new Response(
    new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("hello"));
        // Later, two chunks at once: together past the declared 12 bytes.
        setTimeout(() => {
          controller.enqueue(new TextEncoder().encode(" there"));
          controller.enqueue(new TextEncoder().encode(" world"));
        }, 20);
      },
      cancel() {
        cancelled = true;
      },
    }),
    { headers: { "content-length": "12" } },
  );
  const encoder = encoderFor(response);
  assert.equal(
    (await drain(encoder)).join(""),
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 12\r\n\r\nhello there `,
  );
  assert.equal(encoder.bodyBytes, 12);
  assert.ok(encoder.keepAlive);
  assert.ok(cancelled, "the stream was not cancelled");
});

Deno.test("ResponseEncoder sends a first segment past its content-length up to that length while the stream is open", async () => {
  const { stream, controller } = manualStream();
  controller.enqueue(new TextEncoder().encode("hello world"));
  const encoder = encoderFor(
    new Response(stream, { headers: { "content-length": "5" } }),
  );
  assert.equal(
    (await drain(encoder)).join(""),
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 5\r\n\r\nhello`,
  );
  assert.equal(encoder.status, 200);
  assert.equal(encoder.bodyBytes, 5);
});

// --- chunk handling and errors -------------------------------------------------

Deno.test("ResponseEncoder skips empty chunks", async () => {
  const empty = new Uint8Array(0);
  const text = await encode(
    new Response(timedStream([empty, "ab", empty, empty, "c", empty])),
  );
  assert.equal(
    text,
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ntransfer-encoding: chunked\r\n\r\n` +
      "2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
  );
  // An empty chunk ready at the start does not end a known-length body early.
  const { stream, controller } = manualStream();
  controller.enqueue(empty);
  controller.enqueue(bytes("xyz"));
  controller.enqueue(empty);
  controller.close();
  assert.equal(
    await encode(new Response(stream)),
    `HTTP/1.1 200 OK\r\ndate: ${DATE}\r\ncontent-length: 3\r\n\r\nxyz`,
  );
});

Deno.test("ResponseEncoder rejects next() when the stream errors mid-way", async () => {
  const failure = new Error("upstream broke");
  const encoder = encoderFor(
    new Response(timedStream(["one", "two", failure])),
  );
  const received: string[] = [];
  await assertRejects(
    (async () => {
      while (true) {
        const pieces = await encoder.next();
        if (pieces === null) break;
        received.push(pieces.map(latin1).join(""));
      }
    })(),
    (error) => assert.equal(error, failure),
  );
  assert.ok(received.join("").endsWith("3\r\none\r\n3\r\ntwo\r\n"));
  assert.doesNotMatch(received.join(""), /0\r\n\r\n$/);
});

Deno.test("ResponseEncoder sends a full segment before the failure that follows it", async () => {
  const failure = new Error("upstream broke");
  const { stream, controller } = manualStream();
  controller.enqueue(new TextEncoder().encode("start"));
  const encoder = encoderFor(new Response(stream));
  const head = (await encoder.next())!.map(latin1).join("");
  assert.match(head, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n5\r\nstart\r\n$/);
  controller.enqueue(new Uint8Array(256 * 1024).fill(0x61));
  controller.error(failure);
  const segment = (await encoder.next())!.map(latin1).join("");
  assert.equal(segment.length, "40000\r\n".length + 256 * 1024 + 2);
  await assertRejects(encoder.next(), (error) => assert.equal(error, failure));
});

Deno.test("ResponseEncoder sends the chunks that were ready with a failure before raising it", async () => {
  const failure = new Error("upstream reset");
  const { stream, controller } = manualStream();
  controller.enqueue(new TextEncoder().encode("first"));
  const encoder = encoderFor(new Response(stream), HTTP10);
  const head = (await encoder.next())!.map(latin1).join("");
  assert.match(head, /^HTTP\/1\.0 200 OK\r\n[\s\S]*\r\n\r\nfirst$/);
  controller.enqueue(new TextEncoder().encode("last words"));
  controller.error(failure);
  const segment = (await encoder.next())!.map(latin1).join("");
  assert.equal(segment, "last words");
  await assertRejects(encoder.next(), (error) => assert.equal(error, failure));
});

Deno.test("ResponseEncoder ends at its content-length when its last declared bytes come with a failure, and keeps the failure to report", async () => {
  const failure = new Error("upstream reset");
  const { stream, controller } = manualStream();
  controller.enqueue(new TextEncoder().encode("he"));
  const encoder = encoderFor(
    new Response(stream, { headers: { "content-length": "5" } }),
  );
  await encoder.next();
  assert.equal(encoder.failureAtEnd, null);
  controller.enqueue(new TextEncoder().encode("llo"));
  controller.error(failure);
  assert.equal((await encoder.next())!.map(latin1).join(""), "llo");
  assert.equal(await encoder.next(), null);
  assert.ok(encoder.keepAlive);
  // deno serve logs it though the client got the whole body.
  assert.deepEqual(encoder.failureAtEnd, { error: failure });
});

Deno.test("ResponseEncoder keeps no failure to report for a body cut short of its content-length", async () => {
  // The client leaves after a segment read with a failure: what went out
  // is short, so the failure is not one that followed a whole body.
  const failure = new Error("upstream reset");
  const { stream, controller } = manualStream();
  controller.enqueue(new TextEncoder().encode("he"));
  const encoder = encoderFor(
    new Response(stream, { headers: { "content-length": "5" } }),
  );
  await encoder.next();
  controller.enqueue(new TextEncoder().encode("l"));
  controller.error(failure);
  assert.equal((await encoder.next())!.map(latin1).join(""), "l");
  await encoder.cancel();
  assert.equal(encoder.bodyBytes, 3);
  assert.equal(encoder.failureAtEnd, null);
});

Deno.test("ResponseEncoder answers 500 in place of a body that errors before anything was sent", async () => {
  const failure = new Error("no body");
  let cancelled: unknown = null;
  const cases: [string, ReadableStream<Uint8Array>, string][] = [
    [
      "errors at once",
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.error(failure);
        },
      }),
      "GET",
    ],
    [
      "ready chunks, then an error",
      // The error comes once the chunk is read: errored in start(), the
      // stream would drop the chunk it queued.
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("part\n"));
        },
        pull(controller) {
          controller.error(failure);
        },
      }),
      "GET",
    ],
    [
      "a chunk that is not a Uint8Array",
      new ReadableStream<string>({
        start(controller) {
          controller.enqueue("text");
        },
        cancel(reason) {
          cancelled = reason;
        },
      }) as unknown as ReadableStream<Uint8Array>,
      "GET",
    ],
    [
      "errors at once, to HEAD",
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.error(failure);
        },
      }),
      "HEAD",
    ],
  ];
  for (const [label, stream, method] of cases) {
    const encoder = encoderFor(
      new Response(stream, { headers: { "x-kept": "no" } }),
      { method },
    );
    const text = (await encoder.next())!.map(latin1).join("");
    assert.equal(await encoder.next(), null, label);
    const body = method === "HEAD" ? "" : "Internal Server Error";
    assert.equal(
      text,
      "HTTP/1.1 500 Internal Server Error\r\n" +
        "content-type: text/plain;charset=UTF-8\r\n" +
        `date: ${DATE}\r\n` +
        "content-length: 21\r\nconnection: close\r\n\r\n" + body,
      label,
    );
    assert.equal(encoder.status, 500, label);
    assert.equal(encoder.keepAlive, false, label);
    assert.ok(encoder.bodyFailure !== null, label);
    if (label.startsWith("a chunk")) {
      const error = encoder.bodyFailure.error;
      assert.ok(error instanceof TypeError, String(error));
      assertSentence(error.message);
      assert.match(error.message, /not a Uint8Array/);
      assert.equal(cancelled, error, "the stream was not cancelled");
    } else {
      assert.equal(encoder.bodyFailure.error, failure, label);
    }
  }
});

Deno.test("ResponseEncoder splits a large ready body into segments", async () => {
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  const { stream, controller } = manualStream();
  for (let i = 0; i < 10; i++) controller.enqueue(chunk);
  controller.close();
  const encoder = encoderFor(new Response(stream));
  const segments = await drain(encoder);
  assert.ok(segments.length >= 3, `${segments.length} segments`);
  const text = segments.join("");
  const split = text.indexOf("\r\n\r\n") + 4;
  assert.equal(dechunk(text.slice(split)).length, 10 * 64 * 1024);
  assert.equal(encoder.bodyBytes, 10 * 64 * 1024);
});

Deno.test("ResponseEncoder gives a complete body over a segment its content-length, on HEAD too", async () => {
  const big = new Uint8Array(1_000_000).fill(0x62);
  const get = (await drain(encoderFor(new Response(big)))).join("");
  assert.match(get, /\r\ncontent-length: 1000000\r\n/);
  assert.doesNotMatch(get, /transfer-encoding/);
  assert.equal(get.length - (get.indexOf("\r\n\r\n") + 4), 1_000_000);
  const head = (await drain(
    encoderFor(new Response("x".repeat(300_000)), { method: "HEAD" }),
  )).join("");
  assert.match(head, /\r\ncontent-length: 300000\r\n/);
  assert.ok(head.endsWith("\r\n\r\n"));
});

// --- cancel ---------------------------------------------------------------------

Deno.test("ResponseEncoder.cancel() cancels the source stream mid-way", async () => {
  const { stream, controller, cancelled } = manualStream();
  const encoder = encoderFor(new Response(stream));
  await encoder.next();
  controller.enqueue(bytes("partial"));
  assert.deepEqual((await encoder.next())?.map(latin1), [
    "7\r\n",
    "partial",
    "\r\n",
  ]);
  const reason = new Error("client gone");
  await encoder.cancel(reason);
  assert.deepEqual(cancelled, [reason]);
  assert.equal(await encoder.next(), null);
});

Deno.test("ResponseEncoder.cancel() cancels the source stream before the first next()", async () => {
  const { stream, cancelled } = manualStream();
  const encoder = encoderFor(new Response(stream));
  await encoder.cancel("gone");
  assert.deepEqual(cancelled, ["gone"]);
  assert.equal(await encoder.next(), null);
});

Deno.test("ResponseEncoder.cancel() cancels a stream with a read in flight", async () => {
  const { stream, cancelled } = manualStream();
  const encoder = encoderFor(new Response(stream));
  await encoder.next(); // head; a read is now pending
  await encoder.cancel("gone");
  assert.deepEqual(cancelled, ["gone"]);
  assert.equal(await encoder.next(), null);
});

Deno.test("ResponseEncoder.cancel() is harmless after the body ended", async () => {
  const encoder = encoderFor(new Response("done"));
  await drain(encoder);
  await encoder.cancel("late");
  assert.equal(await encoder.next(), null);
});

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
    const fromString = await encode(new Response(text), { method });
    // A string body comes with its content type; the stream gets the same.
    const fromStream = await encode(
      new Response(streamOf(), {
        headers: { "content-type": "text/plain;charset=UTF-8" },
      }),
      { method },
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
