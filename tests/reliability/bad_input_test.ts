/**
 * Odd and hostile client input through a real mongrel2 (issue 7): each
 * request gets a defined response, in both handler protocols, and m2fetch
 * answers a normal request afterwards (on the same connection when it
 * stays open, and on a new one). Behaviour of mongrel2 1.12.2 that these
 * tests rely on is in docs/reliability.md.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Harness,
  type RawResponse,
  startHarness,
} from "../e2e/harness.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the handler saw, sent back as JSON. */
interface Seen {
  method: string;
  url: string;
  headers: [string, string][];
  bodyLength: number;
}

async function echo(request: Request): Promise<Response> {
  const body = await request.arrayBuffer();
  return Response.json(
    {
      method: request.method,
      url: request.url,
      headers: [...request.headers],
      bodyLength: body.byteLength,
    } satisfies Seen,
  );
}

function bytes(...parts: (string | number[])[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === "string") out.push(...encoder.encode(part));
    else out.push(...part);
  }
  return new Uint8Array(out);
}

function seen(response: RawResponse): Seen {
  return JSON.parse(decoder.decode(response.body));
}

function header(response: RawResponse, name: string): string | undefined {
  return seen(response).headers.find(([key]) => key === name)?.[1];
}

interface Case {
  name: string;
  request: string | Uint8Array;
  /** The status the client must see. */
  status: number;
  /** Whether mongrel2 or m2fetch closes the connection after it. */
  closes: boolean;
  check?: (response: RawResponse) => void;
}

const HEAD = "Host: localhost\r\n";

/** Cases whose bytes fit mongrel2's default 4 KiB header buffer. */
const COMMON: Case[] = [
  {
    name: "five duplicate headers arrive as five values",
    request: `GET /dup HTTP/1.1\r\n${HEAD}${
      [0, 1, 2, 3, 4].map((i) => `X-Dup: ${i}\r\n`).join("")
    }\r\n`,
    status: 200,
    closes: false,
    check: (r) => assert.equal(header(r, "x-dup"), "0, 1, 2, 3, 4"),
  },
  {
    name: "six duplicate headers: mongrel2 keeps five",
    request: `GET /dup HTTP/1.1\r\n${HEAD}${
      [0, 1, 2, 3, 4, 5].map((i) => `X-Dup: ${i}\r\n`).join("")
    }\r\n`,
    status: 200,
    closes: false,
    check: (r) => assert.equal(header(r, "x-dup"), "0, 1, 2, 3, 4"),
  },
  {
    name: "raw TAB and Latin-1 bytes in values arrive as byte strings",
    request: bytes(
      `GET /bytes HTTP/1.1\r\n${HEAD}X-Tab: a\tb\r\nX-Latin: caf`,
      [0xe9],
      "\r\nX-Utf8: caf",
      [0xc3, 0xa9],
      "\r\n\r\n",
    ),
    status: 200,
    closes: false,
    check: (r) => {
      assert.equal(header(r, "x-tab"), "a\tb");
      assert.equal(header(r, "x-latin"), "caf\u00e9");
      // One character per byte, as Deno.serve gives header values.
      assert.equal(header(r, "x-utf8"), "caf\u00c3\u00a9");
    },
  },
  {
    name: "a percent-encoded NUL in the path stays encoded",
    request: `GET /a%00b?x=%00 HTTP/1.1\r\n${HEAD}\r\n`,
    status: 200,
    closes: false,
    check: (r) => {
      const url = new URL(seen(r).url);
      assert.equal(url.pathname, "/a%00b");
      assert.equal(url.search, "?x=%00");
    },
  },
  {
    name:
      "Content-Length above 2^31 (mongrel2 passes no body): m2fetch answers 400 and closes",
    request: `POST /big HTTP/1.1\r\n${HEAD}Content-Length: 3000000000\r\n\r\n`,
    status: 400,
    closes: true,
  },
  {
    name: "Content-Length 2^31 exactly: 400",
    request: `POST /big HTTP/1.1\r\n${HEAD}Content-Length: 2147483648\r\n\r\n`,
    status: 400,
    closes: true,
  },
  {
    name: "negative Content-Length: 400",
    request: `POST /neg HTTP/1.1\r\n${HEAD}Content-Length: -5\r\n\r\n`,
    status: 400,
    closes: true,
  },
  {
    name:
      "Content-Length above 2^31 with body bytes: mongrel2 reads them as a request and answers 400",
    request:
      `POST /big HTTP/1.1\r\n${HEAD}Content-Length: 3000000000\r\n\r\nhello`,
    status: 400,
    closes: true,
  },
  {
    name:
      "absolute-form URI: mongrel2 strips the scheme, the authority stays in the path",
    request: `GET http://x/y?q=1 HTTP/1.1\r\n${HEAD}\r\n`,
    status: 200,
    closes: false,
    check: (r) => {
      const url = new URL(seen(r).url);
      assert.equal(url.host, "localhost");
      assert.equal(url.pathname, "//x/y");
      assert.equal(url.search, "?q=1");
    },
  },
  {
    name: "a 3000-byte path",
    request: `GET /${"p".repeat(2999)} HTTP/1.1\r\n${HEAD}\r\n`,
    status: 200,
    closes: false,
    check: (r) => assert.equal(new URL(seen(r).url).pathname.length, 3000),
  },
  {
    name: "HTTP/1.0 without keep-alive: answered, then closed by m2fetch",
    request: `GET /old HTTP/1.0\r\n${HEAD}\r\n`,
    status: 200,
    closes: true,
  },
  ...["JSON", "XML", "WEBSOCKET"].map((method) => ({
    name:
      `a client's ${method} method, one mongrel2 also gives its own messages: served as deno serve serves it`,
    request: `${method} /m HTTP/1.1\r\n${HEAD}\r\n`,
    status: 200,
    closes: false,
    check: (r: RawResponse) => assert.equal(seen(r).method, method),
  })),
  {
    name: "a lower-case method: mongrel2 answers 400",
    request: `get / HTTP/1.1\r\n${HEAD}\r\n`,
    status: 400,
    closes: true,
  },
];

