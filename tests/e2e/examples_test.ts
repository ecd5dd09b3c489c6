/**
 * Each example in `examples/` answers as its module docs say, served by
 * m2fetch behind a real mongrel2.
 *
 * Run: `deno test -A tests/e2e/examples_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  curl,
  delay,
  headerValues,
  startCliHarness,
  startHarness,
  waitFor,
} from "./harness.ts";

const decoder = new TextDecoder();

Deno.test("examples/hello.ts says hello", async () => {
  await using h = await startHarness("examples/hello.ts");
  const response = await h.fetch("/");
  assert.equal(response.status, 200);
  assert.equal(
    response.headers.get("content-type"),
    "text/plain; charset=utf-8",
  );
  assert.equal(await response.text(), "Hello from m2fetch\n");
});

Deno.test("examples/streaming.ts writes ten lines over a second", async () => {
  await using h = await startHarness("examples/streaming.ts");
  const started = performance.now();
  const response = await h.fetch("/");
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("transfer-encoding"), "chunked");
  assert.equal(response.headers.get("cache-control"), "no-store");
  const reader = response.body!.getReader();
  const arrivals: number[] = [];
  let text = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    arrivals.push(performance.now() - started);
    text += decoder.decode(value, { stream: true });
  }
  const expected = Array.from(
    { length: 10 },
    (_, i) => `line ${i + 1} of 10\n`,
  ).join("");
  assert.equal(text, expected);
  // Written over time, not all at the end: the nine 100 ms pauses lie
  // between the first line's arrival and the last's (measured from the
  // first, so a slow start on a busy machine does not count).
  assert.ok(arrivals.length >= 5, `only ${arrivals.length} reads`);
  const spread = arrivals.at(-1)! - arrivals[0];
  assert.ok(spread >= 800, `all lines within ${spread} ms`);
});

Deno.test("examples/streaming.ts takes lines and interval", async () => {
  await using h = await startHarness("examples/streaming.ts");
  const response = await h.fetch("/?lines=3&interval=0");
  assert.equal(
    await response.text(),
    "line 1 of 3\nline 2 of 3\nline 3 of 3\n",
  );
  const post = await h.fetch("/", { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
});

Deno.test("examples/streaming.ts stops when the client leaves", async () => {
  await using h = await startHarness("examples/streaming.ts");
  await using client = await h.raw();
  await client.write(
    "GET /?lines=20&interval=500 HTTP/1.1\r\nHost: x\r\n\r\n",
  );
  const head = await client.readHead();
  assert.equal(head.status, 200);
  const first = decoder.decode(await client.readSome() ?? undefined);
  assert.match(first, /line 1 of 20/);
  assert.equal(h.server.inFlight, 1);
  client.close();
  // The stream would run for 10 s; leaving ends the exchange at once.
  assert.ok(
    await waitFor(() => h.server.inFlight === 0, 3000),
    "the streaming response was still in flight 3 s after the client left",
  );
});

Deno.test("examples/echo.ts serves a form and echoes posts", async () => {
  await using h = await startHarness("examples/echo.ts");

  const page = await h.fetch("/");
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  const html = await page.text();
  assert.match(html, /<form method="post" enctype="multipart\/form-data">/);

  const form = await h.fetch("/", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: "name=Ada+Lovelace&lang=ts&lang=c&mark=%E2%9C%93",
  });
  assert.equal(form.headers.get("content-type"), "application/json");
  assert.deepEqual(await form.json(), {
    name: "Ada Lovelace",
    lang: ["ts", "c"],
    mark: "✓",
  });

  const multipart = new FormData();
  multipart.append("name", "Ada");
  multipart.append(
    "file",
    new File([new Uint8Array(300).fill(7)], "data.bin", {
      type: "application/octet-stream",
    }),
  );
  const upload = await h.fetch("/", { method: "POST", body: multipart });
  assert.deepEqual(await upload.json(), {
    name: "Ada",
    file: { name: "data.bin", type: "application/octet-stream", size: 300 },
  });

  const value = { a: [1, 2.5, "✓"], b: { c: null, d: true } };
  const echoed = await h.fetch("/", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(value),
  });
  assert.deepEqual(await echoed.json(), value);

  const broken = await h.fetch("/", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{nope",
  });
  assert.equal(broken.status, 400);
  await broken.body?.cancel();

  const plain = await h.fetch("/", {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: "x",
  });
  assert.equal(plain.status, 415);
  await plain.body?.cancel();

  const put = await h.fetch("/", { method: "PUT", body: "x" });
  assert.equal(put.status, 405);
  assert.equal(put.headers.get("allow"), "GET, HEAD, POST");
  await put.body?.cancel();
});

Deno.test("examples/echo.ts echoes a curl multipart upload", async () => {
  await using h = await startHarness("examples/echo.ts");
  const dir = await Deno.makeTempDir({ prefix: "m2x-" });
  try {
    await Deno.writeTextFile(`${dir}/note.txt`, "a note\n");
    const result = await curl([
      "-s",
      "-F",
      "who=curl",
      "-F",
      `note=@${dir}/note.txt;type=text/plain`,
      `${h.url}/`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(decoder.decode(result.stdout)), {
      who: "curl",
      note: { name: "note.txt", type: "text/plain", size: 7 },
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("examples/hono_app.ts routes like a Hono app", async () => {
  await using h = await startHarness("examples/hono_app.ts");

  const root = await h.fetch("/");
  assert.equal(await root.text(), "Hello Hono!");
  assert.match(root.headers.get("content-type")!, /^text\/plain/);

  const greet = await h.fetch("/greet?name=Ada");
  assert.deepEqual(await greet.json(), { message: "Hello, Ada!" });
  const world = await h.fetch("/greet");
  assert.deepEqual(await world.json(), { message: "Hello, world!" });

  const created = await h.fetch("/items", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "widget", qty: 3 }),
  });
  assert.equal(created.status, 201);
  const item = await created.json();
  assert.equal(typeof item.id, "number");
  assert.deepEqual({ ...item, id: 0 }, { id: 0, name: "widget", qty: 3 });

  const invalid = await h.fetch("/items", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ qty: 1 }),
  });
  assert.equal(invalid.status, 400);
  assert.deepEqual(await invalid.json(), {
    error: "expected an object with a string name",
  });

  const byId = await h.fetch("/items/42");
  assert.deepEqual(await byId.json(), { id: "42" });

  const missing = await h.fetch("/nope");
  assert.equal(missing.status, 404);
  assert.equal(await missing.text(), "404 Not Found");
});

/** Opens a WebSocket, sends one message, and returns the first answer. */
async function echoOnce(url: string, message: string): Promise<string> {
  const socket = new WebSocket(url);
  try {
    return await new Promise<string>((resolve, reject) => {
      socket.onopen = () => socket.send(message);
      socket.onmessage = (event) => resolve(String(event.data));
      socket.onerror = () => reject(new Error(`WebSocket ${url} failed`));
    });
  } finally {
    socket.close();
    await new Promise((resolve) => socket.addEventListener("close", resolve));
  }
}

for (const workers of [0, 2]) {
  Deno.test(`examples/hono_app.ts: Hono's own Deno upgradeWebSocket works behind mongrel2 (--workers ${workers})`, async () => {
    await using h = await startCliHarness("examples/hono_app.ts", {
      args: ["--workers", String(workers)],
    });
    const ws = h.url.replace(/^http/, "ws");
    assert.equal(await echoOnce(`${ws}/ws`, "hi"), "echo hi");
    const root = await fetch(`${h.url}/`);
    assert.equal(root.headers.get("x-served-by"), "hono");
    await root.body?.cancel();
  });
}

Deno.test("examples/hono_app.ts over raw HTTP/1.0 closes after the answer", async () => {
  await using h = await startHarness("examples/hono_app.ts");
  await using client = await h.raw();
  await client.write("GET /greet?name=raw HTTP/1.0\r\nHost: x\r\n\r\n");
  const response = await client.readResponse();
  assert.equal(response.statusLine, "HTTP/1.0 200 OK");
  assert.deepEqual(headerValues(response, "content-type"), [
    "application/json",
  ]);
  assert.equal(decoder.decode(response.body), '{"message":"Hello, raw!"}');
  assert.ok((await client.waitForClose(5000)) !== null);
  await delay(0);
});
