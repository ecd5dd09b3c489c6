/**
 * Unit tests of the pure upload rules: the temp store template, the paths it
 * can produce, the chroot mapping, and which message shapes are trusted as
 * mongrel2's own upload markers.
 *
 * Run: `deno test -A tests/upload/policy_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkTemplate,
  readUploadMarker,
  realUploadPath,
  templatePattern,
  type UploadStore,
} from "../../runtime/upload/policy.ts";
import type { Mongrel2Headers } from "../../runtime/protocol/message.ts";

const STORE: UploadStore = { template: "/tmp/upload.XXXXXX" };
const EMPTY = new Uint8Array(0);
const START = "x-mongrel2-upload-start";
const DONE = "x-mongrel2-upload-done";

/** `store: null` means uploads are not configured. */
function marker(
  headers: Mongrel2Headers,
  body: Uint8Array = EMPTY,
  store: UploadStore | null = STORE,
) {
  return readUploadMarker(headers, body, store ?? undefined);
}

function assertForged(
  headers: Mongrel2Headers,
  reason: RegExp,
  body: Uint8Array = EMPTY,
  store: UploadStore | null = STORE,
): void {
  const result = marker(headers, body, store);
  assert.equal(result.kind, "forged", JSON.stringify(headers));
  assert.match((result as { reason: string }).reason, reason);
}

Deno.test("checkTemplate accepts absolute mkstemp templates", () => {
  for (
    const template of [
      "/tmp/upload.XXXXXX",
      "/uploads/m2.XXXXXX",
      "/var/lib/m2/tmp/XXXXXX",
      "/a b/up-XXXXXX",
    ]
  ) {
    assert.equal(checkTemplate(template), template);
  }
});

Deno.test("checkTemplate rejects relative, unterminated and escaping templates", () => {
  for (
    const [template, why] of [
      ["tmp/upload.XXXXXX", /absolute/],
      ["./tmp/upload.XXXXXX", /absolute/],
      ["/tmp/upload.XXXXX", /XXXXXX/],
      ["/tmp/upload.XXXXXXy", /XXXXXX/],
      ["/tmp/upload", /XXXXXX/],
      ["", /absolute/],
      ["/XXXXXX", /directory of their own/],
      ["/tmp/../etc/XXXXXX", /"\." and "\.\."/],
      ["/tmp/./XXXXXX", /"\." and "\.\."/],
    ] as const
  ) {
    assert.throws(
      () => checkTemplate(template),
      (error: unknown) => error instanceof TypeError && why.test(error.message),
      template,
    );
  }
});

Deno.test("templatePattern matches exactly what mkstemp can create", () => {
  const pattern = templatePattern("/tmp/upload.XXXXXX");
  for (const path of ["/tmp/upload.15yUxo", "/tmp/upload.AAAAAA"]) {
    assert.ok(pattern.test(path), path);
  }
  for (
    const path of [
      "/tmp/upload.XXXXX", // five characters
      "/tmp/upload.1234567", // seven
      "/tmp/upload.12345/", // slash
      "/tmp/upload.../../", // dots
      "/tmp/upload.abc-ef", // outside [A-Za-z0-9]
      "/tmp/upload.abc_ef",
      "/tmp/upload.abcde\n",
      "/tmp/upload.abcdeé",
      "/tmp/uploadx15yUxo", // the "." is literal, not "any character"
      "/tmp/upload.15yUxo/../../etc/passwd",
      "/etc/passwd",
      "tmp/upload.15yUxo",
      "/other/tmp/upload.15yUxo",
      "/tmp/upload.15yUxo ",
      "",
    ]
  ) {
    assert.ok(!pattern.test(path), JSON.stringify(path));
  }
});

Deno.test("templatePattern escapes every regular-expression character of the stem", () => {
  const template = "/srv/a+b(c)[d]{e}^$|?*\\.XXXXXX";
  const pattern = templatePattern(template);
  assert.ok(pattern.test("/srv/a+b(c)[d]{e}^$|?*\\.q1W2e3"));
  assert.ok(!pattern.test("/srv/aab(c)[d]{e}^$|?*\\.q1W2e3"));
  assert.ok(!pattern.test("/srv/abbb(c)[d]{e}^$|?*\\.q1W2e3"));
});

