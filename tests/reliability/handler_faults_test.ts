/**
 * Faulty handler code behind a real mongrel2 and the real CLI (issue 7):
 * a handler that throws, rejects, returns no Response, breaks its body
 * stream half-way or never answers. Each gets a defined outcome, is logged,
 * and the next request succeeds; on the main thread and in a worker.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type CliHarness,
  delay,
  type RawClient,
  startCliHarness,
  waitFor,
} from "../e2e/harness.ts";

const APP = "tests/reliability/faulty_app.ts";
const decoder = new TextDecoder();

async function get(client: RawClient, path: string) {
  await client.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
}

/** The next request, on a new connection, is served normally. */
async function nextSucceeds(harness: CliHarness, after: string) {
  await using client = await harness.raw();
  await get(client, "/ok");
  const response = await client.readResponse();
  assert.equal(response.status, 200, `request after ${after}`);
  assert.equal(decoder.decode(response.body), "ok /ok\n");
}

async function logged(harness: CliHarness, pattern: RegExp): Promise<void> {
  assert.ok(
    await waitFor(() => pattern.test(harness.output()), 5000),
    `not logged: ${pattern}\n${harness.output().slice(-2000)}`,
  );
}

/** Reads a body to its end or to the connection's end; returns the bytes and whether it completed. */
async function readAll(
  client: RawClient,
  response: Awaited<ReturnType<RawClient["readHead"]>>,
): Promise<{ bytes: number; complete: boolean; error?: string }> {
  let bytes = 0;
  try {
    for await (const piece of client.readBody(response)) bytes += piece.length;
    return { bytes, complete: true };
  } catch (error) {
    return { bytes, complete: false, error: (error as Error).message };
  }
}

for (const workers of ["0", "1"]) {
  Deno.test(`handler faults (--workers ${workers}): each is answered or cut cleanly, logged, and the next request succeeds`, async (t) => {
    await using harness = await startCliHarness(APP, {
      args: ["--workers", workers, "--timeout", "1s"],
    });

    for (
      const [path, pattern] of [
        ["/throw", /handler threw synchronously/],
        ["/reject", /handler rejected/],
        ["/undefined", /must be a Response.*received undefined/],
        ["/not-a-response", /must be a Response/],
        [
          "/network-error",
          /must not be a network error \(Response\.error\(\)\)/,
        ],
      ] as const
    ) {
      await t.step(`${path}: 500, logged`, async () => {
        await using client = await harness.raw();
        await get(client, path);
        const response = await client.readResponse();
        assert.equal(response.status, 500);
        assert.equal(decoder.decode(response.body), "Internal Server Error");
        await logged(harness, pattern);
        // The connection is still good.
        await get(client, "/same");
        assert.equal((await client.readResponse()).status, 200);
        await nextSucceeds(harness, path);
      });
    }

    await t.step(
      "one Response returned twice: sent once, then 500, logged",
      async () => {
        await using client = await harness.raw();
        await get(client, "/reused");
        const first = await client.readResponse();
        assert.equal(first.status, 200);
        assert.equal(decoder.decode(first.body), "shared body\n");
        await get(client, "/reused");
        const second = await client.readResponse();
        assert.equal(second.status, 500);
        await logged(harness, /must be a Response whose body was not read/);
        await nextSucceeds(harness, "/reused");
      },
    );

    await t.step(
      "a chunked body that errors half-way: truncated, then EOF; logged",
      async () => {
        await using client = await harness.raw();
        await get(client, "/stream-breaks");
        const head = await client.readHead();
        assert.equal(head.status, 200);
        assert.equal(
          head.headers.find(([name]) => name === "transfer-encoding")?.[1],
          "chunked",
        );
        const body = await readAll(client, head);
        assert.equal(body.complete, false, "the body looked complete");
        assert.ok(body.bytes < 8 * 1024 + 1, `${body.bytes} bytes`);
        assert.notEqual(await client.waitForClose(5000), null, "not closed");
        await logged(
          harness,
          /Response body for GET \/stream-breaks failed after the head was sent[^\n]*\n[^]*body stream broke half-way/,
        );
        await nextSucceeds(harness, "/stream-breaks");
      },
    );

    await t.step(
      "a Content-Length body that errors half-way: short body, then EOF",
      async () => {
        await using client = await harness.raw();
        await get(client, "/length-breaks");
        const head = await client.readHead();
        assert.equal(head.status, 200);
        const body = await readAll(client, head);
        assert.equal(body.complete, false);
        assert.ok(body.bytes <= 4 * 1024, `${body.bytes} bytes`);
        assert.match(body.error ?? "", /closed/);
        await logged(harness, /Response body for GET \/length-breaks failed/);
        await nextSucceeds(harness, "/length-breaks");
      },
    );

    await t.step(
      "a body that errors before its first byte: 500, logged",
      async () => {
        const mark = harness.output().length;
        await using client = await harness.raw();
        await get(client, "/stream-breaks-at-once");
        const response = await client.readResponse();
        assert.equal(response.status, 500);
        assert.equal(decoder.decode(response.body), "Internal Server Error");
        // The failure is logged with the stream's own error, under the
        // request's path, the same with workers (the worker tells the main
        // thread that the body failed, and the main thread answers).
        const failure =
          /Response to GET \/stream-breaks-at-once failed before its first byte \(its head could not be written, or its body failed\); answered 500[^\n]*\n[^]*body stream broke half-way/;
        assert.ok(
          await waitFor(() => failure.test(harness.output().slice(mark)), 5000),
          harness.output().slice(mark),
        );
        await nextSucceeds(harness, "/stream-breaks-at-once");
      },
    );

    await t.step(
      "a handler that never answers: 504 after --timeout, request.signal aborted",
      async () => {
        await using client = await harness.raw();
        const started = performance.now();
        await get(client, "/hang");
        const response = await client.readResponse();
        const took = performance.now() - started;
        assert.equal(response.status, 504);
        assert.ok(took >= 900 && took < 5000, `answered after ${took} ms`);
        await logged(harness, /Handler gave no response within 1000 ms/);
        await delay(50);
        await using state = await harness.raw();
        await get(state, "/state");
        const seen = JSON.parse(
          decoder.decode((await state.readResponse()).body),
        );
        assert.equal(seen.lastAbort, "TimeoutError");
        await nextSucceeds(harness, "/hang");
      },
    );

    // Still no crash, and a clean exit.
    const status = await harness.stop("SIGTERM");
    assert.equal(status.code, 0, harness.output().slice(-2000));
    assert.doesNotMatch(harness.output(), /uncaught error/);
  });
}
