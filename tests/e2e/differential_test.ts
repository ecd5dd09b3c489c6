/**
 * Differential tests: each example module is served twice, unchanged, by
 * `deno serve` (a subprocess) and by m2fetch behind a real mongrel2 (the
 * `cli.ts` subprocess), and a table of requests is sent to both with
 * `fetch`. Status, headers and body must be equal.
 *
 * Headers compared: all of them, as `fetch` exposes them (names lower-cased,
 * sorted, repeated headers combined; `set-cookie` kept apart), except:
 *
 * - `date`: the clock moves between the two requests;
 * - `server`: neither sets it today, but a proxy's name is not the app's.
 *
 * Transport-level headers are compared too: `content-length` and
 * `transfer-encoding` must match. Both servers frame a string, bytes or
 * `URLSearchParams` body with `content-length`, a stream that is still
 * producing with `transfer-encoding: chunked`, and a HEAD whose body is a
 * stream with neither. (`deno serve` 2.9 does not compress responses on its
 * own, so `accept-encoding` makes no difference; if it ever does, the body
 * comparison will show it.)
 *
 * One difference is allowed, only for the cases that give `knownLength`:
 * bodies that `deno serve` sends as a stream although they are complete
 * when the head is written: a `Blob`, a `FormData`, or a `ReadableStream`
 * that has already closed (`examples/streaming.ts?lines=1&interval=0`
 * enqueues its only line and closes at once). `deno serve` frames those as
 * chunked (and a HEAD for them with no length at all); m2fetch's
 * `ResponseEncoder` reads the body bytes that are ready within a few
 * microtask turns before writing the head (how it gives string bodies a
 * `content-length`: the Fetch API does not say what a body was made from),
 * so it sees the whole body and sends `content-length`. Doing what
 * `deno serve` does would need Deno's private `Response` internals. Both
 * framings deliver the same bytes; for these cases the test checks that
 * `deno serve` sent no length, that m2fetch sent exactly `knownLength` and
 * no chunked coding, and that everything else is equal.
 *
 * Run: `deno test -A tests/e2e/differential_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { startCliHarness, startDenoServe } from "./harness.ts";

/** One request of the table. */
interface Case {
  /** Shown in the step name. */
  name: string;
  path: string;
  method?: string;
  headers?: Record<string, string>;
  /** A body factory: `FormData` boundaries must be fresh per request. */
  body?: () => BodyInit;
  /**
   * The body is complete when the head is written but `deno serve` streams
   * it: m2fetch sends this `content-length` instead (see above).
   */
  knownLength?: number;
}

/** What is compared. */
interface Observed {
  status: number;
  statusText: string;
  headers: [string, string][];
  body: string;
}

const IGNORED_HEADERS = new Set(["date", "server"]);

async function observe(
  client: Deno.HttpClient,
  base: string,
  item: Case,
): Promise<Observed> {
  const response = await fetch(`${base}${item.path}`, {
    client,
    method: item.method ?? "GET",
    headers: item.headers,
    body: item.body?.(),
    redirect: "manual",
  });
  const bytes = new Uint8Array(await response.arrayBuffer());
  return {
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers].filter(([name]) =>
      !IGNORED_HEADERS.has(name)
    ),
    // Bodies are compared as bytes, shown as latin1 so any byte prints.
    body: String.fromCharCode(...bytes),
  };
}

function header(observed: Observed, name: string): string | undefined {
  return observed.headers.find(([key]) => key === name)?.[1];
}

function withoutFraming(headers: [string, string][]): [string, string][] {
  return headers.filter(([name]) =>
    name !== "content-length" && name !== "transfer-encoding"
  );
}

const json = (value: unknown) => () => JSON.stringify(value);
const JSON_TYPE = { "content-type": "application/json" };
const FORM_TYPE = { "content-type": "application/x-www-form-urlencoded" };

