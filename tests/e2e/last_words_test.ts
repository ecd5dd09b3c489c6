/**
 * A streamed body whose source enqueues its last bytes and errors in the
 * same turn: `deno serve` sends those bytes before it cuts the connection,
 * and so must m2fetch (on the main thread and with `--workers`). Over
 * HTTP/1.0 the body is delimited by the close, so a client cannot even tell
 * that bytes went missing.
 */

import assert from "node:assert/strict";
import { RawClient, startCliHarness, startDenoServe } from "./harness.ts";

const APP = "tests/e2e/last_words_app.ts";
const decoder = new TextDecoder();

/** Everything the server sends for one request, up to its close. */
async function exchange(port: number, version: string): Promise<string> {
  await using client = await RawClient.connect(port);
  await client.write(`GET / ${version}\r\nHost: x\r\n\r\n`);
  const bytes = await client.waitForClose(5000);
  assert.notEqual(bytes, null, "the connection was not closed");
  return decoder.decode(bytes!);
}

/** The body bytes of an HTTP/1.0 answer, or the chunk data of an HTTP/1.1 one. */
function bodyText(response: string): string {
  const body = response.slice(response.indexOf("\r\n\r\n") + 4);
  if (!/transfer-encoding: chunked/i.test(response)) return body;
  return body.replace(/(?:^|\r\n)[0-9a-f]+\r\n/g, "");
}

async function checkLastWords(port: number): Promise<void> {
  for (const version of ["HTTP/1.0", "HTTP/1.1"]) {
    const response = await exchange(port, version);
    assert.match(response, /^HTTP\/1\.[01] 200 OK\r\n/);
    assert.equal(
      bodyText(response).replace(/\r\n$/, ""),
      "first line\nlast words\n",
      `${version}: ${JSON.stringify(response)}`,
    );
  }
}

Deno.test("deno serve: the bytes a stream enqueues just before it errors are sent", async () => {
  await using direct = await startDenoServe(APP);
  await checkLastWords(direct.port);
});

for (const workers of ["0", "1"]) {
  Deno.test(`--workers ${workers}: the bytes a stream enqueues just before it errors are sent`, async () => {
    await using m2fetch = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    await checkLastWords(m2fetch.port);
  });
}

// Main thread only: with --workers the failure crosses a thread after the
// last bytes, and the response has ended (and cancelled the stream) by then.
for (const workers of ["0"]) {
  Deno.test(`--workers ${workers}: a stream that errors with its last declared bytes is answered whole, and its failure is logged`, async () => {
    await using m2fetch = await startCliHarness(APP, {
      args: ["--workers", workers],
    });
    const response = await fetch(new URL("/sized", m2fetch.url));
    assert.equal(await response.text(), "first line\nlast words\n");
    // deno serve logs the handler's failure though the body was whole.
    await waitFor(() => /upstream reset/.test(m2fetch.output()));
    assert.match(
      m2fetch.output(),
      /Response body for GET \/sized failed after its declared length was sent/,
    );
  });
}

async function waitFor(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !check(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