const MANY_HEADERS = Array.from(
  { length: 1000 },
  (_, i) => `X-H${i}: v${i}\r\n`,
).join("");
const BIG_VALUE = "v".repeat(8192);

/** Cases larger than mongrel2's default buffer, with `limits.buffer_size` raised. */
const LARGE: Case[] = [
  {
    name: "1,000 headers reach the handler",
    request: `GET /many HTTP/1.1\r\n${HEAD}${MANY_HEADERS}\r\n`,
    status: 200,
    closes: false,
    check: (r) => {
      const names = seen(r).headers.map(([name]) => name);
      assert.equal(names.filter((name) => name.startsWith("x-h")).length, 1000);
      assert.equal(header(r, "x-h999"), "v999");
    },
  },
  {
    name: "an 8 KiB header value reaches the handler",
    request: `GET /big HTTP/1.1\r\n${HEAD}X-Big: ${BIG_VALUE}\r\n\r\n`,
    status: 200,
    closes: false,
    check: (r) => assert.equal(header(r, "x-big"), BIG_VALUE),
  },
  {
    name: "an 8000-byte path",
    request: `GET /${"p".repeat(7999)} HTTP/1.1\r\n${HEAD}\r\n`,
    status: 200,
    closes: false,
    check: (r) => assert.equal(new URL(seen(r).url).pathname.length, 8000),
  },
];

/** The same requests with mongrel2's default 4 KiB buffer: mongrel2's own 400. */
const OVER_BUFFER: Case[] = LARGE.map((item) => ({
  name: `${
    item.name.replace(/ reach.*$/, "")
  }: over the default buffer, mongrel2 answers 400`,
  request: item.request,
  status: 400,
  closes: true,
}));