const TABLES: Record<string, Case[]> = {
  "examples/hello.ts": [
    { name: "GET /", path: "/" },
    { name: "GET with a query", path: "/any/where?x=1&y=%20" },
    { name: "HEAD /", path: "/", method: "HEAD" },
    {
      name: "POST with a body",
      path: "/",
      method: "POST",
      body: () => "ignored",
    },
  ],
  "examples/echo.ts": [
    { name: "GET the form", path: "/" },
    { name: "HEAD the form", path: "/", method: "HEAD" },
    {
      name: "POST urlencoded",
      path: "/",
      method: "POST",
      headers: FORM_TYPE,
      body: () => "name=Ada+Lovelace&lang=ts&lang=c&note=%E2%9C%93%26",
    },
    {
      name: "POST multipart with a file",
      path: "/",
      method: "POST",
      body: () => {
        const form = new FormData();
        form.append("name", "Ada");
        form.append("tag", "a");
        form.append("tag", "b");
        form.append(
          "file",
          new File(["hello\n"], "hello.txt", { type: "text/plain" }),
        );
        return form;
      },
    },
    {
      name: "POST JSON",
      path: "/",
      method: "POST",
      headers: JSON_TYPE,
      body: json({ a: [1, 2.5, "✓"], b: { c: null, d: true } }),
    },
    {
      name: "POST JSON scalar",
      path: "/",
      method: "POST",
      headers: { "content-type": "application/json; charset=utf-8" },
      body: json("just a string"),
    },
    {
      name: "POST broken JSON",
      path: "/",
      method: "POST",
      headers: JSON_TYPE,
      body: () => "{nope",
    },
    {
      name: "POST text/plain",
      path: "/",
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: () => "plain",
    },
    {
      name: "POST octet-stream, read with a BYOB reader",
      path: "/",
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: () => new Uint8Array(5000).fill(7),
    },
    { name: "PUT", path: "/", method: "PUT", body: () => "x" },
  ],
  "examples/hono_app.ts": [
    { name: "GET /", path: "/" },
    { name: "GET /greet", path: "/greet" },
    { name: "GET /greet?name=Ada", path: "/greet?name=Ada" },
    { name: "GET /greet encoded", path: "/greet?name=%C3%A9+%26+x" },
    {
      name: "POST /items",
      path: "/items",
      method: "POST",
      headers: JSON_TYPE,
      body: json({ name: "widget", qty: 3 }),
    },
    {
      name: "POST /items again",
      path: "/items",
      method: "POST",
      headers: JSON_TYPE,
      body: json({ name: "gadget" }),
    },
    {
      name: "POST /items without a name",
      path: "/items",
      method: "POST",
      headers: JSON_TYPE,
      body: json({ qty: 1 }),
    },
    {
      name: "POST /items broken JSON",
      path: "/items",
      method: "POST",
      headers: JSON_TYPE,
      body: () => "{",
    },
    { name: "GET /items/42", path: "/items/42" },
    { name: "GET /items/a%20b", path: "/items/a%20b" },
    { name: "404", path: "/no/such/route" },
    { name: "DELETE 404", path: "/items/1", method: "DELETE" },
    { name: "HEAD /", path: "/", method: "HEAD" },
    { name: "HEAD /greet", path: "/greet?name=x", method: "HEAD" },
  ],
  "examples/streaming.ts": [
    { name: "GET a short stream", path: "/?lines=3&interval=20" },
    {
      name: "GET one line",
      path: "/?lines=1&interval=0",
      knownLength: 12,
    },
    { name: "HEAD a stream", path: "/?lines=3&interval=20", method: "HEAD" },
    { name: "POST", path: "/", method: "POST", body: () => "x" },
  ],
};

/**
 * A module with the handler edge cases: errors, odd statuses, repeated
 * headers, body kinds. Written to a temp dir, so both servers load the very
 * same file.
 */