Deno.test("realUploadPath maps into the chroot, or leaves real paths alone", () => {
  assert.equal(
    realUploadPath("/tmp/upload.abcdef", STORE),
    "/tmp/upload.abcdef",
  );
  assert.equal(
    realUploadPath("/tmp/upload.abcdef", { ...STORE, chroot: "" }),
    "/tmp/upload.abcdef",
  );
  assert.equal(
    realUploadPath("/tmp/upload.abcdef", { ...STORE, chroot: "/srv/m2" }),
    "/srv/m2/tmp/upload.abcdef",
  );
  // Trailing slashes on the chroot do not double up.
  assert.equal(
    realUploadPath("/tmp/upload.abcdef", { ...STORE, chroot: "/srv/m2///" }),
    "/srv/m2/tmp/upload.abcdef",
  );
  // A chroot of "/" is the real root.
  assert.equal(
    realUploadPath("/tmp/upload.abcdef", { ...STORE, chroot: "/" }),
    "/tmp/upload.abcdef",
  );
});

Deno.test("readUploadMarker: no upload headers is no marker", () => {
  assert.deepEqual(marker({ METHOD: "POST", "content-length": "2" }), {
    kind: "none",
  });
  // Also when uploads are not configured at all.
  assert.deepEqual(marker({ METHOD: "GET" }, EMPTY, null), {
    kind: "none",
  });
});

Deno.test("readUploadMarker: mongrel2's genuine start and done, with the length and coding", () => {
  const path = "/tmp/upload.15yUxo";
  assert.deepEqual(marker({ [START]: path, "content-length": "5000" }), {
    kind: "start",
    path,
    chunked: false,
    length: 5000,
  });
  assert.deepEqual(
    marker({ [START]: path, "transfer-encoding": "chunked" }),
    { kind: "start", path, chunked: true, length: undefined },
  );
  assert.deepEqual(
    marker({ [START]: path, "content-length": String(2 ** 31 - 1) }),
    { kind: "start", path, chunked: false, length: 2 ** 31 - 1 },
  );
  assert.deepEqual(
    marker({ [START]: path, [DONE]: path, "content-length": "5000" }),
    { kind: "done", path, chunked: false, length: 5000 },
  );
});

Deno.test("readUploadMarker: forged shapes", () => {
  const path = "/tmp/upload.15yUxo";
  const hi = new TextEncoder().encode("hi");
  // The usual forgery: headers on a small request with an inline body.
  assertForged(
    { [START]: path, [DONE]: path, "content-length": "2" },
    /inline body/,
    hi,
  );
  assertForged({ [START]: path, "content-length": "2" }, /inline body/, hi);
  // A done without a start.
  assertForged({ [DONE]: path }, /upload-done header without an upload-start/);
  // Lists of start paths are never mongrel2's (it replaces client copies).
  assertForged(
    { [START]: ["/tmp/upload.forged", path], "content-length": "5000" },
    /several upload-start/,
  );
  // Paths the template cannot produce.
  for (
    const bad of [
      "/etc/passwd",
      "/tmp/upload.15yUxo/../../etc/passwd",
      "/tmp/../etc/upload.15yUxo",
      "tmp/upload.15yUxo",
      "/tmp/upload.x",
    ]
  ) {
    // mongrel2's shape (it replaces a client's upload-start): m2fetch's
    // template is not mongrel2's, and the file is not m2fetch's to touch.
    const shapes: Record<string, string>[] = [
      { [START]: bad, "content-length": "5000" },
      { [START]: bad, [DONE]: bad, "content-length": "5000" },
    ];
    for (const headers of shapes) {
      const result = marker(headers);
      assert.equal(result.kind, "mismatched", bad);
      assert.match((result as { reason: string }).reason, /does not match/);
    }
  }
  // Uploads not configured: mongrel2's own markers say so, forged ones
  // are still forged.
  assert.deepEqual(
    marker({ [START]: path, "content-length": "5000" }, EMPTY, null),
    { kind: "unconfigured", path },
  );
  assert.deepEqual(
    marker(
      { [START]: path, [DONE]: path, "transfer-encoding": "chunked" },
      EMPTY,
      null,
    ),
    { kind: "unconfigured", path },
  );
  assertForged(
    { [START]: path, "content-length": "2" },
    /inline body/,
    hi,
    null,
  );
  assertForged(
    { [START]: path },
    /Content-Length mongrel2 could have spooled/,
    EMPTY,
    null,
  );
  // An empty body with no length mongrel2 would have spooled.
  for (const length of [undefined, "0", "-5", "abc", "3000000000"]) {
    const headers: Mongrel2Headers = { [START]: path };
    if (length !== undefined) headers["content-length"] = length;
    assertForged(headers, /Content-Length mongrel2 could have spooled/);
  }
});

