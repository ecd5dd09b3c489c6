import assert from "node:assert/strict";
import { toRequest } from "../../runtime/http/request.ts";
import {
  canBuildYoungRequests,
  youngRequest,
} from "../../runtime/http/young_request.ts";
import type { Mongrel2Message } from "../../runtime/protocol/message.ts";

const URL_TEXT = "http://example.com:8080/a/../b%7e?q=1#frag";
const HEADERS: [string, string][] = [
  ["host", "example.com:8080"],
  ["accept", "*/*"],
  ["set-cookie", "a=1"],
  ["set-cookie", "b=2"],
  ["x-empty", ""],
  ["user-agent", "curl/8.5.0 (x86_64)"],
];

/** Everything a handler can read from a request, awaited where it must be. */
async function observe(request: Request): Promise<unknown> {
  const headers = request.headers;
  return {
    url: request.url,
    method: request.method,
    entries: [...headers],
    accept: headers.get("Accept"),
    cookies: headers.getSetCookie(),
    missing: headers.get("x-missing"),
    fields: [
      request.redirect,
      request.cache,
      request.credentials,
      request.integrity,
      request.keepalive,
      request.mode,
      request.referrer,
      request.referrerPolicy,
      request.destination,
    ],
    body: request.body,
    inspect: Deno.inspect(request),
    tag: Object.prototype.toString.call(request),
    isRequest: request instanceof Request,
    signalAborted: request.signal.aborted,
    text: await request.text(),
    bodyUsed: request.bodyUsed,
  };
}

function constructed(method: string, url: string, headers: [string, string][]) {
  return new Request(url, { method, headers });
}

function young(
  method: "GET" | "HEAD",
  url: string,
  headers: [string, string][],
) {
  const request = youngRequest(method, url, headers.map(([n, v]) => [n, v]));
  assert.ok(request !== undefined, "canonical input builds a young request");
  return request;
}

Deno.test("youngRequest() works on this Deno", () => {
  // When a Deno upgrade renames the fields it uses, requests still work
  // (through new Request()) but each outlives V8's minor collections again.
  assert.equal(canBuildYoungRequests, true);
  assert.ok(youngRequest("GET", "http://localhost/", []) instanceof Request);
});

Deno.test("youngRequest() gives a handler what new Request() gives it", async () => {
  for (const method of ["GET", "HEAD"] as const) {
    for (const url of [URL_TEXT, "http://[::ffff:127.0.0.1]/p", "https://x/"]) {
      assert.deepEqual(
        await observe(young(method, url, HEADERS)),
        await observe(constructed(method, url, HEADERS)),
        `${method} ${url}`,
      );
    }
  }
});

Deno.test("youngRequest()'s clones, copies and header changes behave as new Request()'s", async () => {
  for (const make of [young, constructed]) {
    const request = make("GET", URL_TEXT, HEADERS);
    const clone = request.clone();
    const copy = new Request(request);
    const post = new Request(request, { method: "POST", body: "sent" });
    request.headers.set("accept", "text/html");
    request.headers.append("x-added", "1");
    request.headers.delete("user-agent");
    assert.equal(request.headers.get("accept"), "text/html", make.name);
    assert.equal(request.headers.get("x-added"), "1", make.name);
    assert.equal(request.headers.has("user-agent"), false, make.name);
    for (const other of [clone, copy]) {
      assert.equal(other.url, request.url, make.name);
      assert.equal(other.headers.get("accept"), "*/*", make.name);
      assert.equal(other.headers.get("user-agent"), "curl/8.5.0 (x86_64)");
    }
    assert.equal(post.method, "POST", make.name);
    assert.equal(await post.text(), "sent", make.name);
    assert.equal(post.headers.get("host"), "example.com:8080", make.name);
  }
});

Deno.test("youngRequest() calls onSignal once, when request.signal is first read", () => {
  const seen: Request[] = [];
  const request = youngRequest("GET", "http://localhost/", [], (r) => {
    seen.push(r);
    // The signal is in place by then: reading it again does not recurse.
    assert.equal(r.signal.aborted, false);
  });
  assert.ok(request !== undefined);
  void request.url;
  void request.headers;
  assert.equal(seen.length, 0);
  const signal = request.signal;
  assert.equal(request.signal, signal);
  assert.deepEqual(seen, [request]);
});

