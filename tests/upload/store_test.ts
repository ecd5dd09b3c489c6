/**
 * Unit tests of the file-system checks on upload paths: only a regular file
 * directly inside the temp store's real directory (under the chroot when
 * mongrel2 is chrooted) is ever opened or deleted.
 *
 * Run: `deno test -A tests/upload/store_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import type { UploadStore } from "../../runtime/upload/policy.ts";
import {
  removeUploadFile,
  storeDirectory,
  sweepStaleUploads,
  takeOverRefusal,
  UploadRejectedError,
  verifyUploadFile,
} from "../../runtime/upload/store.ts";
import { tempDir } from "../site.ts";

/** A temp dir (symlinks resolved) removed after `fn`. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  await using tmp = await tempDir("m2s-");
  await fn(tmp.path);
}

async function assertRejected(
  path: string,
  store: UploadStore,
  why: RegExp,
): Promise<void> {
  await assert.rejects(
    () => verifyUploadFile(path, store),
    (error: unknown) => {
      assert.ok(error instanceof UploadRejectedError, String(error));
      assert.match(error.message, why);
      return true;
    },
    path,
  );
}

/** Runs `mkfifo`, or returns false when it is not available. */
async function mkfifo(path: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("mkfifo", { args: [path] })
      .output();
    return success;
  } catch {
    return false;
  }
}

Deno.test("verifyUploadFile accepts a regular file in the store and returns its real path", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/tmp`);
    await Deno.writeTextFile(`${dir}/tmp/upload.aB3dE6`, "data");
    const store = { template: `${dir}/tmp/upload.XXXXXX` };
    assert.equal(
      await verifyUploadFile(`${dir}/tmp/upload.aB3dE6`, store),
      `${dir}/tmp/upload.aB3dE6`,
    );
  });
});

Deno.test("verifyUploadFile maps chroot-relative paths into the chroot", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/tmp`);
    await Deno.writeTextFile(`${dir}/tmp/upload.aB3dE6`, "data");
    const store = { template: "/tmp/upload.XXXXXX", chroot: dir };
    assert.equal(
      await verifyUploadFile("/tmp/upload.aB3dE6", store),
      `${dir}/tmp/upload.aB3dE6`,
    );
    // The same path without the chroot is the machine's own /tmp.
    await assertRejected(
      "/tmp/upload.aB3dE6",
      { template: "/tmp/upload.XXXXXX", chroot: `${dir}/elsewhere` },
      /Cannot use upload temp store directory|cannot be read/,
    );
  });
});

Deno.test("verifyUploadFile accepts a store directory reached through a symlink", async () => {
  await withDir(async (dir) => {
    // e.g. /var/uploads -> /mnt/volume/uploads: the store is the real dir.
    await Deno.mkdir(`${dir}/volume`);
    await Deno.symlink(`${dir}/volume`, `${dir}/uploads`);
    await Deno.writeTextFile(`${dir}/volume/up.q1W2e3`, "data");
    assert.equal(
      await verifyUploadFile(`${dir}/uploads/up.q1W2e3`, {
        template: `${dir}/uploads/up.XXXXXX`,
      }),
      `${dir}/volume/up.q1W2e3`,
    );
  });
});

Deno.test("verifyUploadFile rejects a symlink in place of the file", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/tmp`);
    await Deno.writeTextFile(`${dir}/secret`, "secret");
    await Deno.writeTextFile(`${dir}/tmp/upload.inside`, "inside");
    const store = { template: `${dir}/tmp/upload.XXXXXX` };
    // To a file outside the store.
    await Deno.symlink(`${dir}/secret`, `${dir}/tmp/upload.linkA1`);
    await assertRejected(
      `${dir}/tmp/upload.linkA1`,
      store,
      /not a regular file/,
    );
    // To another file inside the store.
    await Deno.symlink(`${dir}/tmp/upload.inside`, `${dir}/tmp/upload.linkB2`);
    await assertRejected(
      `${dir}/tmp/upload.linkB2`,
      store,
      /not a regular file/,
    );
    // Relative, and dangling.
    await Deno.symlink("../secret", `${dir}/tmp/upload.linkC3`);
    await assertRejected(
      `${dir}/tmp/upload.linkC3`,
      store,
      /not a regular file/,
    );
    await Deno.symlink(`${dir}/nothing`, `${dir}/tmp/upload.linkD4`);
    await assertRejected(
      `${dir}/tmp/upload.linkD4`,
      store,
      /cannot be read|not a regular file/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/secret`), "secret");
  });
});