Deno.test("readUploadMarker: forged markers carry no file to delete", () => {
  const path = "/tmp/upload.15yUxo";
  const hi = new TextEncoder().encode("hi");
  for (
    const [headers, body] of [
      [{ [START]: path, [DONE]: path, "content-length": "2" }, hi],
      [{ [START]: path, [DONE]: path, "content-length": "0" }, EMPTY],
      [{ [START]: path, [DONE]: path }, EMPTY],
      [{ [DONE]: path, "content-length": "5000" }, EMPTY],
      // mongrel2 spools only an exact "chunked" without Content-Length; it
      // forwards these inline, empty, with the client's upload headers.
      [{ [START]: path, [DONE]: path, "transfer-encoding": "Chunked" }, EMPTY],
      [{ [START]: path, [DONE]: path, "transfer-encoding": "CHUNKED" }, EMPTY],
      [
        { [START]: path, [DONE]: path, "transfer-encoding": "gzip, chunked" },
        EMPTY,
      ],
      [{ [START]: path, "transfer-encoding": ["identity", "chunked"] }, EMPTY],
      [
        {
          [START]: path,
          [DONE]: path,
          "transfer-encoding": "chunked",
          "content-length": "0",
        },
        EMPTY,
      ],
    ] as [Mongrel2Headers, Uint8Array][]
  ) {
    const result = marker(headers, body);
    assert.equal(result.kind, "forged", JSON.stringify(headers));
    assert.equal(
      (result as { upload?: string }).upload,
      undefined,
      JSON.stringify(headers),
    );
  }
  // mongrel2's shape at a path outside the template: a set-up mismatch,
  // and still no file of m2fetch's to touch.
  assert.deepEqual(
    marker(
      { [START]: "/etc/passwd", [DONE]: path, "content-length": "5" },
      EMPTY,
    ),
    {
      kind: "mismatched",
      path: "/etc/passwd",
      reason:
        'upload path "/etc/passwd" does not match the temp store template "/tmp/upload.XXXXXX"',
    },
  );
});

Deno.test("readUploadMarker: a client's upload-done header on mongrel2's upload-start is refused, but names the real file", () => {
  // mongrel2 replaces a client's x-mongrel2-upload-start with its own, but
  // keeps a client's x-mongrel2-upload-done next to it.
  const path = "/tmp/upload.15yUxo";
  for (
    const [done, why] of [
      ["/tmp/upload.other1", /differs from upload-start/],
      ["/etc/passwd", /differs from upload-start/],
      [[path, path], /several upload-done/],
      [["/etc/passwd", path], /several upload-done/],
    ] as [string | string[], RegExp][]
  ) {
    for (
      const length of [
        { "content-length": "5000" },
        { "transfer-encoding": "chunked" },
      ] as Mongrel2Headers[]
    ) {
      const result = marker({ [START]: path, [DONE]: done, ...length });
      assert.equal(result.kind, "forged");
      assert.match((result as { reason: string }).reason, why);
      assert.equal((result as { upload?: string }).upload, path);
    }
  }
});

Deno.test("readUploadMarker: a Content-Length mongrel2 reads but m2fetch does not is refused, and mongrel2's file deleted", () => {
  const path = "/tmp/upload.15yUxo";
  // strtol reads a length from these, so with no body in the message
  // mongrel2 spooled it: the start path is its own file.
  for (const length of ["+30000", " 30000", "30000abc", "000000000000030000"]) {
    const result = marker({ [START]: path, "content-length": length });
    assert.equal(result.kind, "forged", length);
    assert.equal((result as { upload?: string }).upload, path, length);
    assert.match(
      (result as { reason: string }).reason,
      /is not a plain number \(mongrel2 read it as 30000\)/,
    );
  }
  // These it reads as 0 (or not at all): nothing was spooled.
  for (const length of ["-30000", "abc", "0", "3000000000", ""]) {
    const result = marker({ [START]: path, "content-length": length });
    assert.equal(result.kind, "forged", length);
    assert.equal((result as { upload?: string }).upload, undefined, length);
  }
});

Deno.test("readUploadMarker: inherited object keys are not headers", () => {
  // A header named like an Object.prototype member must not confuse lookups.
  assert.deepEqual(marker({ "constructor": "x", "content-length": "1" }), {
    kind: "none",
  });
});