Deno.test("youngRequest() leaves what Headers would change or refuse to new Request()", () => {
  const cases: [string, [string, string][] | string][] = [
    ["an upper-case name", [["Accept", "*/*"]]],
    ["a name that is no token", [["a b", "1"]]],
    ["a value with a leading space", [["a", " 1"]]],
    ["a value with a trailing tab", [["a", "1\t"]]],
    ["a value with a control byte", [["a", "1\x01"]]],
    ["a value with a DEL byte", [["a", "1\x7f"]]],
    ["a value with a byte above ASCII", [["a", "caf\xe9"]]],
    ["a value with a line break", [["a", "1\r\n2"]]],
    ["a URL the parser refuses", "http://exa mple.com/"],
  ];
  for (const [what, input] of cases) {
    const headers = typeof input === "string" ? [] : input;
    const url = typeof input === "string" ? input : "http://localhost/";
    assert.equal(youngRequest("GET", url, headers), undefined, what);
  }
});

Deno.test("young requests do not outlive V8's minor collections", async () => {
  // In a process of its own, for --expose-gc. Requests from new Request()
  // leave about 200 bytes each behind a minor collection (Deno builds their
  // state in an object V8 allocates in the old generation).
  const probe = new URL("./minor_gc_probe.ts", import.meta.url);
  const run = async (mode: string) => {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--v8-flags=--expose-gc", probe.pathname, mode],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(stdout);
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    return Number(text.trim());
  };
  const youngBytes = await run("young");
  const constructedBytes = await run("constructed");
  assert.ok(
    youngBytes < 30,
    `young requests left ${youngBytes} bytes each after minor collections`,
  );
  // The probe sees what it is meant to see; when this fails, Deno's own
  // constructor has stopped promoting and this module may go.
  assert.ok(
    constructedBytes > 100,
    `new Request() left only ${constructedBytes} bytes each`,
  );
});

Deno.test("youngRequest() leaves a blob: URL to new Request(), which also holds the blob", async () => {
  // new Request() looks a blob: URL up when it is made, and fetch() reads
  // that blob even once the URL is revoked; a young request would not.
  const blobUrl = URL.createObjectURL(new Blob(["held"]));
  try {
    for (const url of [blobUrl, "data:,x", "file:///tmp/x", "ws://a/"]) {
      assert.equal(youngRequest("GET", url, []), undefined, url);
    }
    const held = new Request(blobUrl);
    URL.revokeObjectURL(blobUrl);
    assert.equal(await (await fetch(held)).text(), "held");
  } finally {
    URL.revokeObjectURL(blobUrl);
  }
});

Deno.test("youngRequest() parses URLs with Deno's parser even when a handler replaces the global URL", () => {
  const NativeURL = globalThis.URL;
  class OtherURL extends NativeURL {
    static override parse(url: string | URL, base?: string | URL) {
      return NativeURL.parse(`${url}/elsewhere`, base);
    }
  }
  globalThis.URL = OtherURL;
  try {
    assert.equal(
      youngRequest("GET", "http://a/p", [])?.url,
      new Request("http://a/p").url,
    );
  } finally {
    globalThis.URL = NativeURL;
  }
});

Deno.test("toRequest()'s signal aborts on the source's abort, not on an abort event someone dispatches", () => {
  // A signal that new Request(url, { signal }) makes follows the abort,
  // not the event: the first abort event must not abort the request (nor
  // use up the listener that carries the real abort).
  const message: Mongrel2Message = {
    sender: "s",
    connectionId: "1",
    path: "/",
    body: new Uint8Array(0),
    headerFormat: "json",
    headers: { METHOD: "GET", URI: "/", host: "a" },
  };
  for (const method of ["GET", "POST"]) {
    for (const readFirst of [true, false]) {
      const controller = new AbortController();
      const request = toRequest(
        { ...message, headers: { ...message.headers, METHOD: method } },
        { signal: controller.signal },
      );
      const reference = new Request("http://a/", {
        method,
        signal: controller.signal,
      });
      if (readFirst) void request.signal;
      const what = `${method}, signal read ${readFirst ? "first" : "later"}`;
      controller.signal.dispatchEvent(new Event("abort"));
      assert.equal(request.signal.aborted, reference.signal.aborted, what);
      assert.equal(request.signal.aborted, false, what);
      const reason = new Error("gone");
      controller.abort(reason);
      assert.equal(request.signal.reason, reason, what);
      assert.equal(reference.signal.reason, reason, what);
    }
  }
});
