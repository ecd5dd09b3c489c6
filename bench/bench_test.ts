/**
 * Tests of the pure parts of the end-to-end benchmark: reading wrk's
 * report, the SVG chart, the CPU profile summary, the floor handler's
 * replies (hello and a stream within mongrel2's credits) and the streaming
 * handler. No servers are started.
 *
 * @module
 */

import assert from "node:assert/strict";
import { compactNumber, niceScale, renderLineChart } from "./chart.ts";
import { areaOf, summarizeProfile } from "./cpuprofile.ts";
import streamApp, { CHUNK_BYTES, patternStream } from "./stream_app.ts";
import { parseLatency, parseWrk, wrkArgs } from "./wrk.ts";
import { FloorHandler, floorReply } from "./zmq_floor.ts";
import { buildNotice, buildRequestMessage, parseReply } from "../testing.ts";

// Captured from wrk 4.1.0 (Debian) against mongrel2.
const WRK_REPORT = `Running 5s test @ http://127.0.0.1:46673/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.05ms    2.55ms  22.43ms   72.80%
    Req/Sec     6.46k     2.05k   11.37k    69.00%
  Latency Distribution
     50%    4.52ms
     75%    6.35ms
     90%    8.40ms
     99%   12.83ms
  64289 requests in 5.00s, 8.34MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  12846.52
Transfer/sec:      1.67MB
`;

Deno.test("parseWrk() reads rate, percentiles and errors", () => {
  assert.deepEqual(parseWrk(WRK_REPORT), {
    requestsPerSecond: 12846.52,
    requests: 64289,
    p50Ms: 4.52,
    p99Ms: 12.83,
    socketErrors: 6,
    non2xx: 7,
  });
});

Deno.test("parseWrk() rejects output without a report", () => {
  assert.throws(
    () => parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"),
    SyntaxError,
  );
});

Deno.test("parseLatency() converts every wrk unit to milliseconds", () => {
  assert.equal(parseLatency("408.00us"), 0.408);
  assert.equal(parseLatency("1.88ms"), 1.88);
  assert.equal(parseLatency("2.00s"), 2000);
  assert.equal(parseLatency("1.00m"), 60_000);
  assert.throws(() => parseLatency("fast"), SyntaxError);
});

Deno.test("wrkArgs() uses one thread for one connection, two otherwise", () => {
  assert.deepEqual(
    wrkArgs({ url: "http://h/", connections: 64, seconds: 10 }).slice(0, 3),
    ["-t2", "-c64", "-d10s"],
  );
  assert.equal(
    wrkArgs({ url: "http://h/", connections: 1, seconds: 1 })[0],
    "-t1",
  );
});

Deno.test("niceScale() and compactNumber() make readable axes", () => {
  assert.deepEqual(niceScale(107_685), { top: 125_000, step: 25_000 });
  assert.deepEqual(niceScale(31_602), { top: 40_000, step: 10_000 });
  assert.deepEqual(niceScale(20_000), { top: 20_000, step: 5_000 });
  assert.deepEqual(niceScale(0), { top: 1, step: 0.2 });
  assert.equal(compactNumber(950), "950");
  assert.equal(compactNumber(12_846), "12.8k");
  assert.equal(compactNumber(115_851), "116k");
  assert.equal(compactNumber(1_250_000), "1.25M");
});

Deno.test("renderLineChart() draws one line per series with escaped text", () => {
  const svg = renderLineChart({
    title: "a <b> & c",
    xLabel: "connections",
    yLabel: "requests/s",
    series: [
      {
        name: "one",
        color: "#111",
        points: [{ x: 1, y: 10 }, { x: 16, y: 30 }, { x: 256, y: 20 }],
      },
      { name: "two", color: "#222", dashed: true, points: [{ x: 1, y: 5 }] },
    ],
  });
  assert.ok(svg.startsWith("<svg xmlns="));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.equal(svg.match(/<polyline /g)?.length, 2);
  assert.equal(svg.match(/stroke-dasharray/g)?.length, 2);
  assert.ok(svg.includes("a &#60;b&#62; &#38; c"));
  assert.ok(!svg.includes("NaN"));
});

