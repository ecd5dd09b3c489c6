/**
 * Unit tests of one upload's life: its temp file is deleted when the
 * request ends, whether or not it was ever opened, and only after passing
 * the store checks.
 *
 * Run: `deno test -A tests/upload/active_upload_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { Exchange } from "../../runtime/connection/exchange.ts";
import { ActiveUpload } from "../../runtime/upload/active_upload.ts";

async function withStore(
  fn: (dir: string, template: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "m2a-" }));
  await Deno.mkdir(`${dir}/tmp`);
  try {
    await fn(dir, `${dir}/tmp/upload.XXXXXX`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

Deno.test("ActiveUpload: an opened upload's file is deleted when the request ends", async () => {
  await withStore(async (dir, template) => {
    const path = `${dir}/tmp/upload.aB3dE6`;
    await Deno.writeTextFile(path, "body");
    const upload = new ActiveUpload(path, new Exchange("POST", "/"), {
      template,
    });
    const stream = await upload.open();
    await upload.markDone();
    assert.equal(await new Response(stream).text(), "body");
    assert.equal(await upload.end(), path);
    assert.equal(await exists(path), false);
    assert.equal(await upload.end(), null);
  });
});

Deno.test("ActiveUpload: a body still unread when the request ends fails, and lets go of the file", async () => {
  await withStore(async (dir, template) => {
    const path = `${dir}/tmp/upload.aB3dE7`;
    await Deno.writeTextFile(path, "body");
    const upload = new ActiveUpload(path, new Exchange("POST", "/"), {
      template,
    });
    const stream = await upload.open();
    await upload.markDone();
    assert.equal(await upload.end(), path);
    // The handler no longer gets the body of a request that has ended.
    await assert.rejects(new Response(stream).text(), /the request has ended/);
  });
});

Deno.test("ActiveUpload: a file refused before it was opened is still deleted when the request ends", async () => {
  // Regression: a 413 at upload-start left the file mongrel2 had finished.
  await withStore(async (dir, template) => {
    const path = `${dir}/tmp/upload.aB3dE6`;
    await Deno.writeTextFile(path, "complete upload");
    const exchange = new Exchange("POST", "/");
    const upload = new ActiveUpload(path, exchange, { template });
    assert.equal(exchange.closeAfterResponse, true);
    assert.equal(await upload.end(), path);
    assert.equal(await exists(path), false);
  });
});

Deno.test("ActiveUpload: end() never deletes a file that fails the store checks", async () => {
  await withStore(async (dir, template) => {
    await Deno.writeTextFile(`${dir}/victim`, "victim");
    await Deno.symlink(`${dir}/victim`, `${dir}/tmp/upload.linkA1`);
    const linked = new ActiveUpload(
      `${dir}/tmp/upload.linkA1`,
      new Exchange("POST", "/"),
      { template },
    );
    assert.equal(await linked.end(), null);
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "victim");
    assert.ok(await exists(`${dir}/tmp/upload.linkA1`));

    await Deno.writeTextFile(`${dir}/upload.Outsd1`, "outside");
    const outside = new ActiveUpload(
      `${dir}/upload.Outsd1`,
      new Exchange("POST", "/"),
      { template },
    );
    assert.equal(await outside.end(), null);
    assert.ok(await exists(`${dir}/upload.Outsd1`));
  });
});

Deno.test("ActiveUpload: the request ending while open() checks the file deletes it once", async () => {
  await withStore(async (dir, template) => {
    const path = `${dir}/tmp/upload.aB3dE6`;
    await Deno.writeTextFile(path, "body");
    const upload = new ActiveUpload(path, new Exchange("POST", "/"), {
      template,
    });
    const opening = upload.open();
    const ended = upload.end();
    // Depending on which check runs first, open() sees the request ended or
    // the file already deleted; either way it opens nothing.
    await assert.rejects(opening, (error: unknown) => {
      assert.match(String((error as Error).name), /AbortError|UploadRejected/);
      return true;
    });
    await ended;
    assert.equal(await exists(path), false);
  });
});

Deno.test("ActiveUpload: whenDone() settles true on upload-done, false when the request ends first", async () => {
  await withStore(async (dir, template) => {
    const path = `${dir}/tmp/upload.aB3dE6`;
    await Deno.writeTextFile(path, "x");
    const exchange = new Exchange("POST", "/");
    const done = new ActiveUpload(path, exchange, { template });
    await done.markDone();
    assert.equal(await done.whenDone(), true);
    assert.equal(exchange.closeAfterResponse, false);
    await done.end();

    await Deno.writeTextFile(path, "x");
    const ended = new ActiveUpload(path, new Exchange("POST", "/"), {
      template,
    });
    await ended.end();
    assert.equal(await ended.whenDone(), false);
  });
});

Deno.test("ActiveUpload: grew() tells whether mongrel2 wrote more since the last look", async () => {
  await withStore(async (dir, template) => {
    const path = `${dir}/tmp/upload.aB3dE6`;
    await Deno.writeTextFile(path, "first");
    const upload = new ActiveUpload(path, new Exchange("POST", "/"), {
      template,
    });
    assert.equal(upload.grew(), true, "not opened yet: growing");
    await upload.open();
    assert.equal(upload.grew(), true, "holds bytes");
    assert.equal(upload.grew(), false, "stalled");
    await Deno.writeTextFile(path, " more", { append: true });
    assert.equal(upload.grew(), true);
    await Deno.remove(path);
    assert.equal(upload.grew(), false, "gone");
    await upload.end();
  });
});