const EDGE_APP = `
const text = new TextEncoder();
export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    switch (path) {
      case "/throw": throw new Error("thrown on purpose");
      case "/async-throw": await Promise.resolve(); throw new Error("later");
      case "/not-a-response": return "not a response";
      case "/null": return null;
      case "/teapot": return new Response("short and stout", { status: 418 });
      case "/unknown-status": return new Response("?", { status: 599 });
      case "/status-text":
        return new Response("x", { status: 200, statusText: "Fine Thanks" });
      case "/cookies": {
        const headers = new Headers({ "X-Upper-Case": "Yes" });
        headers.append("set-cookie", "a=1; Path=/");
        headers.append("set-cookie", "b=2; Expires=Wed, 21 Oct 2099 07:28:00 GMT");
        headers.append("x-multi", "1");
        headers.append("x-multi", "2");
        return new Response("cookies", { headers });
      }
      case "/declared-length":
        return new Response(new ReadableStream({
          start(controller) {
            controller.enqueue(text.encode("abc"));
            setTimeout(() => {
              try {
                controller.enqueue(text.encode("def"));
                controller.close();
              } catch { /* cancelled (HEAD) */ }
            }, 20);
          },
        }), { headers: { "content-length": "6" } });
      case "/empty-stream":
        return new Response(new ReadableStream({
          start(controller) {
            setTimeout(() => {
              try { controller.close(); } catch { /* cancelled (HEAD) */ }
            }, 20);
          },
        }));
      case "/closed-stream":
        return new Response(new ReadableStream({
          start(controller) {
            controller.enqueue(new Uint8Array([0, 1, 2, 255]));
            controller.close();
          },
        }));
      case "/blob":
        return new Response(new Blob(["blob!"], { type: "text/x-blob" }));
      case "/search-params":
        return new Response(new URLSearchParams({ a: "1 2", b: "&" }));
      case "/empty": return new Response("");
      case "/redirect": return Response.redirect("http://example.com/next", 307);
      case "/no-content":
        return new Response(null, { status: 204, headers: { "x-a": "b" } });
      case "/not-modified":
        return new Response(null, { status: 304, headers: { etag: '"v1"' } });
      case "/head-length":
        // A handler that skips the body of a HEAD but says how long it is.
        return new Response(request.method === "HEAD" ? null : "x".repeat(1234), {
          headers: { "content-length": "1234" },
        });
      case "/many-headers": {
        const headers = new Headers();
        for (let i = 0; i < 150; i++) headers.append("x-h" + (i % 60), String(i));
        return new Response("many", { headers });
      }
      case "/length": {
        const body = new Uint8Array(await request.arrayBuffer());
        return Response.json({ method: request.method, length: body.length });
      }
    }
    return new Response("default");
  },
};
`;

const EDGE_TABLE: Case[] = [
  ...[
    "/throw",
    "/async-throw",
    "/not-a-response",
    "/null",
    "/teapot",
    "/unknown-status",
    "/status-text",
    "/cookies",
    "/declared-length",
    "/empty-stream",
    "/search-params",
    "/empty",
    "/redirect",
    "/no-content",
    "/not-modified",
    "/head-length",
    "/many-headers",
  ].flatMap((path): Case[] => [
    { name: `GET ${path}`, path },
    { name: `HEAD ${path}`, path, method: "HEAD" },
  ]),
  { name: "GET /closed-stream", path: "/closed-stream", knownLength: 4 },
  {
    name: "HEAD /closed-stream",
    path: "/closed-stream",
    method: "HEAD",
    knownLength: 4,
  },
  { name: "GET /blob", path: "/blob", knownLength: 5 },
  { name: "HEAD /blob", path: "/blob", method: "HEAD", knownLength: 5 },
  ...["POST", "PUT", "PATCH", "DELETE", "OPTIONS"].map((method): Case => ({
    name: `${method} with a body`,
    path: "/length",
    method,
    body: () => "x".repeat(1000),
  })),
  { name: "OPTIONS without a body", path: "/length", method: "OPTIONS" },
];

async function compare(t: Deno.TestContext, app: string, table: Case[]) {
  await using direct = await startDenoServe(app);
  await using m2fetch = await startCliHarness(app);
  const directClient = Deno.createHttpClient({});
  const m2Client = Deno.createHttpClient({});
  try {
    for (const item of table) {
      await t.step(item.name, async () => {
        const expected = await observe(directClient, direct.url, item);
        const actual = await observe(m2Client, m2fetch.url, item);
        if (item.knownLength !== undefined) {
          assert.equal(header(expected, "content-length"), undefined);
          assert.equal(
            header(expected, "transfer-encoding"),
            item.method === "HEAD" ? undefined : "chunked",
          );
          assert.equal(header(actual, "transfer-encoding"), undefined);
          assert.equal(
            header(actual, "content-length"),
            String(item.knownLength),
          );
          expected.headers = withoutFraming(expected.headers);
          actual.headers = withoutFraming(actual.headers);
        }
        assert.deepEqual(actual, expected);
      });
    }
  } finally {
    directClient.close();
    m2Client.close();
  }
}

for (const [app, table] of Object.entries(TABLES)) {
  Deno.test(
    `deno serve and m2fetch answer ${app} alike`,
    (t) => compare(t, app, table),
  );
}

Deno.test("deno serve and m2fetch handle handler edge cases alike", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "m2d-" });
  try {
    await Deno.writeTextFile(`${dir}/edge_app.js`, EDGE_APP);
    await compare(t, `${dir}/edge_app.js`, EDGE_TABLE);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