async function normalRequest(harness: Harness, label: string): Promise<void> {
  await using client = await harness.raw();
  await client.write(`GET /normal HTTP/1.1\r\n${HEAD}\r\n`);
  const response = await client.readResponse();
  assert.equal(response.status, 200, `normal request after ${label}`);
  assert.equal(new URL(seen(response).url).pathname, "/normal");
}

async function runCases(harness: Harness, cases: Case[]): Promise<void> {
  for (const item of cases) {
    await using client = await harness.raw();
    await client.write(item.request);
    const response = await client.readResponse();
    assert.equal(
      response.status,
      item.status,
      `${item.name}: ${response.statusLine}\n${decoder.decode(response.body)}`,
    );
    item.check?.(response);
    if (item.closes) {
      assert.notEqual(
        await client.waitForClose(5000),
        null,
        `${item.name}: the connection stayed open`,
      );
    } else {
      // Still usable: the next request on the same connection is answered.
      await client.write(`GET /same HTTP/1.1\r\n${HEAD}\r\n`);
      const next = await client.readResponse();
      assert.equal(next.status, 200, `${item.name}: next on the same conn`);
    }
    client.close();
    await normalRequest(harness, item.name);
  }
}

for (const protocol of ["json", "tnetstring"] as const) {
  Deno.test(`bad input through mongrel2 (${protocol} handler): each gets a defined response, then normal requests are answered`, async () => {
    await using harness = await startHarness(echo, {
      protocol,
      settings: { "limits.buffer_size": 65536 },
    });
    await runCases(harness, [...COMMON, ...LARGE]);
    assert.deepEqual(
      harness.logs.filter((line) => / error /.test(line)),
      [],
    );
  });
}

Deno.test("bad input over mongrel2's default 4 KiB buffer: mongrel2 answers 400, m2fetch keeps serving", async () => {
  await using harness = await startHarness(echo);
  await runCases(harness, OVER_BUFFER);
  // m2fetch never saw those requests.
  assert.ok(!harness.logs.some((line) => /\/many|\/big/.test(line)));
});

/**
 * Requests the client (or a proxy in front) and mongrel2 may read
 * differently. Bodies mongrel2 frames otherwise than the client meant: what
 * the client sent as body (here a whole request) reaches mongrel2 as a
 * request of its own, which a proxy in front never saw as one. And two Host
 * headers, of which mongrel2 routes by one and `request.url` takes one.
 */
const SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
const AMBIGUOUS: [string, string][] = [
  [
    "two Content-Length values (mongrel2 reads the first)",
    `POST /cl HTTP/1.1\r\n${HEAD}Content-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
  ],
  [
    "a Transfer-Encoding other than chunked (mongrel2 reads no body)",
    `POST /te HTTP/1.1\r\n${HEAD}Transfer-Encoding: gzip\r\n\r\n${SMUGGLED}`,
  ],
  [
    "Transfer-Encoding with Content-Length (mongrel2 reads by length)",
    `POST /clte HTTP/1.1\r\n${HEAD}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  ],
  [
    "two Host headers",
    `GET /host HTTP/1.1\r\n${HEAD}Host: evil.example\r\n\r\n${SMUGGLED}`,
  ],
];

for (const protocol of ["json", "tnetstring"] as const) {
  Deno.test(`a request mongrel2 may read otherwise than the client (${protocol} handler): 400 and closed, as deno serve answers, and what followed is never served`, async () => {
    const served: string[] = [];
    await using harness = await startHarness((request) => {
      served.push(new URL(request.url).pathname);
      return echo(request);
    }, { protocol });
    for (const [name, request] of AMBIGUOUS) {
      await using client = await harness.raw();
      await client.write(request);
      const response = await client.readResponse();
      assert.equal(response.status, 400, name);
      assert.notEqual(await client.waitForClose(5000), null, name);
    }
    await normalRequest(harness, "the ambiguous requests");
    assert.deepEqual(served, ["/normal"]);
  });
}
