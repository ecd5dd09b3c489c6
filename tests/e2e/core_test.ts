/**
 * End-to-end tests of the core: a real mongrel2 (started per test in a temp
 * dir), m2fetch in-process or as the `cli.ts` subprocess, and real clients
 * (`fetch`, `curl`, raw TCP where the bytes on the wire matter).
 *
 * Run: `deno test -A tests/e2e/core_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  concat,
  curl,
  delay,
  type Harness,
  type HarnessOptions,
  headerValues,
  isRunning,
  startCliHarness,
  startDenoServe,
  startHarness,
} from "./harness.ts";
import {
  type FetchHandler,
  MAX_PIPELINED_HANDLERS,
  MAX_QUEUED_REQUESTS,
} from "../../runtime/server.ts";
import { tempDir } from "../site.ts";
import { waitFor, within } from "../subprocess.ts";
import { broadcast, upgradeWebSocket } from "../../mod.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Every byte value, `repeat` times over. */
function allBytes(repeat = 1): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(256 * repeat);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i & 0xff;
  return bytes;
}

/**
 * The handler most tests share, routed by path:
 *
 * - `/echo`: `{ method, body }` as JSON
 * - `/url…`: what the handler sees of the URL
 * - `/bytes`: GET all 256 byte values ×4, POST the request body back
 * - `/headers`: the request headers as JSON, and two `set-cookie`s
 * - `/status/N`: an empty response with status N
 * - `/throw`, `/not-a-response`: broken handlers
 * - anything else: `hello world`
 */
const app: FetchHandler = async (request, info) => {
  const url = new URL(request.url);
  if (url.pathname.startsWith("/url")) {
    return Response.json({
      remote: info.remoteAddr.hostname,
      url: request.url,
      pathname: url.pathname,
      search: url.search,
      params: [...url.searchParams],
    });
  }
  switch (url.pathname) {
    case "/echo":
      return Response.json({
        method: request.method,
        body: await request.text(),
      });
    case "/bytes":
      return new Response(
        request.method === "POST"
          ? new Uint8Array(await request.arrayBuffer())
          : allBytes(4),
        { headers: { "content-type": "application/octet-stream" } },
      );
    case "/headers": {
      const headers = new Headers({ "content-type": "application/json" });
      headers.append("set-cookie", "a=1; Path=/");
      headers.append("set-cookie", "b=2, c=3; Path=/; HttpOnly");
      return new Response(
        JSON.stringify(Object.fromEntries(request.headers)),
        { headers },
      );
    }
    case "/throw":
      throw new Error("boom from the handler");
    case "/not-a-response":
      return "not a response" as unknown as Response;
  }
  const status = /^\/status\/(\d{3})$/.exec(url.pathname);
  if (status !== null) {
    return new Response(null, { status: Number(status[1]) });
  }
  return new Response("hello world", {
    headers: { "content-type": "text/plain" },
  });
};

// Scenarios shared by the tnetstring tests and the JSON-protocol test.

async function checkMethods(h: Harness): Promise<void> {
  for (const method of ["GET", "POST", "PUT", "DELETE"]) {
    const body = method === "GET" ? undefined : `${method} body ✓`;
    const response = await h.fetch("/echo", { method, body });
    assert.equal(response.status, 200, method);
    assert.deepEqual(await response.json(), { method, body: body ?? "" });
  }
  // curl too, with its own framing of a PUT body.
  const put = await curl([
    "-s",
    "-X",
    "PUT",
    "-d",
    "from curl",
    `${h.url}/echo`,
  ]);
  assert.equal(put.code, 0, put.stderr);
  assert.deepEqual(JSON.parse(decoder.decode(put.stdout)), {
    method: "PUT",
    body: "from curl",
  });
}

async function checkUrls(h: Harness): Promise<void> {
  const path = "/url/a%20b/c%2Fd/%C3%A9?x=1&y=%22q%22&z=a+b&e=%E2%9C%93";
  const response = await h.fetch(path);
  const seen = await response.json();
  assert.equal(seen.remote, "127.0.0.1");
  assert.equal(seen.url, `${h.url}${path}`);
  assert.equal(seen.pathname, "/url/a%20b/c%2Fd/%C3%A9");
  assert.equal(seen.search, "?x=1&y=%22q%22&z=a+b&e=%E2%9C%93");
  assert.deepEqual(seen.params, [
    ["x", "1"],
    ["y", '"q"'],
    ["z", "a b"],
    ["e", "✓"],
  ]);
  // The exact route: `/url` alone and with an empty query.
  const bare = await (await h.fetch("/url?")).json();
  assert.equal(bare.url, `${h.url}/url?`);
}

async function checkBinary(h: Harness): Promise<void> {
  const down = await h.fetch("/bytes");
  assert.deepEqual(new Uint8Array(await down.arrayBuffer()), allBytes(4));
  const sent = allBytes(16).reverse();
  const up = await h.fetch("/bytes", { method: "POST", body: sent });
  assert.equal(up.headers.get("content-length"), String(sent.length));
  assert.deepEqual(new Uint8Array(await up.arrayBuffer()), sent);
}

async function checkDuplicateHeaders(h: Harness): Promise<void> {
  await using client = await h.raw();
  await client.write(
    "GET /headers HTTP/1.1\r\nHost: localhost\r\nX-Dup: a\r\nX-Dup: b\r\n" +
      "Accept: text/plain\r\nAccept: application/json\r\n\r\n",
  );
  const response = await client.readResponse();
  assert.equal(response.status, 200);
  const seen = JSON.parse(decoder.decode(response.body));
  assert.equal(seen["x-dup"], "a, b");
  assert.equal(seen.accept, "text/plain, application/json");
  assert.equal(seen.host, "localhost");
  // mongrel2's own keys (METHOD, URI, ...) are not request headers.
  assert.ok(!("method" in seen) && !("uri" in seen), JSON.stringify(seen));
}