Deno.test("verifyUploadFile rejects a chroot store directory whose symlink escapes the chroot", async () => {
  await withDir(async (dir) => {
    // Inside the chroot, tmp -> /outside means <chroot>/outside to mongrel2;
    // resolved from outside it would be the machine's /outside.
    await Deno.mkdir(`${dir}/outside`);
    await Deno.writeTextFile(`${dir}/outside/upload.aB3dE6`, "not an upload");
    await Deno.mkdir(`${dir}/chroot`);
    await Deno.symlink(`${dir}/outside`, `${dir}/chroot/tmp`);
    const store = { template: "/tmp/upload.XXXXXX", chroot: `${dir}/chroot` };
    await assertRejected("/tmp/upload.aB3dE6", store, /outside|chroot/);
    assert.equal(
      await Deno.readTextFile(`${dir}/outside/upload.aB3dE6`),
      "not an upload",
    );
    // A relative symlink that stays inside the chroot means the same place
    // to both, and is fine.
    await Deno.mkdir(`${dir}/chroot/spool`);
    await Deno.writeTextFile(`${dir}/chroot/spool/upload.aB3dE6`, "upload");
    await Deno.symlink("spool", `${dir}/chroot/uploads`);
    assert.equal(
      await verifyUploadFile("/uploads/upload.aB3dE6", {
        template: "/uploads/upload.XXXXXX",
        chroot: `${dir}/chroot`,
      }),
      `${dir}/chroot/spool/upload.aB3dE6`,
    );
  });
});

Deno.test("verifyUploadFile rejects files outside the store, and '..'", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/tmp`);
    await Deno.mkdir(`${dir}/other`);
    await Deno.writeTextFile(`${dir}/other/upload.aB3dE6`, "other");
    await Deno.writeTextFile(`${dir}/upload.aB3dE6`, "parent");
    const store = { template: `${dir}/tmp/upload.XXXXXX` };
    for (
      const path of [
        `${dir}/other/upload.aB3dE6`,
        `${dir}/tmp/../upload.aB3dE6`,
        `${dir}/tmp/../other/upload.aB3dE6`,
        `${dir}/tmp/./upload.aB3dE6`,
        `${dir}/tmp/upload.aB3dE6/..`,
        `${dir}/tmp/upload.aB3dE6/../../upload.aB3dE6`,
        "/etc/passwd",
        "tmp/upload.aB3dE6",
        `${dir}/tmp/upload..`,
        `${dir}/tmp/upload.a/b/cd`,
      ]
    ) {
      await assertRejected(path, store, /does not match/);
    }
  });
});

Deno.test("verifyUploadFile rejects non-regular files and missing files", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/tmp`);
    const store = { template: `${dir}/tmp/upload.XXXXXX` };
    await Deno.mkdir(`${dir}/tmp/upload.subdir`);
    await assertRejected(
      `${dir}/tmp/upload.subdir`,
      store,
      /not a regular file/,
    );
    if (await mkfifo(`${dir}/tmp/upload.fifo01`)) {
      // Opening a FIFO would block: it must be refused before that.
      await assertRejected(
        `${dir}/tmp/upload.fifo01`,
        store,
        /not a regular file/,
      );
    }
    await assertRejected(`${dir}/tmp/upload.gone00`, store, /cannot be read/);
  });
});

