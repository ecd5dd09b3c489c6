import assert from "node:assert/strict";
import {
  ambiguity,
  isHandshake,
  refusalOf,
} from "../../runtime/http/refusal.ts";
import { parseMessage } from "../../runtime/protocol/message.ts";

/** A request as mongrel2 sends it with JSON headers. */
function message(
  headers: Record<string, string | readonly string[]>,
  body = "",
) {
  const json = JSON.stringify({ PATH: "/", METHOD: "POST", ...headers });
  const bytes = new TextEncoder().encode(body);
  return parseMessage(
    new TextEncoder().encode(
      `abc 7 / ${json.length}:${json},${bytes.length}:${body},`,
    ),
  );
}

const open = { maxBodySize: 16, stopping: false };

Deno.test("refusalOf passes an ordinary request to the handler", () => {
  assert.equal(refusalOf(message({ "content-length": "2" }, "hi"), open), null);
  assert.equal(refusalOf(message({}), open), null);
});

Deno.test("refusalOf refuses upload.stream=1 pieces with 501", () => {
  const refusal = refusalOf(message({ UPLOAD_STREAM: "1" }), open);
  assert.equal(refusal?.status, 501);
  assert.match(refusal!.why, /upload\.stream=1/);
  assert.equal(refusal!.level, "warn");
});

Deno.test("refusalOf refuses a body over the limit with 413", () => {
  const body = "x".repeat(17);
  const refusal = refusalOf(message({ "content-length": "17" }, body), open);
  assert.deepEqual(refusal, {
    status: 413,
    why: "Refused a 17-byte body over the 16-byte limit",
    level: "warn",
  });
  // A body of exactly the limit is served.
  const whole = message({ "content-length": "16" }, "x".repeat(16));
  assert.equal(refusalOf(whole, open), null);
});

Deno.test("refusalOf refuses a Content-Length that is not the body mongrel2 passed", () => {
  // mongrel2 passes lengths it cannot parse with no body at all.
  for (const declared of ["3000000000", "-5", "ten", "3"]) {
    const refusal = refusalOf(message({ "content-length": declared }), open);
    assert.equal(refusal?.status, 400, declared);
    assert.match(refusal!.why, new RegExp(`"${declared}" is not the 0 bytes`));
  }
});

Deno.test("refusalOf takes a handshake's body as mongrel2's key, and refuses it while stopping", () => {
  const handshake = message(
    { METHOD: "WEBSOCKET_HANDSHAKE", "content-length": "0" },
    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  );
  assert.ok(isHandshake(handshake));
  assert.equal(
    refusalOf(handshake, { maxBodySize: 1024, stopping: false }),
    null,
  );
  assert.equal(
    refusalOf(handshake, { maxBodySize: 1024, stopping: true })?.status,
    503,
  );
  // An ordinary request is still served while the server drains.
  assert.equal(refusalOf(message({}), { ...open, stopping: true }), null);
});

Deno.test("refusalOf refuses a request the client and mongrel2 may read differently", () => {
  // mongrel2 reads the first Content-Length, and decodes no coding on a
  // request it passes inline: the rest of the client's body would reach it
  // as further requests.
  for (
    const [headers, body, reason] of [
      [
        { "content-length": ["0", "35"] },
        "",
        /several Content-Length values \(0, 35\)/,
      ],
      [{ "content-length": ["5", "5", "9"] }, "hello", /\(5, 5, 9\)/],
      [{ "transfer-encoding": "gzip" }, "", /Transfer-Encoding "gzip"/],
      [{ host: ["a", "evil"] }, "", /several Host headers \(a, evil\)/],
      // RFC 9112 §3.2: more than one Host line is refused, equal or not.
      [{ host: ["a", "a"] }, "", /several Host headers \(a, a\)/],
      [
        { "transfer-encoding": "Chunked" },
        "",
        /"Chunked", which mongrel2 did not decode/,
      ],
      [
        { "content-length": "2", "transfer-encoding": "chunked" },
        "hi",
        /Transfer-Encoding "chunked"/,
      ],
    ] as const
  ) {
    const refusal = refusalOf(message(headers, body), open);
    assert.equal(refusal?.status, 400, JSON.stringify(headers));
    assert.match(refusal!.why, reason);
    assert.equal(refusal!.level, "warn");
  }
  // Repeated equal lengths frame the body one way only (deno serve agrees).
  assert.equal(
    refusalOf(message({ "content-length": ["2", "2"] }, "hi"), open),
    null,
  );
});

Deno.test("ambiguity takes a single chunked coding only where mongrel2 decoded it", () => {
  assert.equal(
    ambiguity({ "transfer-encoding": "chunked" }, true),
    null,
  );
  assert.match(
    ambiguity({ "transfer-encoding": ["chunked", "gzip"] }, true)!,
    /"chunked, gzip"/,
  );
  assert.match(
    ambiguity({ "transfer-encoding": "chunked" }, false)!,
    /did not decode/,
  );
  assert.equal(ambiguity({ "content-length": "7" }, false), null);
});