async function checkSetCookies(h: Harness): Promise<void> {
  await using client = await h.raw();
  await client.write("GET /headers HTTP/1.1\r\nHost: localhost\r\n\r\n");
  const response = await client.readResponse();
  assert.deepEqual(headerValues(response, "set-cookie"), [
    "a=1; Path=/",
    "b=2, c=3; Path=/; HttpOnly",
  ]);
  // And fetch sees them apart too.
  const fetched = await h.fetch("/headers");
  await fetched.body?.cancel();
  assert.deepEqual(fetched.headers.getSetCookie(), [
    "a=1; Path=/",
    "b=2, c=3; Path=/; HttpOnly",
  ]);
}

async function checkTabHeader(h: Harness): Promise<void> {
  await using client = await h.raw();
  // A raw TAB inside a header value: mongrel2's JSON mode copies it
  // unescaped (invalid JSON), tnetstring mode is binary-safe. Bytes above
  // 0x7f reach the handler one char per byte (a ByteString), as under
  // deno serve: UTF-8 "é" (C3 A9) is two chars, a lone E9 one.
  await client.write(concat([
    encoder.encode(
      "GET /headers HTTP/1.1\r\nHost: localhost\r\nX-Tab: a\tb\r\n" +
        'X-Quote: say "hi" \\o/\r\nX-Bytes: ',
    ),
    new Uint8Array([0xc3, 0xa9, 0x20, 0xe9]),
    encoder.encode("\r\n\r\n"),
  ]));
  const response = await client.readResponse();
  assert.equal(response.status, 200, decoder.decode(response.body));
  const seen = JSON.parse(decoder.decode(response.body));
  assert.equal(seen["x-tab"], "a\tb");
  assert.equal(seen["x-quote"], 'say "hi" \\o/');
  assert.equal(seen["x-bytes"], "\xc3\xa9 \xe9");
}

function withHarness(
  name: string,
  fn: (h: Harness) => Promise<void>,
  options: HarnessOptions = {},
  handler: FetchHandler = app,
): void {
  Deno.test(name, async () => {
    await using h = await startHarness(handler, options);
    await fn(h);
  });
}

withHarness("GET, POST, PUT and DELETE reach the handler", checkMethods);

withHarness(
  "query strings and percent-encoded paths reach request.url as sent",
  checkUrls,
);

withHarness(
  "binary request and response bodies keep all 256 byte values",
  checkBinary,
);

withHarness(
  "duplicate request headers are joined with a comma",
  checkDuplicateHeaders,
);

withHarness(
  "several set-cookie response headers stay apart on the wire",
  checkSetCookies,
);

withHarness(
  "a raw TAB and non-ASCII bytes in header values reach the handler",
  checkTabHeader,
);