Deno.test("storeDirectory resolves the real directory and fails clearly when it is missing", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/real`);
    await Deno.symlink(`${dir}/real`, `${dir}/link`);
    assert.equal(
      await storeDirectory({ template: `${dir}/link/up.XXXXXX` }),
      `${dir}/real`,
    );
    assert.equal(
      await storeDirectory({ template: "/real/up.XXXXXX", chroot: dir }),
      `${dir}/real`,
    );
    await assert.rejects(
      () => storeDirectory({ template: `${dir}/missing/up.XXXXXX` }),
      (error: unknown) =>
        error instanceof UploadRejectedError &&
        error.message.includes(`${dir}/missing`) &&
        error.message.includes("pass --mongrel2-chroot"),
    );
    await assert.rejects(
      () => storeDirectory({ template: "/missing/up.XXXXXX", chroot: dir }),
      (error: unknown) =>
        error instanceof UploadRejectedError &&
        error.message.includes(
          `(mongrel2's upload.temp_store directory, inside its chroot ${dir})`,
        ),
    );
  });
});

Deno.test("removeUploadFile deletes once and tolerates a file already gone", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/up.aB3dE6`, "x");
    assert.equal(await removeUploadFile(`${dir}/up.aB3dE6`), true);
    assert.equal(await removeUploadFile(`${dir}/up.aB3dE6`), false);
  });
});

Deno.test("sweepStaleUploads deletes only old regular files matching the template", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/tmp`);
    const old = new Date(Date.now() - 3_600_000);
    const files = {
      stale: `${dir}/tmp/upload.Stale1`,
      fresh: `${dir}/tmp/upload.Fresh1`,
      other: `${dir}/tmp/notes.txt`,
      near: `${dir}/tmp/upload.toolong1`,
      outside: `${dir}/upload.Outsd1`,
    };
    for (const path of Object.values(files)) {
      await Deno.writeTextFile(path, "x");
      if (path !== files.fresh) await Deno.utime(path, old, old);
    }
    await Deno.mkdir(`${dir}/tmp/upload.Direc1`);
    await Deno.symlink(files.outside, `${dir}/tmp/upload.Link01`);
    await Deno.lstat(`${dir}/tmp/upload.Link01`);
    const removed = await sweepStaleUploads(
      { template: `${dir}/tmp/upload.XXXXXX` },
      60_000,
    );
    assert.deepEqual(removed, [files.stale]);
    const left = new Set<string>();
    for await (const entry of Deno.readDir(`${dir}/tmp`)) left.add(entry.name);
    assert.deepEqual(
      [...left].sort(),
      [
        "notes.txt",
        "upload.Direc1",
        "upload.Fresh1",
        "upload.Link01",
        "upload.toolong1",
      ],
    );
    assert.equal(await Deno.readTextFile(files.outside), "x");
  });
});

Deno.test("sweepStaleUploads works under a chroot", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/tmp`);
    const old = new Date(Date.now() - 3_600_000);
    await Deno.writeTextFile(`${dir}/tmp/upload.Stale1`, "x");
    await Deno.utime(`${dir}/tmp/upload.Stale1`, old, old);
    assert.deepEqual(
      await sweepStaleUploads(
        { template: "/tmp/upload.XXXXXX", chroot: dir },
        60_000,
      ),
      [`${dir}/tmp/upload.Stale1`],
    );
  });
});

Deno.test("takeOverRefusal takes only a complete file older than the server", async () => {
  await withDir(async (dir) => {
    const store = { template: `${dir}/up.XXXXXX` };
    const path = `${dir}/up.Ab12Cd`;
    await Deno.writeTextFile(path, "hello");
    const before = Date.now() - 60_000;
    const after = Date.now() + 60_000;
    const facts = { path, chunked: false, length: 5 };
    assert.equal(await takeOverRefusal(facts, store, after), null);
    assert.match(
      (await takeOverRefusal(facts, store, before))!,
      /created after this m2fetch started/,
    );
    assert.match(
      (await takeOverRefusal({ ...facts, length: 6 }, store, after))!,
      /holds 5 bytes, not its Content-Length of 6/,
    );
    // Chunked: no length to compare.
    assert.equal(
      await takeOverRefusal(
        { path, chunked: true, length: undefined },
        store,
        after,
      ),
      null,
    );
    // Not a file of the store: opening it reports that, as for any upload.
    assert.equal(
      await takeOverRefusal({ ...facts, path: "/etc/passwd" }, store, before),
      null,
    );
  });
});