Deno.test("summarizeProfile() splits self and inclusive time", () => {
  const frame = (functionName: string, url = "", lineNumber = 0) => ({
    functionName,
    url,
    lineNumber,
  });
  const summary = summarizeProfile({
    nodes: [
      { id: 1, callFrame: frame("(root)"), children: [2, 4] },
      {
        id: 2,
        callFrame: frame("outer", "file:///r/runtime/server.ts", 9),
        children: [3],
      },
      {
        id: 3,
        callFrame: frame("Request", "ext:deno_fetch/23_request.js"),
      },
      { id: 4, callFrame: frame("(idle)") },
    ],
    startTime: 0,
    endTime: 10_000,
    samples: [2, 3, 3, 4],
    timeDeltas: [1000, 2000, 3000, 4000],
  }, { root: "/r" });
  assert.equal(summary.totalMs, 10);
  assert.equal(summary.idleMs, 4);
  assert.deepEqual(summary.self.map((e) => [e.label, e.ms]), [
    ["Request (ext:deno_fetch/23_request.js:1)", 5],
    ["(idle)", 4],
    ["outer (runtime/server.ts:10)", 1],
  ]);
  assert.deepEqual(summary.inclusive.map((e) => [e.label, e.ms]), [
    ["outer (runtime/server.ts:10)", 6],
  ]);
  assert.deepEqual(summary.areas.map((e) => [e.label, e.share]), [
    ["ext:deno_fetch", 0.5],
    ["(idle)", 0.4],
    ["runtime", 0.1],
  ]);
});

Deno.test("areaOf() names npm packages, Deno extensions and V8 frames", () => {
  assert.equal(
    areaOf(
      "file:///r/node_modules/.deno/zeromq@6.8.0/node_modules/zeromq/lib/index.js",
      "send",
      "/r",
    ),
    "npm:zeromq",
  );
  assert.equal(areaOf("ext:core/01_core.js", "encode"), "ext:core");
  assert.equal(areaOf("", "(garbage collector)"), "(garbage collector)");
  assert.equal(areaOf("", "op_now"), "(native)");
});

Deno.test("floorReply() answers requests and skips notices", async () => {
  const decoder = new TextDecoder();
  const reply = floorReply(
    await buildRequestMessage("http://localhost/floor/", {
      sender: "5f0e-ab",
      connectionId: 1234,
    }),
  );
  assert.ok(reply !== null);
  const text = decoder.decode(reply);
  assert.ok(text.startsWith("5f0e-ab 4:1234, HTTP/1.1 200 OK\r\n"));
  assert.ok(text.endsWith("\r\n\r\nHello from m2fetch\n"));
  for (const type of ["credits", "disconnect"] as const) {
    assert.equal(
      floorReply(
        buildNotice(type, { sender: "5f0e-ab", connectionId: 7, credits: 512 }),
      ),
      null,
    );
  }
});

Deno.test("FloorHandler streams within the credits mongrel2 grants, then forgets the stream", async () => {
  const floor = new FloorHandler();
  const bytes = 250_000;
  const sent = (replies: Uint8Array[]) =>
    replies.map((reply) => parseReply(reply).body.length)
      .reduce((a, b) => a + b, 0);
  const credits = (n: number) =>
    floor.handle(buildNotice("credits", { connectionId: 3, credits: n }));
  const first = floor.handle(
    await buildRequestMessage(`/floor/stream/${bytes}`, {
      connectionId: 3,
      downloadCredits: 102400,
    }),
  );
  const head = new TextDecoder().decode(parseReply(first[0]).body);
  assert.equal(head, `HTTP/1.1 200 OK\r\ncontent-length: ${bytes}\r\n\r\n`);
  // The head and the first bytes spend the whole window, no more.
  assert.equal(sent(first), 102400);
  // Credits for another connection move nothing.
  assert.deepEqual(
    floor.handle(buildNotice("credits", { connectionId: 4, credits: 5000 })),
    [],
  );
  assert.equal(sent(credits(40_000)), 40_000);
  let body = 102400 - head.length + 40_000;
  body += sent(credits(200_000));
  assert.equal(body, bytes);
  assert.deepEqual(credits(1000), []);
  // Other paths still get hello.
  const hello = floor.handle(await buildRequestMessage("/floor/"));
  assert.match(new TextDecoder().decode(parseReply(hello[0]).body), /Hello/);
});

Deno.test("patternStream() yields exactly the bytes asked for", async () => {
  const bytes = CHUNK_BYTES * 2 + 5;
  const body = new Uint8Array(
    await new Response(patternStream(bytes)).arrayBuffer(),
  );
  assert.equal(body.length, bytes);
  assert.equal(body[0], 0x41);
  assert.equal(body[CHUNK_BYTES], 0x41);
  assert.equal(body[27], 0x42);
});

Deno.test("the stream app serves /stream/N with its length, 404 otherwise", async () => {
  const ok = streamApp.fetch(new Request("http://localhost/stream/70000"));
  assert.equal(ok.headers.get("content-length"), "70000");
  assert.equal((await ok.arrayBuffer()).byteLength, 70000);
  const missing = streamApp.fetch(new Request("http://localhost/other"));
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
});
