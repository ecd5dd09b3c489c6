import assert from "node:assert/strict";
import {
  buildNotice,
  buildRequestMessage,
  buildWebSocketMessage,
  runHandler,
} from "@m2fetch/m2fetch/testing";
import { upgradeWebSocket } from "@m2fetch/m2fetch";
import {
  DEFAULT_SENDER,
  MemoryTransport,
  mongrel2Info,
  parseMessage,
  parseNotice,
  parseReply,
  type RequestFields,
  type RequestMessageOptions,
  type WebSocketFrameFields,
} from "@m2fetch/m2fetch/testing";
import * as helloModule from "../examples/hello.ts";
import { toRequest } from "../runtime/http/request.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const latin1 = (bytes: Uint8Array) =>
  Array.from(bytes, (byte) => String.fromCharCode(byte)).join("");
const bytesOf = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

// ---------------------------------------------------------------------------
// docs/testing.md: the code blocks there are copied from this section.

const app = {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (request.method === "POST") {
      return new Response(`got ${await request.text()}`, { status: 201 });
    }
    if (url.pathname === "/events") {
      let n = 0;
      return new Response(
        new ReadableStream({
          pull(controller) {
            if (request.signal.aborted) return controller.close();
            controller.enqueue(new TextEncoder().encode(`event ${n++}\n`));
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    }
    return Response.json({
      name: url.searchParams.get("name"),
      tags: request.headers.get("x-tag"),
    });
  },
} satisfies Deno.ServeDefaultExport;

Deno.test("app answers a GET with a query", async () => {
  const message = await buildRequestMessage("/hello?name=ada");
  const run = await runHandler(app, message);
  assert.equal(run.response.status, 200);
  assert.deepEqual(await run.response.json(), { name: "ada", tags: null });
});

Deno.test("app reads a POST body and repeated headers", async () => {
  const message = await buildRequestMessage(
    {
      method: "POST",
      url: "/notes",
      headers: [["x-tag", "a"], ["x-tag", "b"]],
      body: "hello",
    },
    { format: "json" },
  );
  const run = await runHandler(app, message);
  assert.equal(run.response.status, 201);
  assert.equal(await run.response.text(), "got hello");
});

Deno.test("app stops streaming when the client leaves", async () => {
  let aborted = false;
  const run = await runHandler(
    (request: Request) => {
      request.signal.onabort = () => aborted = true;
      return app.fetch(request);
    },
    await buildRequestMessage("/events"),
    {
      // Called for each reply m2fetch sends: after the first one, the
      // client disconnects.
      onReply(_reply, { deliver, replies }) {
        if (replies.length === 1) deliver(buildNotice("disconnect"));
      },
    },
  );
  assert.ok(aborted);
  assert.equal(run.complete, false);
  assert.equal(run.response.headers.get("content-type"), "text/event-stream");
});

Deno.test("a handler module can be given by path", async () => {
  // m2fetch's examples/hello.ts, seen from its tests/ directory; in an app
  // made by init, new URL("./app.ts", import.meta.url) (its answer differs).
  const url = new URL("../examples/hello.ts", import.meta.url);
  const run = await runHandler(url, await buildRequestMessage("/"));
  assert.equal(await run.response.text(), "Hello from m2fetch\n");
});

Deno.test("an upload mongrel2 spooled to a file", async () => {
  // mongrel2 writes a large body to a file named after upload.temp_store
  // (XXXXXX filled in), then sends an upload-start and an upload-done
  // message naming it. The server deletes the file after the request.
  const dir = await Deno.makeTempDir();
  const path = `${dir}/upload.Ab12Cd`;
  await Deno.writeTextFile(path, "a large body");
  const fields = {
    method: "POST",
    url: "/notes",
    headers: { "content-length": "12" },
  };
  const run = await runHandler(app, [
    await buildRequestMessage(fields, { upload: { path, stage: "start" } }),
    await buildRequestMessage(fields, { upload: { path, stage: "done" } }),
  ], {
    server: { uploads: { store: { template: `${dir}/upload.XXXXXX` } } },
  });
  assert.equal(await run.response.text(), "got a large body");
  await Deno.remove(dir, { recursive: true });
});

const handshake = {
  url: "/chat",
  headers: {
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
  },
};

Deno.test("a WebSocket echoes, then closes", async () => {
  const run = await runHandler(
    (request: Request) => {
      const { socket, response } = upgradeWebSocket(request);
      socket.onmessage = (event) => socket.send(`echo ${event.data}`);
      return response;
    },
    [
      await buildRequestMessage(handshake), // mongrel2's WEBSOCKET_HANDSHAKE
      await buildWebSocketMessage(handshake, "hi"),
      await buildWebSocketMessage(handshake, { opcode: "close", code: 1000 }),
    ],
  );
  assert.equal(run.parsed[0].status, 101);
  assert.deepEqual(run.frames, [
    { type: "text", data: "echo hi" },
    { type: "close", code: 1000, reason: "" },
  ]);
});

// docs/testing.md: end of the copied section.
// ---------------------------------------------------------------------------

Deno.test("docs/testing.md shows only code that this file runs", async () => {
  const docs = await Deno.readTextFile(
    new URL("../docs/testing.md", import.meta.url),
  );
  const source = await Deno.readTextFile(new URL(import.meta.url));
  const blocks = [...docs.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 3, "docs/testing.md has ts code blocks");
  for (const block of blocks) {
    assert.ok(
      source.includes(block),
      `this test file runs the block:\n${block}`,
    );
  }
});

// --- runHandler on the real server ----------------------------------------

for (const format of ["json", "tnetstring"] as const) {
  Deno.test(`runHandler: GET with a query (${format})`, async () => {
    let seen: Request | undefined;
    const run = await runHandler((request: Request) => {
      seen = request;
      return Response.json(
        Object.fromEntries(new URL(request.url).searchParams),
      );
    }, await buildRequestMessage("/search?q=deno&page=2", { format }));
    assert.equal(seen?.method, "GET");
    assert.equal(seen?.url, "http://localhost/search?q=deno&page=2");
    assert.equal(mongrel2Info(seen!)?.connectionId, "1");
    assert.deepEqual(await run.response.json(), { q: "deno", page: "2" });
    assert.equal(run.complete, true);
    assert.equal(run.closed, false);
  });

  Deno.test(`runHandler: POST with a body (${format})`, async () => {
    const body = Uint8Array.from({ length: 256 }, (_, i) => i);
    const run = await runHandler(
      async (request: Request) => {
        const received = new Uint8Array(await request.arrayBuffer());
        return new Response(received.toReversed(), {
          headers: {
            "x-length": request.headers.get("content-length") ?? "",
            "x-type": request.headers.get("content-type") ?? "",
          },
        });
      },
      await buildRequestMessage(
        new Request("http://example.com/upload", {
          method: "POST",
          body,
          headers: { "content-type": "application/octet-stream" },
        }),
        { format },
      ),
    );
    assert.equal(run.response.headers.get("x-length"), "256");
    assert.equal(
      run.response.headers.get("x-type"),
      "application/octet-stream",
    );
    assert.deepEqual(
      new Uint8Array(await run.response.arrayBuffer()),
      body.toReversed(),
    );
  });

  Deno.test(`runHandler: repeated headers reach req.headers (${format})`, async () => {
    const run = await runHandler(
      (request: Request) =>
        Response.json({
          dup: request.headers.get("x-dup"),
          cookie: request.headers.get("cookie"),
          xff: request.headers.get("x-forwarded-for"),
        }),
      await buildRequestMessage({
        url: "/dup",
        headers: {
          "X-Dup": ["one", "two", "three"],
          cookie: ["a=1", "b=2"],
          "x-forwarded-for": "10.9.9.9",
        },
      }, { format, remoteAddr: "192.0.2.7" }),
    );
    assert.deepEqual(await run.response.json(), {
      dup: "one, two, three",
      cookie: "a=1; b=2",
      xff: "192.0.2.7",
    });
  });
}

Deno.test("runHandler: a stream over 100 KiB completes through credits", async () => {
  const size = 300 * 1024;
  const piece = Uint8Array.from({ length: 10 * 1024 }, (_, i) => i % 251);
  let sent = 0;
  const run = await runHandler(
    () =>
      new Response(
        new ReadableStream({
          async pull(controller) {
            // A real stream: each piece is produced later.
            await new Promise((resolve) => setTimeout(resolve, 0));
            if (sent >= size) return controller.close();
            controller.enqueue(piece.slice());
            sent += piece.length;
          },
        }),
      ),
    await buildRequestMessage("/big"),
  );
  assert.equal(run.complete, true);
  assert.equal(run.response.headers.get("transfer-encoding"), "chunked");
  const body = new Uint8Array(await run.response.arrayBuffer());
  assert.equal(body.length, size);
  for (let i = 0; i < size; i += piece.length) {
    assert.deepEqual(body.subarray(i, i + piece.length), piece);
  }
  // mongrel2 kills a client whose reply exceeds its 100 KiB window.
  for (const reply of run.replies) {
    const { body } = parseReply(reply);
    assert.ok(body.length <= 102400, `reply of ${body.length} bytes fits`);
  }
  assert.ok(run.replies.length >= 4, `${run.replies.length} replies`);
});

Deno.test("runHandler: a large in-memory body is split into credit-sized replies", async () => {
  const body = new Uint8Array(250_000).fill(0x61);
  const run = await runHandler(
    () => new Response(body),
    await buildRequestMessage("/blob", { format: "json" }),
  );
  assert.equal(run.response.headers.get("content-length"), "250000");
  assert.equal((await run.response.arrayBuffer()).byteLength, 250_000);
  for (const reply of run.replies) {
    assert.ok(parseReply(reply).body.length <= 102400);
  }
});

Deno.test("runHandler: credits past mongrel2's window never let a reply grow past it", async () => {
  // A stray credits notice (an old client's, on an id mongrel2 reused)
  // must not let m2fetch write more than the 100 KiB mongrel2 holds.
  let notified!: () => void;
  const stray = new Promise<void>((resolve) => notified = resolve);
  const run = await runHandler(
    async () => {
      await stray;
      return new Response(new Uint8Array(250_000).fill(0x61));
    },
    await buildRequestMessage("/blob"),
    {
      script({ deliver }) {
        deliver(buildNotice("credits", { credits: 102400 }));
        notified();
      },
    },
  );
  assert.equal((await run.response.arrayBuffer()).byteLength, 250_000);
  for (const reply of run.replies) {
    assert.ok(parseReply(reply).body.length <= 102400);
  }
});

Deno.test("runHandler: without download.flow_control a large body goes out in messages of 4 MiB at most", async () => {
  // mongrel2 copies each reply: a 9 MiB body is not one 9 MiB message.
  const size = 9 * 1024 * 1024;
  const run = await runHandler(
    () => new Response(new Uint8Array(size)),
    await buildRequestMessage("/blob", { downloadCredits: false }),
  );
  assert.equal((await run.response.arrayBuffer()).byteLength, size);
  const sizes = run.replies.map((reply) => parseReply(reply).body.length);
  assert.ok(sizes.every((length) => length <= 4 * 1024 * 1024), `${sizes}`);
});

Deno.test("runHandler: a stream that waits for credits now and then is not taken for a client that stopped reading", async () => {
  // writeTimeout counts from when a wait for credits began, and each
  // grant ends that wait: 12 bursts of 192 KiB, each past the 100 KiB
  // window, over 600 ms outlast a 200 ms timeout.
  const chunk = new Uint8Array(192 * 1024);
  let sent = 0;
  const run = await runHandler(
    () =>
      new Response(
        new ReadableStream({
          async pull(controller) {
            if (sent === 12) return controller.close();
            if (sent > 0) await new Promise((done) => setTimeout(done, 50));
            sent++;
            controller.enqueue(chunk);
          },
        }),
      ),
    await buildRequestMessage("/stream"),
    { server: { writeTimeout: 200 } },
  );
  assert.ok(run.complete);
  assert.equal(
    (await run.response.arrayBuffer()).byteLength,
    12 * chunk.length,
  );
});

Deno.test("runHandler: without credits the run times out instead of hanging", async () => {
  await assert.rejects(
    runHandler(
      () => new Response(new Uint8Array(200_000)),
      await buildRequestMessage("/blob"),
      { credits: false, timeout: 200 },
    ),
    /Cannot finish the run: 1 request\(s\) still in flight after 200 ms/,
  );
});

Deno.test("runHandler: without credits a small response ends the run at once", async () => {
  // The shutdown after a run used to wait its full 10 s for credits notices
  // that, with `credits: false`, never come.
  const started = performance.now();
  const run = await runHandler(
    () => new Response("x"),
    await buildRequestMessage("/"),
    { credits: false },
  );
  const elapsed = performance.now() - started;
  assert.ok(run.complete);
  assert.ok(elapsed < 5000, `the run took ${elapsed.toFixed(0)} ms`);
});

const WS_HANDSHAKE: RequestFields = {
  url: "/ws?room=1",
  headers: {
    upgrade: "websocket",
    connection: "keep-alive, Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
  },
};

function echoSocket(request: Request): Response {
  const { socket, response } = upgradeWebSocket(request);
  socket.onmessage = (event) =>
    socket.send(
      typeof event.data === "string"
        ? `echo ${event.data}`
        : new Uint8Array(event.data as ArrayBuffer).reverse(),
    );
  return response;
}

Deno.test("runHandler: a WebSocket's handshake, messages and close", async () => {
  const run = await runHandler(echoSocket, [
    await buildRequestMessage(WS_HANDSHAKE),
    await buildWebSocketMessage(WS_HANDSHAKE, "hi"),
    await buildWebSocketMessage(WS_HANDSHAKE, new Uint8Array([1, 2, 3])),
    await buildWebSocketMessage(WS_HANDSHAKE, { opcode: "ping", data: "p" }),
    await buildWebSocketMessage(WS_HANDSHAKE, {
      opcode: "close",
      code: 1000,
      reason: "bye",
    }),
  ]);
  assert.equal(run.parsed[0].status, 101);
  assert.deepEqual(
    new Map(run.parsed[0].headers).get("sec-websocket-accept"),
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  );
  assert.deepEqual(run.frames, [
    { type: "text", data: "echo hi" },
    { type: "binary", data: new Uint8Array([3, 2, 1]) },
    { type: "pong", data: new TextEncoder().encode("p") },
    { type: "close", code: 1000, reason: "bye" },
  ]);
  assert.ok(run.complete);
  assert.ok(run.closed);
  assert.throws(() => run.response, /101 WebSocket upgrade.*run\.frames/);
});

Deno.test("runHandler: a WebSocket left open times out with a hint", async () => {
  await assert.rejects(
    runHandler(echoSocket, await buildRequestMessage(WS_HANDSHAKE), {
      timeout: 200,
    }),
    /still in flight after 200 ms.*deliver a close message/,
  );
});

Deno.test("runHandler: the client answers the handler's close frame at once", async () => {
  // A real client echoes the close frame (RFC 6455 5.5.1), so the handler
  // sees a clean 1000 at once, not 1006 after the 5 s close timeout.
  let closed: CloseEvent | undefined;
  const started = performance.now();
  const run = await runHandler(
    (request: Request) => {
      const { socket, response } = upgradeWebSocket(request);
      socket.onmessage = () => socket.close(1000, "done");
      socket.onclose = (event) => closed = event;
      return response;
    },
    [
      await buildRequestMessage(WS_HANDSHAKE),
      await buildWebSocketMessage(WS_HANDSHAKE, "bye"),
    ],
  );
  assert.ok(performance.now() - started < 2000);
  assert.equal(closed?.code, 1000);
  assert.equal(closed?.wasClean, true);
  assert.deepEqual(run.frames, [{ type: "close", code: 1000, reason: "done" }]);
  assert.ok(run.complete);
});

Deno.test("runHandler: a second request built as a connection's first is refused with the fix", async () => {
  // With DOWNLOAD_CREDITS on both, m2fetch would take the second for a new
  // client reusing the id and silently drop the first request.
  await assert.rejects(
    runHandler(() => new Response("ok"), [
      await buildRequestMessage("/a"),
      await buildRequestMessage("/b"),
    ]),
    /Cannot deliver GET \/b: connection 1 already had a request.*\{ downloadCredits: false \}/,
  );
});

Deno.test("runHandler: a message that is not bytes (an unawaited builder) is refused", async () => {
  const pending = buildRequestMessage("/");
  await assert.rejects(
    runHandler(() => new Response("ok"), pending as unknown as Uint8Array),
    /Cannot deliver a Promise: .*await the async builders/,
  );
  await assert.rejects(
    runHandler(() => new Response("ok"), [
      pending as unknown as Uint8Array,
    ]),
    /Cannot deliver a Promise/,
  );
  await pending;
});

Deno.test("buildWebSocketMessage: refuses a handshake mongrel2 would not upgrade, and bad frames", async () => {
  await assert.rejects(
    buildWebSocketMessage(
      { url: "/ws", headers: { upgrade: "websocket" } },
      "x",
    ),
    /lacks the headers mongrel2 needs to upgrade/,
  );
  await assert.rejects(
    buildWebSocketMessage(WS_HANDSHAKE, { opcode: 16 }),
    /opcode 16 is not a name of OPCODE or a number from 0 to 15/,
  );
  await assert.rejects(
    buildWebSocketMessage(WS_HANDSHAKE, { opcode: "text", code: 1000 }),
    /only a close frame carries a code/,
  );
  // mongrel2 passes RSV bits and unknown opcodes on; m2fetch closes with 1002.
  const message = parseMessage(
    await buildWebSocketMessage(WS_HANDSHAKE, { opcode: 3, rsv: 4 }),
  );
  assert.equal(message.headers.FLAGS, "0xC3");
  assert.equal(message.headers.METHOD, "WEBSOCKET");
});

Deno.test("buildRequestMessage: a header value keeps its trailing blanks, as mongrel2 sends it", async () => {
  // Captured from mongrel2 1.12.2 for "X-W:   padded  ".
  const message = parseMessage(
    await buildRequestMessage({ url: "/w", headers: [["X-W", "   padded  "]] }),
  );
  assert.equal(message.headers["x-w"], "padded  ");
});

Deno.test("buildRequestMessage: a chunked body needs the upload option", async () => {
  await assert.rejects(
    buildRequestMessage({
      method: "POST",
      url: "/c",
      headers: { "transfer-encoding": "chunked" },
      body: "abc",
    }),
    /mongrel2 spools every chunked body to a temp file/,
  );
  const start = parseMessage(
    await buildRequestMessage({
      method: "POST",
      url: "/c",
      headers: { "transfer-encoding": "chunked" },
    }, { upload: { path: "/tmp/upload.abcdef", stage: "start" } }),
  );
  assert.equal(start.headers["transfer-encoding"], "chunked");
});

Deno.test("runHandler: HEAD gets the head and no body", async () => {
  const run = await runHandler(
    () => new Response("hello", { headers: { "x-a": "1" } }),
    await buildRequestMessage({ method: "HEAD", url: "/h" }),
  );
  assert.equal(run.response.status, 200);
  assert.equal(run.response.headers.get("content-length"), "5");
  assert.equal(run.response.headers.get("x-a"), "1");
  assert.equal(await run.response.text(), "");
  assert.ok(latin1(run.raw).endsWith("\r\n\r\n"));
  assert.equal(run.complete, true);
});

Deno.test("runHandler: a throwing handler gives 500 Internal Server Error", async () => {
  const run = await runHandler(() => {
    throw new Error("boom");
  }, await buildRequestMessage("/"));
  assert.equal(run.response.status, 500);
  assert.equal(await run.response.text(), "Internal Server Error");
  assert.ok(run.logs.some((line) => line.includes("Handler failed")));
  assert.ok(run.logs.some((line) => line.includes("boom")));
});

Deno.test("runHandler: onError turns the error into the response", async () => {
  const run = await runHandler(
    () => Promise.reject(new RangeError("bad")),
    await buildRequestMessage("/"),
    { onError: (error) => new Response(String(error), { status: 418 }) },
  );
  assert.equal(run.response.status, 418);
  assert.equal(await run.response.text(), "RangeError: bad");
});

Deno.test("runHandler: a script delivers a disconnect once a long poll waits", async () => {
  const waiting = Promise.withResolvers<void>();
  let reason: unknown;
  let cancelled: unknown = null;
  const run = await runHandler(
    async (request: Request) => {
      waiting.resolve();
      await new Promise((resolve) =>
        request.signal.addEventListener("abort", resolve)
      );
      reason = request.signal.reason;
      // Answered too late: the body is released, not left open.
      return new Response(
        new ReadableStream({
          cancel(why) {
            cancelled = why;
          },
        }),
      );
    },
    await buildRequestMessage("/poll"),
    {
      async script({ deliver, replies }) {
        await waiting.promise;
        assert.equal(replies.length, 0);
        deliver(buildNotice("disconnect"));
      },
    },
  );
  assert.equal((reason as DOMException).name, "AbortError");
  assert.equal(cancelled, reason);
  assert.equal(run.complete, false);
  assert.equal(run.raw.length, 0);
});

Deno.test("runHandler: a script that throws rejects the run", async () => {
  await assert.rejects(
    runHandler(() => new Response("x"), [], {
      script() {
        throw new Error("script failed");
      },
    }),
    /script failed/,
  );
});

Deno.test("runHandler: a disconnect notice mid-stream aborts request.signal", async () => {
  let reason: unknown;
  let cancelled = false;
  const run = await runHandler(
    (request: Request) => {
      request.signal.addEventListener("abort", () => {
        reason = request.signal.reason;
      });
      return new Response(
        new ReadableStream({
          pull(controller) {
            controller.enqueue(new Uint8Array(8192).fill(0x2e));
          },
          cancel() {
            cancelled = true;
          },
        }),
      );
    },
    await buildRequestMessage("/stream", { format: "json" }),
    {
      onReply(_reply, { deliver, replies }) {
        if (replies.length === 2) {
          deliver(buildNotice("disconnect", { format: "json" }));
        }
      },
    },
  );
  assert.ok(reason instanceof DOMException);
  assert.equal(reason.name, "AbortError");
  assert.ok(cancelled, "the body stream was cancelled");
  assert.equal(run.complete, false);
  assert.equal(run.closed, false);
  assert.equal(run.response.status, 200);
  const partial = await run.response.arrayBuffer();
  assert.ok(partial.byteLength >= 102400, `${partial.byteLength} bytes`);
});

Deno.test("runHandler: HTTP/1.0 and Connection: close end with a close reply", async () => {
  for (
    const fields of [
      { url: "/old", version: "HTTP/1.0" },
      { url: "/bye", headers: { connection: "close" } },
    ] satisfies RequestFields[]
  ) {
    const run = await runHandler(
      () => new Response("ok"),
      await buildRequestMessage(fields),
    );
    assert.equal(run.closed, true, fields.url);
    assert.equal(decoder.decode(run.replies.at(-1)), `${DEFAULT_SENDER} 1:1, `);
    assert.equal(await run.response.text(), "ok");
  }
});

Deno.test("runHandler: pipelined requests on one connection answer in order", async () => {
  const run = await runHandler(
    async (request: Request) => {
      const delay = request.url.endsWith("/slow") ? 20 : 0;
      await new Promise((resolve) => setTimeout(resolve, delay));
      return new Response(new URL(request.url).pathname);
    },
    [
      await buildRequestMessage("/slow"),
      await buildRequestMessage("/fast", { downloadCredits: false }),
    ],
  );
  assert.equal(run.responses.length, 2);
  assert.equal(await run.responses[0].text(), "/slow");
  assert.equal(await run.responses[1].text(), "/fast");
  assert.equal(run.complete, true);
});

Deno.test("runHandler: accepts a module namespace, { fetch } and a path string", async () => {
  const message = await buildRequestMessage("/");
  const object = {
    greeting: "hi from this",
    fetch(this: { greeting: string }) {
      return new Response(this.greeting);
    },
  };
  const fromNamespace = await runHandler(helloModule, message);
  assert.equal(await fromNamespace.response.text(), "Hello from m2fetch\n");
  const fromObject = await runHandler(object, message);
  assert.equal(await fromObject.response.text(), "hi from this");
  const path = new URL("../examples/hello.ts", import.meta.url).href;
  const fromPath = await runHandler(path, message);
  assert.equal(await fromPath.response.text(), "Hello from m2fetch\n");
  await assert.rejects(
    runHandler("tests/no_such_module.ts", message),
    /Cannot load handler module tests\/no_such_module.ts: file not found/,
  );
  await assert.rejects(
    runHandler({ nothing: true }, message),
    /expected export default \{ fetch \}/,
  );
});

Deno.test("runHandler: an async upload reaches the handler as the body", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/upload.Ab12Cd`;
    await Deno.writeTextFile(path, "x".repeat(5000));
    const fields: RequestFields = {
      method: "POST",
      url: "/up",
      headers: { "content-type": "text/plain", "content-length": "5000" },
    };
    const run = await runHandler(
      async (request: Request) =>
        new Response(`${(await request.text()).length} bytes`),
      [
        await buildRequestMessage(fields, { upload: { path, stage: "start" } }),
        await buildRequestMessage(fields, {
          upload: { path, stage: "done" },
          downloadCredits: false,
        }),
      ],
      { server: { uploads: { store: { template: `${dir}/upload.XXXXXX` } } } },
    );
    assert.equal(await run.response.text(), "5000 bytes");
    assert.equal(run.complete, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runHandler: a throwing onReply rejects the run", async () => {
  await assert.rejects(
    runHandler(() => new Response("x"), await buildRequestMessage("/"), {
      onReply() {
        throw new Error("hook failed");
      },
    }),
    /hook failed/,
  );
});

Deno.test("runHandler: the response getter explains a missing response", async () => {
  const run = await runHandler(
    () => new Response("never sent"),
    buildNotice("disconnect"),
  );
  assert.equal(run.replies.length, 0);
  assert.throws(() => run.response, /m2fetch sent no response head/);
});

// --- buildRequestMessage ---------------------------------------------------

Deno.test("buildRequestMessage: the JSON example of the protocol doc, byte for byte", async () => {
  const message = await buildRequestMessage({
    url: "/json/a%20b/c?x=1&y=%22q%22#frag",
    headers: [
      ["Host", "localhost"],
      ["X-Dup", "one"],
      ["X-Dup", "two"],
      ["X-Weird", 'a "quoted" \\back\\ \xc3\xa9'],
      ["X-Tab", "a\tb"],
    ],
  }, {
    format: "json",
    sender: "34f9ceee-cd52-4b7f-b197-88bf2f0ec378",
    pattern: "/json",
    downloadCredits: false,
  });
  assert.equal(
    latin1(message),
    "34f9ceee-cd52-4b7f-b197-88bf2f0ec378 1 /json/a%20b/c 324:" +
      '{"PATH":"/json/a%20b/c","x-dup":["one","two"],' +
      '"x-forwarded-for":"127.0.0.1","x-tab":"a\tb",' +
      '"x-weird":"a \\"quoted\\" \\\\back\\\\ \xc3\xa9","host":"localhost",' +
      '"METHOD":"GET","VERSION":"HTTP/1.1",' +
      '"URI":"/json/a%20b/c?x=1&y=%22q%22","QUERY":"x=1&y=%22q%22",' +
      '"FRAGMENT":"frag","PATTERN":"/json","URL_SCHEME":"http",' +
      '"REMOTE_ADDR":"127.0.0.1"},0:,',
  );
});

Deno.test("buildRequestMessage: the tnetstring example of the protocol doc, byte for byte", async () => {
  const message = await buildRequestMessage({
    url: "/tnet/a?x=1",
    headers: [
      ["Host", "localhost:41767"],
      ["X-Dup", "one"],
      ["X-Dup", "two"],
      ["X-Forwarded-For", "10.9.9.9"],
    ],
  }, {
    sender: "53f9f1d1-1116-4751-b6ff-4fbe3e43d142",
    connectionId: 2,
    pattern: "/tnet",
    downloadCredits: false,
  });
  assert.equal(
    latin1(message),
    "53f9f1d1-1116-4751-b6ff-4fbe3e43d142 2 /tnet/a 235:11:REMOTE_ADDR,9:127.0.0.1,6:METHOD,3:GET,10:URL_SCHEME,4:http,7:PATTERN,5:/tnet,5:QUERY,3:x=1,3:URI,11:/tnet/a?x=1,7:VERSION,8:HTTP/1.1,4:PATH,7:/tnet/a,4:host,15:localhost:41767,15:x-forwarded-for,9:127.0.0.1,5:x-dup,12:3:one,3:two,]}0:,",
  );
});

Deno.test("buildRequestMessage: round-trips through parseMessage and toRequest", async () => {
  for (const format of ["json", "tnetstring"] as const) {
    const original = new Request("https://example.com:8443/a%20b/c?x=1&y=2", {
      method: "PUT",
      headers: {
        "content-type": "text/plain;charset=UTF-8",
        "x-latin1": "caf\xe9",
        accept: "*/*",
      },
      body: "héllo wörld",
    });
    const message = parseMessage(
      await buildRequestMessage(original, { format }),
    );
    assert.equal(message.headerFormat, format);
    assert.equal(message.path, "/a%20b/c");
    assert.equal(message.headers.URL_SCHEME, "https");
    assert.equal(message.headers.QUERY, "x=1&y=2");
    assert.equal(message.headers.FRAGMENT, undefined);
    assert.equal(message.headers.DOWNLOAD_CREDITS, "102400");
    const copy = toRequest(message);
    assert.equal(copy.method, original.method);
    assert.equal(copy.url, original.url);
    for (const [name, value] of original.headers) {
      assert.equal(copy.headers.get(name), value, name);
    }
    assert.equal(copy.headers.get("host"), "example.com:8443");
    assert.equal(copy.headers.get("content-length"), "13");
    assert.equal(copy.headers.get("x-forwarded-for"), "127.0.0.1");
    assert.equal(await copy.text(), await original.text());
  }
});

Deno.test("buildRequestMessage: a Request without a body has no content-length and stays unread", async () => {
  const request = new Request("http://localhost/x", { method: "DELETE" });
  const message = parseMessage(await buildRequestMessage(request));
  assert.equal(message.headers["content-length"], undefined);
  assert.equal(message.body.length, 0);
  const posted = new Request("http://localhost/x", {
    method: "POST",
    body: "a",
  });
  await buildRequestMessage(posted);
  assert.equal(posted.bodyUsed, false);
  assert.equal(await posted.text(), "a");
});

Deno.test("buildRequestMessage: fields, defaults and fetch-like body headers", async () => {
  const message = parseMessage(
    await buildRequestMessage({
      method: "POST",
      url: "/form?é=1 2#top",
      body: new URLSearchParams({ a: "1" }),
    }, { connectionId: "42", remoteAddr: "::1", pattern: "/f" }),
  );
  assert.equal(message.sender, DEFAULT_SENDER);
  assert.equal(message.connectionId, "42");
  assert.equal(message.path, "/form");
  assert.equal(message.headers.QUERY, "%C3%A9=1%202");
  assert.equal(message.headers.FRAGMENT, "top");
  assert.equal(message.headers.PATTERN, "/f");
  assert.equal(message.headers.REMOTE_ADDR, "::1");
  assert.equal(message.headers["x-forwarded-for"], "::1");
  assert.equal(message.headers.host, "localhost");
  assert.equal(
    message.headers["content-type"],
    "application/x-www-form-urlencoded;charset=UTF-8",
  );
  assert.equal(message.headers["content-length"], "3");
  assert.equal(decoder.decode(message.body), "a=1");
});

Deno.test("buildRequestMessage: an absolute URL gives host and scheme; a bare ? is a query", async () => {
  const message = parseMessage(
    await buildRequestMessage({ url: "https://app.test/p?" }),
  );
  assert.equal(message.headers.host, "app.test");
  assert.equal(message.headers.URL_SCHEME, "https");
  assert.equal(message.headers.QUERY, "");
  assert.equal(message.headers.URI, "/p?");
  const noQuery = parseMessage(await buildRequestMessage("/p"));
  assert.equal(noQuery.headers.QUERY, undefined);
});

Deno.test("buildRequestMessage: keeps at most 5 repeats, like mongrel2", async () => {
  const message = parseMessage(
    await buildRequestMessage({
      url: "/",
      headers: { "x-d": ["0", "1", "2", "3", "4", "5", "6"] },
    }),
  );
  assert.deepEqual(message.headers["x-d"], ["0", "1", "2", "3", "4"]);
});

Deno.test("buildRequestMessage: many headers survive the header hash growing", async () => {
  const headers = Array.from(
    { length: 300 },
    (_, i) => [`x-h${i}`, String(i)] as [string, string],
  );
  for (const format of ["json", "tnetstring"] as const) {
    const message = parseMessage(
      await buildRequestMessage({ url: "/", headers }, { format }),
    );
    for (const [name, value] of headers) {
      assert.equal(message.headers[name], value);
    }
    // 300 fields, host, x-forwarded-for, DOWNLOAD_CREDITS and 7 upper-case keys.
    assert.equal(Object.keys(message.headers).length, 310);
  }
});

Deno.test("buildRequestMessage: upload messages", async () => {
  const fields: RequestFields = {
    method: "POST",
    url: "/up",
    headers: { "content-type": "application/octet-stream" },
    body: new Uint8Array(5000),
  };
  const start = parseMessage(
    await buildRequestMessage(fields, {
      upload: { path: "/tmp/upload.abc123", stage: "start" },
    }),
  );
  assert.equal(start.body.length, 0);
  assert.equal(start.headers["content-length"], "5000");
  assert.equal(start.headers["x-mongrel2-upload-start"], "/tmp/upload.abc123");
  assert.equal(start.headers["x-mongrel2-upload-done"], undefined);
  const done = parseMessage(
    await buildRequestMessage(fields, {
      format: "json",
      upload: { path: "/tmp/upload.abc123", stage: "done" },
    }),
  );
  assert.equal(done.headers["x-mongrel2-upload-start"], "/tmp/upload.abc123");
  assert.equal(done.headers["x-mongrel2-upload-done"], "/tmp/upload.abc123");
  assert.equal(done.body.length, 0);
});

Deno.test("buildRequestMessage: rejects what mongrel2 would not forward", async () => {
  await assert.rejects(
    buildRequestMessage({ method: "patch", url: "/" }),
    /mongrel2 answers 400 to method "patch"/,
  );
  await assert.rejects(
    buildRequestMessage({ url: "/", headers: { "x-a": "snow ☃" } }),
    /the value of header "x-a" has a character above U\+00FF/,
  );
  await assert.rejects(
    buildRequestMessage({ url: "/", headers: { "x-a": "a\nb" } }),
    /holds a control character/,
  );
  await assert.rejects(
    buildRequestMessage({ url: "/", headers: { "bad name": "x" } }),
    /header name "bad name" is not an HTTP token/,
  );
  await assert.rejects(
    buildRequestMessage({ url: "relative" }),
    /neither a path starting with "\/" nor an absolute URL/,
  );
  await assert.rejects(
    buildRequestMessage("/", { remoteAddr: "10.0.0.1\r\n" + "x" }),
    /option remoteAddr holds a control character/,
  );
  await assert.rejects(
    buildRequestMessage("/", { sender: "bad sender" }),
    /sender "bad sender"/,
  );
  await assert.rejects(
    buildRequestMessage("/", { connectionId: -1 }),
    RangeError,
  );
});

// --- buildNotice and parseReply --------------------------------------------

Deno.test("buildNotice: byte for byte as in the protocol doc", () => {
  const cases: [Uint8Array, string][] = [
    [
      buildNotice("disconnect", {
        format: "json",
        sender: "u",
        connectionId: 7,
      }),
      'u 7 @* 17:{"METHOD":"JSON"},21:{"type":"disconnect"},',
    ],
    [
      buildNotice("disconnect", { sender: "u", connectionId: 7 }),
      'u 7 @* 16:6:METHOD,4:JSON,}21:{"type":"disconnect"},',
    ],
    [
      buildNotice("credits", {
        format: "json",
        sender: "u",
        connectionId: 2,
        credits: 40,
      }),
      'u 2 @* 41:{"METHOD":"JSON","DOWNLOAD_CREDITS":"40"},18:{"type":"credits"},',
    ],
    [
      buildNotice("credits", { sender: "u", connectionId: 1, credits: 78 }),
      'u 1 @* 41:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,}18:{"type":"credits"},',
    ],
  ];
  for (const [bytes, expected] of cases) {
    assert.equal(decoder.decode(bytes), expected);
  }
  assert.deepEqual(
    parseNotice(parseMessage(buildNotice("credits", { credits: 5 }))),
    { type: "credits", credits: 5 },
  );
  assert.throws(
    () => buildNotice("credits"),
    /credits undefined is not a byte count/,
  );
});

Deno.test("parseReply: splits plain, extended and close replies", () => {
  assert.deepEqual(parseReply(encoder.encode("abc 3:6 7, hi")), {
    sender: "abc",
    ids: ["6", "7"],
    extended: false,
    body: encoder.encode("hi"),
  });
  const ctl = parseReply(
    encoder.encode("abc 3:X 7, 31:3:ctl,21:10:keep-alive,4:true!}]"),
  );
  assert.equal(ctl.extended, true);
  assert.deepEqual(ctl.ids, ["7"]);
  assert.equal(parseReply(encoder.encode("abc 1:7, ")).body.length, 0);
  assert.throws(() => parseReply(encoder.encode("abc 1:7,x")), /', '/);
});

// --- the captured mongrel2 fixtures -----------------------------------------

const FIXTURES = new URL("./fixtures/", import.meta.url);
const MODES = {
  json: {
    format: "json",
    sender: "34f9ceee-cd52-4b7f-b197-88bf2f0ec378",
    prefix: "/json",
  },
  tnet: {
    format: "tnetstring",
    sender: "53f9f1d1-1116-4751-b6ff-4fbe3e43d142",
    prefix: "/tnet",
  },
} as const;

function hasFixtures(): boolean {
  try {
    return Object.keys(MODES).every((mode) =>
      [...Deno.readDirSync(new URL(`${mode}/`, FIXTURES))].some((entry) =>
        entry.name.endsWith(".bin")
      )
    );
  } catch {
    return false;
  }
}

const HOST: [string, string] = ["Host", "localhost"];
const UPLOAD_BODY = "0123456789abcdef".repeat(128);

/** The client requests behind the fixtures (tests/fixtures/README.md). */
function fixtureRequests(prefix: string): Record<string, RequestFields> {
  const upload: RequestFields = {
    method: "POST",
    url: `${prefix}/upload`,
    headers: [
      HOST,
      ["Content-Type", "application/octet-stream"],
      ["Content-Length", "2048"],
    ],
    body: UPLOAD_BODY,
  };
  return {
    get_query: {
      url: `${prefix}/a%20b/c?x=1&y=%22q%22#frag`,
      headers: [HOST],
    },
    duplicate_headers: {
      url: `${prefix}/dup`,
      headers: [
        HOST,
        ["X-Dup", "one"],
        ["X-Dup", "two"],
        ["X-Dup", "three"],
        ["Cookie", "a=1"],
        ["Cookie", "b=2"],
      ],
    },
    post_inline: {
      method: "POST",
      url: `${prefix}/post`,
      headers: [HOST, ["Content-Type", "text/plain"], ["Content-Length", "11"]],
      body: "hello world",
    },
    post_binary: {
      method: "POST",
      url: `${prefix}/binary`,
      headers: [
        HOST,
        ["Content-Type", "application/octet-stream"],
        ["Content-Length", "256"],
      ],
      body: Uint8Array.from({ length: 256 }, (_, i) => i),
    },
    raw_tab: {
      url: `${prefix}/raw`,
      headers: [HOST, ["X-Raw", "tab[\t] latin1[\xe9] utf8[\xc3\xa9]"]],
    },
    head: { method: "HEAD", url: `${prefix}/head`, headers: [HOST] },
    http10: { url: `${prefix}/http10`, version: "HTTP/1.0", headers: [HOST] },
    connection_close: {
      url: `${prefix}/close`,
      headers: [HOST, ["Connection", "close"]],
    },
    upload_start: upload,
    upload_done: upload,
  };
}

/** The handshake behind the WebSocket fixtures. */
function fixtureHandshake(prefix: string): RequestFields {
  return {
    url: `${prefix}/ws?room=1`,
    headers: [
      HOST,
      ["Upgrade", "websocket"],
      ["Connection", "Upgrade"],
      ["Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="],
      ["Sec-WebSocket-Version", "13"],
      ["Origin", "http://localhost"],
    ],
  };
}

for (const [mode, { format, sender, prefix }] of Object.entries(MODES)) {
  Deno.test({
    name:
      `buildRequestMessage and buildNotice reproduce ${mode} fixtures byte for byte`,
    ignore: !hasFixtures(),
    async fn() {
      const read = (name: string) =>
        Deno.readFileSync(new URL(`${mode}/${name}.bin`, FIXTURES));
      for (const [name, fields] of Object.entries(fixtureRequests(prefix))) {
        const fixture = read(name);
        const captured = parseMessage(fixture);
        const options: RequestMessageOptions = {
          format,
          sender,
          connectionId: captured.connectionId,
          pattern: prefix,
        };
        if (name.startsWith("upload_")) {
          const path = captured.headers["x-mongrel2-upload-start"] as string;
          options.upload = {
            path,
            stage: name === "upload_done" ? "done" : "start",
          };
        }
        const built = await buildRequestMessage(fields, options);
        assert.equal(latin1(built), latin1(fixture), `${mode}/${name}.bin`);
      }
      // The handshake, then the four messages the client sent on it.
      const handshake = fixtureHandshake(prefix);
      const wsOptions = (name: string): RequestMessageOptions => ({
        format,
        sender,
        connectionId: parseMessage(read(name)).connectionId,
        pattern: prefix,
      });
      assert.equal(
        latin1(
          await buildRequestMessage(
            handshake,
            wsOptions("websocket_handshake"),
          ),
        ),
        latin1(read("websocket_handshake")),
        `${mode}/websocket_handshake.bin`,
      );
      const frames: [string, string | Uint8Array | WebSocketFrameFields][] = [
        ["websocket_text", "hello"],
        ["websocket_binary", Uint8Array.from({ length: 256 }, (_, i) => i)],
        ["websocket_ping", { opcode: "ping", data: "ping" }],
        ["websocket_close", { opcode: "close", code: 1000, reason: "bye" }],
      ];
      for (const [name, frame] of frames) {
        const built = await buildWebSocketMessage(
          handshake,
          frame,
          wsOptions(name),
        );
        assert.equal(latin1(built), latin1(read(name)), `${mode}/${name}.bin`);
      }
      for (const name of ["credits", "disconnect"] as const) {
        const fixture = read(name);
        const captured = parseMessage(fixture);
        const notice = parseNotice(captured);
        const built = buildNotice(name, {
          format,
          sender,
          connectionId: captured.connectionId,
          credits: notice?.type === "credits" ? notice.credits : undefined,
        });
        assert.equal(latin1(built), latin1(fixture), `${mode}/${name}.bin`);
      }
    },
  });

  Deno.test({
    name: `runHandler serves the captured ${mode} requests`,
    ignore: !hasFixtures(),
    async fn() {
      const read = (name: string) =>
        Deno.readFileSync(new URL(`${mode}/${name}.bin`, FIXTURES));
      const echo = async (request: Request) =>
        new Response(
          `${request.method} ${request.url} ${await request.text()}`,
        );
      const post = await runHandler(echo, read("post_inline"));
      assert.equal(
        await post.response.text(),
        `POST http://localhost${prefix}/post hello world`,
      );
      const dup = await runHandler(
        (request: Request) => new Response(request.headers.get("x-dup")),
        read("duplicate_headers"),
      );
      assert.equal(await dup.response.text(), "one, two, three");
      const raw = await runHandler(
        (request: Request) =>
          new Response("ok", {
            headers: { "x-echo": request.headers.get("x-raw") ?? "" },
          }),
        read("raw_tab"),
      );
      // Header values are byte strings, in the request and in the response.
      assert.equal(
        raw.response.headers.get("x-echo"),
        "tab[\t] latin1[\xe9] utf8[\xc3\xa9]",
      );
      const head = await runHandler(() => new Response("ok"), read("head"));
      assert.equal(head.response.headers.get("content-length"), "2");
      assert.equal(await head.response.text(), "");
      const http10 = await runHandler(() => new Response("ok"), read("http10"));
      assert.equal(http10.closed, true);
    },
  });
}

// --- MemoryTransport ------------------------------------------------------

Deno.test("MemoryTransport: yields delivered messages until stopReceiving", async () => {
  const transport = new MemoryTransport();
  transport.deliver(bytesOf("a"));
  const taken: string[] = [];
  const loop = (async () => {
    for await (const message of transport.messages()) {
      taken.push(latin1(message));
    }
  })();
  await transport.consumed();
  assert.deepEqual(taken, ["a"]);
  transport.deliver(bytesOf("b"));
  transport.deliver(bytesOf("c"));
  assert.equal(transport.pendingMessages, 2);
  await transport.stopReceiving();
  await loop;
  assert.deepEqual(taken, ["a", "b", "c"]);
  assert.throws(
    () => transport.deliver(bytesOf("d")),
    /Cannot deliver a message: the transport stopped receiving/,
  );
});

Deno.test("MemoryTransport: nextReply and waitForReplies", async () => {
  const transport = new MemoryTransport();
  const next = transport.nextReply();
  const two = transport.waitForReplies((replies) => replies.length === 2);
  transport.send(bytesOf("1"));
  assert.equal(latin1(await next), "1");
  transport.send(bytesOf("2"));
  assert.equal((await two).length, 2);
  assert.equal(latin1(await transport.nextReply()), "2");
  const never = transport.nextReply();
  await transport.close();
  await assert.rejects(
    never,
    /Cannot wait until the next reply arrived: the transport is closed/,
  );
  transport.send(bytesOf("late"));
  assert.equal(transport.replies.length, 2);
});

Deno.test("MemoryTransport: waits can be aborted", async () => {
  const transport = new MemoryTransport();
  const controller = new AbortController();
  const waiting = transport.waitForReplies(() => false, {
    signal: controller.signal,
  });
  controller.abort(new Error("gave up"));
  await assert.rejects(waiting, /gave up/);
});

Deno.test("MemoryTransport: onReply sees each reply and a second consumer is refused", async () => {
  const seen: number[] = [];
  const transport = new MemoryTransport({
    onReply: (reply) => seen.push(reply.length),
  });
  transport.send(new Uint8Array(3));
  assert.deepEqual(seen, [3]);
  const first = transport.messages()[Symbol.asyncIterator]();
  const pending = first.next();
  await assert.rejects(
    (async () => {
      for await (const _ of transport.messages()) break;
    })(),
    /a MemoryTransport has one consumer/,
  );
  await transport.close();
  assert.equal((await pending).done, true);
});