withHarness(
  "HEAD gets content-length and no body; the connection stays usable",
  async (h) => {
    await using client = await h.raw();
    await client.write(
      "HEAD /text HTTP/1.1\r\nHost: x\r\n\r\nGET /text HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const head = await client.readResponse({ head: true });
    assert.equal(head.status, 200);
    assert.deepEqual(headerValues(head, "content-length"), ["11"]);
    // The GET right after must start exactly where the HEAD head ended.
    const get = await client.readResponse();
    assert.equal(get.statusLine, "HTTP/1.1 200 OK");
    assert.equal(decoder.decode(get.body), "hello world");
    assert.equal(client.buffered, 0);
  },
);

withHarness("204 and 304 responses carry no body", async (h) => {
  await using client = await h.raw();
  await client.write(
    "GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n" +
      "GET /status/304 HTTP/1.1\r\nHost: x\r\n\r\n" +
      "GET /text HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  const noContent = await client.readResponse();
  assert.equal(noContent.status, 204);
  assert.deepEqual(headerValues(noContent, "content-length"), []);
  assert.deepEqual(headerValues(noContent, "transfer-encoding"), []);
  const notModified = await client.readResponse();
  assert.equal(notModified.status, 304);
  assert.deepEqual(headerValues(notModified, "transfer-encoding"), []);
  const after = await client.readResponse();
  assert.equal(after.status, 200);
  assert.equal(decoder.decode(after.body), "hello world");
  // Through fetch as well.
  const response = await h.fetch("/status/204");
  assert.equal(response.status, 204);
  assert.equal(await response.text(), "");
});

// --- 100 MiB to a slow reader ---------------------------------------------

const BIG_CHUNK = 64 * 1024;
const BIG_CHUNKS = 1600; // 100 MiB
const BIG_BYTES = BIG_CHUNK * BIG_CHUNKS;

/**
 * The big-body app, run by the CLI in its own process, so that its memory
 * can be read from /proc without the test runner's (`deno test --parallel`
 * runs every test file in one process). Chunk `k` is a fixed block stamped
 * with `k`; `/produced` tells how many chunks the handler has made so far.
 * The pattern is repeated in {@linkcode bigChunk} below.
 */
const BIG_APP = `
const CHUNK = ${BIG_CHUNK};
const CHUNKS = ${BIG_CHUNKS};
const base = new Uint8Array(CHUNK);
for (let i = 0; i < CHUNK; i++) base[i] = (i * 31 + (i >>> 8)) & 0xff;
function chunk(k) {
  const bytes = base.slice();
  const view = new DataView(bytes.buffer);
  view.setUint32(0, k);
  view.setUint32(CHUNK - 4, k ^ 0x5a5a5a5a);
  return bytes;
}
let produced = 0;
export default {
  fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/produced") return new Response(String(produced));
    if (url.pathname !== "/big") return new Response("still here");
    produced = 0;
    let k = 0;
    const body = new ReadableStream({
      pull(controller) {
        controller.enqueue(chunk(k++));
        produced = k;
        if (k === CHUNKS) controller.close();
      },
    }, { highWaterMark: 0 });
    const headers = new Headers({ "content-type": "application/octet-stream" });
    if (url.searchParams.get("framing") === "length") {
      headers.set("content-length", String(CHUNK * CHUNKS));
    }
    return new Response(body, { headers });
  },
};
`;

/** Chunk `k` of the big body, as {@linkcode BIG_APP} makes it. */
function bigChunk(base: Uint8Array, k: number): Uint8Array {
  const chunk = base.slice();
  new DataView(chunk.buffer).setUint32(0, k);
  new DataView(chunk.buffer).setUint32(BIG_CHUNK - 4, k ^ 0x5a5a5a5a);
  return chunk;
}

function bigBase(): Uint8Array {
  const base = new Uint8Array(BIG_CHUNK);
  for (let i = 0; i < base.length; i++) base[i] = (i * 31 + (i >>> 8)) & 0xff;
  return base;
}

/**
 * The most bytes the kernel may buffer on one loopback TCP connection: the
 * sender's largest send buffer plus the receiver's largest receive buffer.
 */
function socketBufferLimit(): number {
  const max = (name: string) =>
    Number(
      Deno.readTextFileSync(`/proc/sys/net/ipv4/${name}`).split(/\s+/)[2],
    );
  try {
    return max("tcp_wmem") + max("tcp_rmem");
  } catch {
    return 16 * 1024 * 1024;
  }
}

/** A process's resident set size in bytes, from /proc. */
function processRss(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return kib === null ? 0 : Number(kib[1]) * 1024;
}

async function bigStreamToSlowReader(framing: "length" | "chunked") {
  const base = bigBase();
  const expected = createHash("sha256");
  for (let k = 0; k < BIG_CHUNKS; k++) expected.update(bigChunk(base, k));
  const expectedHash = expected.digest("hex");

  const dir = await Deno.makeTempDir({ prefix: "m2b-" });
  try {
    await Deno.writeTextFile(`${dir}/big_app.js`, BIG_APP);
    await using h = await startCliHarness(`${dir}/big_app.js`);
    const pid = h.process.pid;
    await using client = await h.raw();
    await using probe = await h.raw();
    const produced = async () => {
      await probe.write("GET /produced HTTP/1.1\r\nHost: x\r\n\r\n");
      return Number(decoder.decode((await probe.readResponse()).body));
    };

    // Warm up, then take the baseline.
    await client.write("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    await client.readResponse();
    await produced();
    const startRss = processRss(pid);
    let maxRss = startRss;
    const sampler = setInterval(() => {
      maxRss = Math.max(maxRss, processRss(pid));
    }, 25);

    try {
      const started = performance.now();
      await client.write(
        `GET /big?framing=${framing} HTTP/1.1\r\nHost: x\r\n\r\n`,
      );
      const head = await client.readHead();
      assert.equal(head.status, 200);
      if (framing === "length") {
        assert.deepEqual(headerValues(head, "content-length"), [
          String(BIG_BYTES),
        ]);
      } else {
        assert.deepEqual(headerValues(head, "transfer-encoding"), [
          "chunked",
        ]);
      }
      const hash = createHash("sha256");
      let received = 0;
      const slowUntil = 4 * 1024 * 1024;
      let stalled = false;
      let maxAhead = 0;
      let nextProbe = 0;
      const pieceSize = () => received < slowUntil ? 32 * 1024 : 1024 * 1024;
      for await (const piece of client.readBody(head, pieceSize)) {
        hash.update(piece);
        received += piece.length;
        if (received >= slowUntil) continue;
        // Read slowly: small reads with pauses, and one long stall, during
        // which m2fetch must wait for credits instead of buffering.
        if (!stalled && received >= 1024 * 1024) {
          stalled = true;
          await delay(1500);
        } else {
          await delay(10);
        }
        if (received >= nextProbe) {
          nextProbe = received + 256 * 1024;
          // While the reader dawdles, the handler must not run far ahead:
          // m2fetch pulls the body only as credits come back, and mongrel2
          // returns credits once bytes are in its socket. So what is ahead
          // is m2fetch's segment and credit window plus the loopback socket
          // buffers, which the kernel may autotune up to tcp_wmem + tcp_rmem.
          maxAhead = Math.max(
            maxAhead,
            (await produced()) * BIG_CHUNK - received,
          );
        }
      }
      const seconds = (performance.now() - started) / 1000;
      assert.equal(received, BIG_BYTES);
      assert.equal(hash.digest("hex"), expectedHash);
      const aheadLimit = socketBufferLimit() + 4 * 1024 * 1024;
      assert.ok(
        maxAhead < aheadLimit,
        `the handler ran ${maxAhead} bytes ahead of the slow reader (limit ${aheadLimit})`,
      );
      // The connection is still usable.
      await client.write("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
      const after = await client.readResponse();
      assert.equal(decoder.decode(after.body), "still here");
      const growth = maxRss - startRss;
      console.log(
        `100 MiB (${framing}) in ${seconds.toFixed(1)} s; m2fetch rss ${
          (startRss / 1048576).toFixed(0)
        } MiB, growth ${
          (growth / 1048576).toFixed(1)
        } MiB; handler ahead of reader at most ${
          (maxAhead / 1048576).toFixed(1)
        } MiB`,
      );
      assert.ok(
        growth < 64 * 1024 * 1024,
        `m2fetch's rss grew by ${growth} bytes during the transfer`,
      );
    } finally {
      clearInterval(sampler);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test(
  "a 100 MiB stream with content-length reaches a slow reader intact, memory bounded",
  () => bigStreamToSlowReader("length"),
);

Deno.test(
  "a 100 MiB chunked stream reaches a slow reader intact, memory bounded",
  () => bigStreamToSlowReader("chunked"),
);

// --- close rules ----------------------------------------------------------

withHarness("HTTP/1.0: response, then the server closes", async (h) => {
  await using client = await h.raw();
  await client.write("GET /text HTTP/1.0\r\nHost: x\r\n\r\n");
  const response = await client.readResponse();
  assert.equal(response.statusLine, "HTTP/1.0 200 OK");
  assert.equal(decoder.decode(response.body), "hello world");
  const rest = await client.waitForClose(5000);
  assert.ok(rest !== null, "the connection stayed open");
  assert.equal(rest.length, 0);
});

withHarness("HTTP/1.0 with keep-alive stays open", async (h) => {
  await using client = await h.raw();
  await client.write(
    "GET /text HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
  );
  const first = await client.readResponse();
  assert.deepEqual(headerValues(first, "connection"), ["keep-alive"]);
  await client.write("GET /text HTTP/1.0\r\nHost: x\r\n\r\n");
  const second = await client.readResponse();
  assert.equal(decoder.decode(second.body), "hello world");
  assert.ok((await client.waitForClose(5000)) !== null);
});

withHarness("Connection: close closes after the response", async (h) => {
  await using client = await h.raw();
  await client.write(
    "GET /text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  );
  const response = await client.readResponse();
  assert.equal(response.status, 200);
  assert.deepEqual(headerValues(response, "connection"), ["close"]);
  assert.equal(decoder.decode(response.body), "hello world");
  const rest = await client.waitForClose(5000);
  assert.ok(rest !== null, "the connection stayed open");
  assert.equal(rest.length, 0);
});

withHarness(
  "Connection: close in a pipeline ends it: later requests get no answer",
  async (h) => {
    await using client = await h.raw();
    await client.write(
      "GET /text HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" +
        "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const first = await client.readResponse();
    assert.equal(decoder.decode(first.body), "hello world");
    const rest = await client.waitForClose(5000);
    assert.ok(rest !== null, "the connection stayed open");
    assert.equal(decoder.decode(rest), "");
    assert.ok(await waitFor(() => h.server.inFlight === 0, 2000));
  },
);

Deno.test("requests pipelined after one that closes the connection are not served", async () => {
  const served: string[] = [];
  await using h = await startHarness(async (request) => {
    const path = new URL(request.url).pathname;
    served.push(`${request.method} ${path}`);
    if (path === "/slow") await delay(100);
    return new Response(path);
  });
  // The closing request answered at once (its connection may be closed
  // before the next message is read), after a while, and refused by
  // m2fetch itself (a Content-Length mongrel2 passes with no body).
  for (
    const [closing, status, body, first] of [
      [
        "GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        200,
        "/fast",
        ["GET /fast"],
      ],
      ["GET /slow HTTP/1.0\r\n\r\n", 200, "/slow", ["GET /slow"]],
      [
        "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000000\r\n\r\n",
        400,
        "Bad Request",
        [],
      ],
    ] as const
  ) {
    served.length = 0;
    const logged = h.logs.length;
    await using client = await h.raw();
    await client.write(
      closing +
        "POST /side-effect HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" +
        "GET /after HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const response = await client.readResponse();
    assert.equal(response.status, status);
    assert.equal(decoder.decode(response.body), body);
    assert.ok((await client.waitForClose(5000)) !== null, "still open");
    assert.ok(
      await waitFor(
        () =>
          h.logs.slice(logged).filter((line) =>
            /Ignored (POST \/side-effect|GET \/after): the client pipelined it after a request that closes connection/
              .test(line)
          ).length === 2,
        2000,
      ),
      h.logs.slice(logged).join("\n"),
    );
    assert.deepEqual(served, first);
  }
  assert.equal(h.server.inFlight, 0);
});

Deno.test("requests pipelined after one that closes the connection make one warning, not one each", async () => {
  // A client could otherwise write a warning line into the log for every
  // few bytes it sends, for as long as the closing response takes.
  const release = Promise.withResolvers<void>();
  await using h = await startHarness(async () => {
    await release.promise;
    return new Response("last");
  });
  const logged = h.logs.length;
  await using client = await h.raw();
  await client.write(
    "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" +
      "GET /after HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200),
  );
  const ignored = () =>
    h.logs.slice(logged).filter((line) => line.includes("Ignored GET /after"));
  assert.ok(await waitFor(() => ignored().length === 200, 5000));
  release.resolve();
  assert.equal((await client.readResponse()).status, 200);
  assert.equal(ignored().filter((line) => / warn /.test(line)).length, 1);
  assert.equal(ignored().filter((line) => / info /.test(line)).length, 199);
});

Deno.test("pipelined requests are answered in request order", async () => {
  const finished: string[] = [];
  await using h = await startHarness(async (request) => {
    const path = new URL(request.url).pathname;
    const wait = Number(path.split("/")[2] ?? 0);
    await delay(wait);
    const body = request.method === "POST" ? await request.text() : "";
    finished.push(path);
    return new Response(`${request.method} ${path} ${body}`);
  });
  await using client = await h.raw();
  // The first is the slowest; all five are written at once.
  await client.write(
    "GET /slow/300 HTTP/1.1\r\nHost: x\r\n\r\n" +
      "GET /fast/0 HTTP/1.1\r\nHost: x\r\n\r\n" +
      "POST /post/150 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody" +
      "HEAD /head/50 HTTP/1.1\r\nHost: x\r\n\r\n" +
      "GET /last/0 HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  const bodies = [];
  for (const method of ["GET", "GET", "POST", "HEAD", "GET"]) {
    const response = await client.readResponse({ head: method === "HEAD" });
    bodies.push(decoder.decode(response.body));
  }
  assert.deepEqual(bodies, [
    "GET /slow/300 ",
    "GET /fast/0 ",
    "POST /post/150 body",
    "",
    "GET /last/0 ",
  ]);
  // The handlers ran at once: the slow first one finished last.
  assert.equal(finished.at(-1), "/slow/300");
  assert.equal(finished.length, 5);
});

Deno.test("one connection's pipelined requests run at most MAX_PIPELINED_HANDLERS handlers at once", async () => {
  // Each handler holds a response of its own until written: a client
  // pipelining many must not make m2fetch hold them all.
  let running = 0;
  let most = 0;
  const started: string[] = [];
  await using h = await startHarness(async (request) => {
    const path = new URL(request.url).pathname;
    started.push(path);
    running++;
    most = Math.max(most, running);
    await delay(100);
    running--;
    return new Response(path);
  });
  const count = MAX_PIPELINED_HANDLERS * 3;
  const paths = Array.from({ length: count }, (_, i) => `/r/${i}`);
  {
    await using client = await h.raw();
    await client.write(
      paths.map((path) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`).join(""),
    );
    for (const path of paths) {
      const response = await client.readResponse();
      assert.equal(decoder.decode(response.body), path);
    }
  }
  assert.equal(most, MAX_PIPELINED_HANDLERS);
  assert.deepEqual(started, paths, "the waiting ones start in order");

  // A client that leaves with requests waiting: theirs never start.
  started.length = 0;
  {
    await using client = await h.raw();
    await client.write(
      paths.map((path) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`).join(""),
    );
    await waitFor(() => started.length === MAX_PIPELINED_HANDLERS, 5000);
  }
  await delay(400);
  assert.equal(started.length, MAX_PIPELINED_HANDLERS);
});

Deno.test("a client pipelining more than MAX_QUEUED_REQUESTS behind a slow response is cut off; as many are served", async () => {
  // mongrel2 forwards pipelined requests as fast as they come: 100,000 of
  // them behind a response that never came held 400 MB in m2fetch, and
  // stalled every other client for seconds.
  const hold = Promise.withResolvers<void>();
  let calls = 0;
  await using h = await startHarness(async (request) => {
    calls++;
    const path = new URL(request.url).pathname;
    if (path === "/hold") await hold.promise;
    if (path === "/never") {
      await new Promise((resolve) => request.signal.onabort = resolve);
    }
    return new Response(path);
  });
  const request = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
  const behind = Array.from(
    { length: MAX_QUEUED_REQUESTS - 1 },
    (_, i) => `/r/${i}`,
  );
  {
    // As many as the bound: every one is answered, in order.
    await using client = await h.raw();
    await client.write(request("/hold") + behind.map(request).join(""));
    await waitFor(() => calls === MAX_PIPELINED_HANDLERS, 5000);
    hold.resolve();
    for (const path of ["/hold", ...behind]) {
      const response = await client.readResponse();
      assert.equal(decoder.decode(response.body), path);
    }
  }
  calls = 0;
  const logged = h.logs.length;
  {
    await using client = await h.raw();
    await client.write(
      request("/never") + behind.map(request).join("") +
        request("/over").repeat(100),
    );
    assert.notEqual(
      await client.waitForClose(5000),
      null,
      "the connection stayed open",
    );
  }
  assert.ok(
    h.logs.slice(logged).some((line) =>
      line.includes(
        `its client pipelined more than ${MAX_QUEUED_REQUESTS} requests ahead of their responses`,
      )
    ),
    h.logs.slice(logged).join("\n"),
  );
  // The requests over the bound are logged with that reason, not as
  // pipelined behind a closing request.
  const ignored = h.logs.slice(logged).filter((line) =>
    line.includes("Ignored GET /")
  );
  assert.ok(ignored.length > 0, h.logs.slice(logged).join("\n"));
  for (const line of ignored) {
    assert.match(
      line,
      new RegExp(
        `m2fetch cut connection \\d+ off for pipelining more than ${MAX_QUEUED_REQUESTS} requests, so it must send it again`,
      ),
    );
  }
  assert.equal(calls, MAX_PIPELINED_HANDLERS);
  assert.ok(await waitFor(() => h.server.inFlight === 0, 2000));
  {
    // One request over the bound is enough.
    await using client = await h.raw();
    await client.write(
      request("/never") + behind.map(request).join("") + request("/over"),
    );
    assert.notEqual(
      await client.waitForClose(5000),
      null,
      "one request over the bound left the connection open",
    );
  }
  assert.ok(await waitFor(() => h.server.inFlight === 0, 2000));
});

Deno.test("a response header with a control byte from the client's input is answered 500, not sent", async () => {
  // deno serve 2.9.6 panics on such a header and takes every connection
  // down; clients reject it, or print it to a terminal.
  await using h = await startHarness((request) =>
    new Response("echoed", {
      headers: { "x-echo": new URL(request.url).searchParams.get("v") ?? "" },
    })
  );
  const logged = h.logs.length;
  {
    await using client = await h.raw();
    await client.write("GET /echo?v=a%1b%5b2Jb HTTP/1.1\r\nHost: x\r\n\r\n");
    const response = await client.readResponse();
    assert.equal(response.status, 500);
    assert.equal(decoder.decode(response.body), "Internal Server Error");
    assert.equal(headerValues(response, "x-echo").length, 0);
    assert.notEqual(await client.waitForClose(5000), null);
  }
  assert.ok(
    h.logs.slice(logged).some((line) =>
      line.includes(
        'Cannot send the response header "x-echo": its value holds the control byte 0x1b',
      )
    ),
    h.logs.slice(logged).join("\n"),
  );
  const next = await h.fetch("/echo?v=plain");
  assert.equal(next.headers.get("x-echo"), "plain");
  await next.body?.cancel();
});

Deno.test("many keep-alive requests on one connection keep credits right", async () => {
  // 300 responses of 10 KiB: about 30 credit windows of mongrel2's 100 KiB.
  // Credits lost or double-counted would stall or kill the connection.
  const body = new Uint8Array(10 * 1024).fill(0x61);
  await using h = await startHarness(() => new Response(body));
  await using client = await h.raw();
  for (let i = 0; i < 300; i++) {
    await client.write(`GET /n/${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
    const response = await client.readResponse();
    assert.equal(response.status, 200);
    assert.equal(response.body.length, body.length);
  }
  // Pipelined as well: 50 at once.
  let burst = "";
  for (let i = 0; i < 50; i++) {
    burst += `GET /p/${i} HTTP/1.1\r\nHost: x\r\n\r\n`;
  }
  await client.write(burst);
  for (let i = 0; i < 50; i++) {
    assert.equal((await client.readResponse()).body.length, body.length);
  }
  assert.equal(h.server.connections, 1);
});

Deno.test("a client leaving mid-stream aborts request.signal", async () => {
  let resolveAborted!: (reason: unknown) => void;
  const aborted = new Promise((resolve) => resolveAborted = resolve);
  let cancelled = false;
  let abortedCompleted: Promise<void> | undefined;
  const normal: { signal?: AbortSignal; completed?: Promise<void> } = {};
  await using h = await startHarness((request, info) => {
    if (new URL(request.url).pathname === "/normal") {
      normal.signal = request.signal;
      normal.completed = info.completed;
      return new Response("done");
    }
    abortedCompleted = info.completed;
    request.signal.addEventListener(
      "abort",
      () => resolveAborted(request.signal.reason),
    );
    let n = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await delay(50);
        controller.enqueue(encoder.encode(`tick ${n++}\n`));
      },
      cancel() {
        cancelled = true;
      },
    });
    return new Response(body);
  });
  const client = await h.raw();
  // A normal exchange first: once its response is handed over, its signal
  // aborts as under deno serve 2.9, with deno serve's reason (which the
  // client leaving later does not replace).
  await client.write("GET /normal HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(decoder.decode((await client.readResponse()).body), "done");
  await normal.completed; // info.completed resolves once handed over
  const finished = () => {
    const reason = normal.signal?.reason as DOMException | undefined;
    return `${normal.signal?.aborted} ${reason?.name}: ${reason?.message}`;
  };
  assert.equal(finished(), "true AbortError: The request has been cancelled.");
  await client.write("GET /forever HTTP/1.1\r\nHost: x\r\n\r\n");
  const head = await client.readHead();
  assert.deepEqual(headerValues(head, "transfer-encoding"), ["chunked"]);
  await client.readSome(); // some ticks arrived
  client.close();
  const reason = await within(aborted, 5000, "timeout");
  assert.notEqual(reason, "timeout", "request.signal did not abort in 5 s");
  assert.ok(reason instanceof DOMException, String(reason));
  assert.equal(reason.name, "AbortError");
  assert.ok(
    await waitFor(() => cancelled, 2000),
    "the body stream was not cancelled",
  );
  // info.completed of the abandoned response rejects.
  await assert.rejects(abortedCompleted!);
  assert.equal(finished(), "true AbortError: The request has been cancelled.");
  // The access log shows the status and bytes that went out, not 0 0.
  assert.ok(
    await waitFor(
      () => h.logs.some((line) => /access GET \/forever 200 [1-9]/.test(line)),
      2000,
    ),
    h.logs.join("\n"),
  );
});

Deno.test("a client leaving mid-body of a response with a Content-Length ends its exchange once", async () => {
  let started!: () => void;
  const streaming = new Promise<void>((resolve) => started = resolve);
  await using h = await startHarness(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new Uint8Array(1000).fill(0x61));
          started();
        },
      }),
      { headers: { "content-length": "100000" } },
    )
  );
  const client = await h.raw();
  await client.write("GET /partial HTTP/1.1\r\nHost: x\r\n\r\n");
  await streaming;
  assert.equal((await client.readHead()).status, 200);
  client.close();
  assert.ok(
    await waitFor(() => h.server.connections === 0, 5000),
    "the connection stayed",
  );
  await delay(100);
  assert.equal(h.server.inFlight, 0);
  const access = h.logs.filter((line) => / access GET \/partial /.test(line));
  assert.equal(access.length, 1, h.logs.join("\n"));
  assert.match(access[0], / access GET \/partial 200 1000 /);
  assert.doesNotMatch(h.logs.join("\n"), /failed after the head was sent/);
});

Deno.test("a client leaving a large body made in one piece logs the bytes that went out, not the body's size", async () => {
  const size = 64 * 1024 * 1024;
  await using h = await startHarness(() =>
    new Response(new Uint8Array(size).fill(0x61))
  );
  const client = await h.raw();
  await client.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await client.readHead()).status, 200);
  await client.readSome();
  client.close();
  assert.ok(
    await waitFor(
      () => h.logs.some((line) => / access GET \/big /.test(line)),
      5000,
    ),
    h.logs.join("\n"),
  );
  const line = h.logs.find((line) => / access GET \/big /.test(line))!;
  const bytes = Number(/ access GET \/big 200 (\d+) /.exec(line)?.[1]);
  // mongrel2's credits let through what the sockets' buffers took, a few
  // MiB on loopback at most; the rest never left m2fetch.
  assert.ok(bytes > 0 && bytes < size / 2, line);
});

Deno.test("a WebSocket's access line counts the frames broadcast() sent it with a shared reply", async () => {
  await using h = await startHarness((request) => {
    const { socket, response } = upgradeWebSocket(request);
    socket.onopen = () => {
      // Three 7-byte frames ("hello" and a 2-byte header).
      for (let i = 0; i < 3; i++) broadcast([socket], "hello");
      socket.close(1000); // a 4-byte frame
    };
    return response;
  });
  const client = new WebSocket(`${h.url.replace(/^http/, "ws")}/ws`);
  const messages: string[] = [];
  client.onmessage = (event) => messages.push(event.data);
  await new Promise((resolve) => client.onclose = resolve);
  assert.deepEqual(messages, ["hello", "hello", "hello"]);
  assert.ok(
    await waitFor(
      () => h.logs.some((line) => / access GET \/ws /.test(line)),
      5000,
    ),
    h.logs.join("\n"),
  );
  const line = h.logs.find((line) => / access GET \/ws /.test(line))!;
  assert.match(line, / access GET \/ws 101 25 /);
});

Deno.test("a client leaving before the response aborts request.signal", async () => {
  let resolveAborted!: (reason: unknown) => void;
  const aborted = new Promise((resolve) => resolveAborted = resolve);
  let started!: () => void;
  const handlerStarted = new Promise<void>((resolve) => started = resolve);
  await using h = await startHarness((request) => {
    started();
    // A long poll: answer only when the client is gone.
    return new Promise((resolve) => {
      request.signal.addEventListener("abort", () => {
        resolveAborted(request.signal.reason);
        resolve(new Response("too late"));
      });
    });
  });
  const client = await h.raw();
  await client.write("GET /poll HTTP/1.1\r\nHost: x\r\n\r\n");
  await handlerStarted;
  client.close();
  const reason = await within(aborted, 5000, "timeout");
  assert.notEqual(reason, "timeout", "request.signal did not abort in 5 s");
  assert.ok(reason instanceof DOMException && reason.name === "AbortError");
  assert.ok(await waitFor(() => h.server.inFlight === 0, 2000));
});

Deno.test("a body stream failing mid-way closes the connection", async () => {
  const reasons: unknown[] = [];
  await using h = await startHarness((request) => {
    if (new URL(request.url).pathname !== "/broken") {
      return new Response("fine");
    }
    request.signal.addEventListener(
      "abort",
      () => reasons.push(request.signal.reason),
    );
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent) {
          await delay(20);
          controller.error(new Error("the body broke"));
          return;
        }
        sent = true;
        controller.enqueue(encoder.encode("partial"));
      },
    });
    return new Response(body);
  });
  await using client = await h.raw();
  await client.write("GET /broken HTTP/1.1\r\nHost: x\r\n\r\n");
  const head = await client.readHead();
  assert.equal(head.status, 200);
  assert.deepEqual(headerValues(head, "transfer-encoding"), ["chunked"]);
  // The chunked body never gets its last chunk: the server closes instead,
  // the only way to tell the client the body is incomplete.
  const rest = await client.waitForClose(5000);
  assert.ok(rest !== null, "the connection stayed open");
  const text = decoder.decode(rest);
  assert.ok(text.includes("partial"), text);
  assert.ok(!text.endsWith("0\r\n\r\n"), `looks complete: ${text}`);
  assert.ok(h.logs.some((line) => line.includes("the body broke")));
  // The handler's signal says what deno serve's says (checked with Deno
  // 2.9.6): the failure itself is the log's business.
  assert.equal(reasons.length, 1);
  assert.ok(reasons[0] instanceof DOMException);
  assert.equal(reasons[0].name, "AbortError");
  assert.equal(reasons[0].message, "The request has been cancelled.");
  const next = await h.fetch("/fine");
  assert.equal(await next.text(), "fine");
});

withHarness(
  "HTTP/1.0 gets a streamed body delimited by close",
  async (h) => {
    await using client = await h.raw();
    await client.write("GET /stream HTTP/1.0\r\nHost: x\r\n\r\n");
    const head = await client.readHead();
    assert.equal(head.statusLine, "HTTP/1.0 200 OK");
    // No chunked coding in HTTP/1.0, and the length is not known.
    assert.deepEqual(headerValues(head, "transfer-encoding"), []);
    assert.deepEqual(headerValues(head, "content-length"), []);
    const rest = await client.waitForClose(5000);
    assert.ok(rest !== null, "the connection stayed open");
    assert.equal(decoder.decode(rest), "one\ntwo\nthree\n");
  },
  {},
  (request) => {
    const lines = ["one\n", "two\n", "three\n"];
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await delay(30);
        const line = lines.shift();
        if (line === undefined) controller.close();
        else controller.enqueue(encoder.encode(line));
      },
    });
    void request;
    return new Response(body);
  },
);

withHarness(
  "a throwing handler gives 500 and the server keeps serving",
  async (h) => {
    const failed = await h.fetch("/throw");
    assert.equal(failed.status, 500);
    assert.equal(await failed.text(), "Internal Server Error");
    // Logged with its stack, like deno serve does.
    assert.ok(
      h.logs.some((line) =>
        line.includes("boom from the handler") &&
        line.includes("core_test.ts")
      ),
      `the error was not logged with its stack:\n${h.logs.join("\n")}`,
    );
    const next = await h.fetch("/text");
    assert.equal(next.status, 200);
    assert.equal(await next.text(), "hello world");
    // On the same connection too.
    await using client = await h.raw();
    await client.write(
      "GET /throw HTTP/1.1\r\nHost: x\r\n\r\nGET /text HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert.equal((await client.readResponse()).status, 500);
    const after = await client.readResponse();
    assert.equal(decoder.decode(after.body), "hello world");
  },
);

withHarness("a handler returning a non-Response gives 500", async (h) => {
  const failed = await h.fetch("/not-a-response");
  assert.equal(failed.status, 500);
  assert.equal(await failed.text(), "Internal Server Error");
  const next = await h.fetch("/text");
  assert.equal(await next.text(), "hello world");
});

Deno.test("JSON protocol mode serves the same requests", async () => {
  await using h = await startHarness(app, { protocol: "json" });
  assert.equal(h.mongrel2.handlers[0].protocol, "json");
  await checkMethods(h);
  await checkUrls(h);
  await checkBinary(h);
  await checkDuplicateHeaders(h);
  await checkSetCookies(h);
  await checkTabHeader(h);
});

Deno.test(
  "the CLI serves examples/hello.ts and exits 0 on SIGTERM",
  async () => {
    await using h = await startCliHarness("examples/hello.ts");
    const result = await curl(["-s", "-i", `${h.url}/`]);
    assert.equal(result.code, 0, result.stderr);
    const text = decoder.decode(result.stdout);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(text.endsWith("\r\n\r\nHello from m2fetch\n"), text);
    const status = await h.stop("SIGTERM");
    assert.equal(status.code, 0, h.output());
    assert.equal(status.signal, null);
    assert.ok(!isRunning(h.process.pid));
    assert.ok(h.output().includes("Shutting down"), h.output());
  },
);

Deno.test(
  "shutdown() finishes responses in flight, then serves requests that arrived meanwhile",
  async () => {
    await using h = await startHarness("examples/streaming.ts");
    await using client = await h.raw();
    await client.write(
      "GET /?lines=8&interval=100 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const head = await client.readHead();
    assert.equal(head.status, 200);
    const stopped = h.server.shutdown(5000);
    // A request arriving during the drain waits until receiving stopped,
    // then is served (refusing it would fail a client that did nothing
    // wrong; anything mongrel2 gets later waits there for the next m2fetch).
    await using late = await h.raw();
    await late.write("GET /?lines=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    const lateResponse = late.readResponse();
    // The response in flight gets every line: with download.flow_control
    // mongrel2 sends a credits notice after each write and stalls that
    // client while no handler takes it, so m2fetch must keep receiving
    // until the drain is over.
    let text = "";
    for await (const piece of client.readBody(head)) {
      text += decoder.decode(piece);
    }
    assert.ok(text.endsWith("line 8 of 8\n"), text);
    const served = await lateResponse;
    assert.equal(served.status, 200);
    assert.equal(decoder.decode(served.body), "line 1 of 1\n");
    await stopped;
    assert.equal(h.server.inFlight, 0);
  },
);

Deno.test(
  "shutdown(timeout) cuts a response still streaming when the timeout runs out, not 1,024 credits notices later",
  async () => {
    await using h = await startHarness("examples/streaming.ts");
    await using client = await h.raw();
    // A line every 10 ms for 10 s: each write brings a credits notice, so
    // the link to mongrel2 is never quiet while the response goes on.
    await client.write(
      "GET /?lines=1000&interval=10 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const head = await client.readHead();
    assert.equal(head.status, 200);
    const started = performance.now();
    await h.server.shutdown(500);
    const took = performance.now() - started;
    assert.ok(
      took < 2500,
      `shutdown(500) took ${Math.round(took)} ms\n${h.logs.join("\n")}`,
    );
    assert.ok(
      h.logs.some((line) =>
        line.includes("Shutdown timeout of 500 ms reached: cutting off 1")
      ),
      h.logs.join("\n"),
    );
    assert.equal(h.server.inFlight, 0);
  },
);

Deno.test(
  "the CLI finishes a response in flight on SIGTERM, then exits 0",
  async () => {
    await using h = await startCliHarness("examples/streaming.ts");
    await using client = await h.raw();
    await client.write(
      "GET /?lines=8&interval=100 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    const head = await client.readHead();
    assert.equal(head.status, 200);
    const stopped = h.stop("SIGTERM");
    let text = "";
    const read = (async () => {
      for await (const piece of client.readBody(head)) {
        text += decoder.decode(piece);
      }
    })();
    const outcome = await within(read.then(() => "done"), 5000, "timeout");
    assert.equal(outcome, "done", `the response stopped at: ${text}`);
    assert.ok(text.endsWith("line 8 of 8\n"), text);
    const status = await stopped;
    assert.equal(status.code, 0, h.output());
    assert.ok(!isRunning(h.process.pid));
  },
);

/** A handler module whose every request leaves a timer that throws. */
function throwingTimerApp(afterMs: number): string {
  return `export default {
  fetch() {
    setTimeout(() => { throw new Error("uncaught in a timer"); }, ${afterMs});
    return new Response("ok");
  },
};
`;
}

/** Every line of a `--log-format json` log, parsed: each must be JSON. */
function jsonLogRecords(output: string): Record<string, string>[] {
  return output.split("\n").filter((line) => line !== "").map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      assert.fail(`not a JSON line: ${line}\n${output}`);
    }
  });
}

Deno.test(
  "an uncaught error in handler code ends the CLI with exit 1 and the error, like deno serve",
  async () => {
    await using tmp = await tempDir("m2u-");
    const app = `${tmp.path}/uncaught.ts`;
    await Deno.writeTextFile(app, throwingTimerApp(300));

    // What deno serve does: answer, then die of the error with exit 1.
    await using direct = await startDenoServe(app);
    assert.equal(await (await fetch(direct.url)).text(), "ok");
    const directStatus = await within(direct.status, 15_000, null);
    assert.ok(directStatus !== null, "deno serve kept running");
    assert.equal(directStatus.code, 1);
    assert.match(direct.output(), /uncaught in a timer/);

    // m2fetch the same: exit 1 with the message, not a crash by signal.
    await using h = await startCliHarness(app);
    const result = await curl(["-s", `${h.url}/`]);
    assert.equal(decoder.decode(result.stdout), "ok");
    const status = await within(h.process.status, 15_000, null);
    assert.ok(status !== null, "m2fetch kept running");
    assert.equal(status.signal, null, h.output());
    assert.equal(status.code, 1);
    assert.match(h.output(), /uncaught in a timer/);
    assert.ok(!isRunning(h.process.pid));
  },
);

Deno.test(
  "Deno.exit() in a handler on the main thread ends the CLI with its code, and the log says so",
  async () => {
    await using tmp = await tempDir("m2u-");
    const app = `${tmp.path}/exits.ts`;
    await Deno.writeTextFile(
      app,
      `export default { fetch() { Deno.exit(3); } };\n`,
    );
    await using h = await startCliHarness(app);
    // No answer comes: mongrel2 holds the request for the next m2fetch.
    const request = curl(["-s", "-m", "1", `${h.url}/`]);
    const status = await within(h.process.status, 15_000, null);
    await request;
    assert.ok(status !== null, "m2fetch kept running");
    assert.equal(status.code, 3, h.output());
    assert.match(
      h.output(),
      / error Handler code called Deno\.exit\(3\); exiting with 3, cutting the requests in flight\n/,
    );
  },
);

Deno.test(
  "with --workers and --log-format json, a worker's uncaught error is a JSON line with its stack, and the worker is replaced",
  async () => {
    await using tmp = await tempDir("m2u-");
    const app = `${tmp.path}/uncaught.ts`;
    await Deno.writeTextFile(app, throwingTimerApp(100));
    await using h = await startCliHarness(app, {
      args: ["--workers", "1", "--log-format", "json"],
    });
    assert.equal(await (await fetch(h.url)).text(), "ok");
    assert.ok(
      await waitFor(
        () => h.output().includes("Handler worker 0 replaced"),
        10_000,
      ),
      h.output(),
    );
    assert.equal(await (await fetch(h.url)).text(), "ok");
    const [crash] = jsonLogRecords(h.output()).filter((record) =>
      record.level === "error"
    );
    assert.match(
      crash.message,
      /^Handler worker 0 threw an uncaught error \(Error: uncaught in a timer\); replacing it/,
    );
    assert.match(crash.error, /uncaught in a timer\n\s+at .*uncaught\.ts:3/);
  },
);

Deno.test(
  "with --log-format json, a stray rejection and an uncaught error are logged as JSON lines",
  async () => {
    await using tmp = await tempDir("m2u-");
    const app = `${tmp.path}/stray.ts`;
    await Deno.writeTextFile(
      app,
      `export default {
        fetch(request) {
          if (new URL(request.url).pathname === "/reject") {
            Promise.reject(new Error("stray rejection"));
          } else {
            setTimeout(() => { throw new Error("uncaught in a timer"); }, 100);
          }
          return new Response("ok");
        },
      };\n`,
    );
    await using h = await startCliHarness(app, {
      args: ["--log-format", "json"],
    });
    assert.equal(await (await fetch(`${h.url}/reject`)).text(), "ok");
    assert.equal(await (await fetch(`${h.url}/`)).text(), "ok");
    const status = await within(h.process.status, 15_000, null);
    assert.equal(status?.code, 1, h.output());
    const errors = jsonLogRecords(h.output()).filter((record) =>
      record.level === "error"
    );
    assert.deepEqual(errors.map((record) => record.message), [
      "Unhandled promise rejection in handler code; still serving",
      "Uncaught error in handler code; exiting with 1",
    ]);
    assert.match(errors[0].error, /stray rejection/);
    assert.match(errors[1].error, /uncaught in a timer/);
  },
);
