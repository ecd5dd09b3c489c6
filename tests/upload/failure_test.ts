import assert from "node:assert/strict";
import { uploadFailure } from "../../runtime/upload/failure.ts";
import { UploadRejectedError } from "../../runtime/upload/store.ts";

const path = "/tmp/upload.Ab12Cd";
const unchrooted = {
  path,
  store: { template: "/tmp/upload.XXXXXX" },
  done: false,
  firstMissing: true,
};
const missing = new UploadRejectedError("not there", "missing");

Deno.test("a missing file: the first says the set-up may be wrong, later ones are quiet", () => {
  const first = uploadFailure(missing, unchrooted);
  assert.equal(first.status, 500);
  assert.equal(first.level, "warn");
  assert.ok(first.missingUnfinished);
  assert.match(
    first.why,
    /the client probably left .*; if every upload fails so, --upload-temp-store and --mongrel2-chroot must match .*; if mongrel2 runs chrooted, pass --mongrel2-chroot$/,
  );
  const later = uploadFailure(missing, { ...unchrooted, firstMissing: false });
  assert.equal(later.level, "info");
  assert.ok(later.missingUnfinished);
  assert.equal(
    later.why,
    `The upload file "${path}" was gone (the client probably left)`,
  );
});

Deno.test("a missing file of a finished upload is the set-up, every time", () => {
  for (const firstMissing of [true, false]) {
    const failure = uploadFailure(missing, {
      ...unchrooted,
      store: { ...unchrooted.store, chroot: "/srv/m2" },
      done: true,
      firstMissing,
    });
    assert.equal(failure.level, "warn");
    assert.equal(failure.missingUnfinished, false);
    assert.match(failure.why, /the file is left where mongrel2 wrote it$/);
    // The chroot is given: no suggestion to pass one.
    assert.doesNotMatch(failure.why, /pass --mongrel2-chroot/);
  }
});

Deno.test("store settings, tampered files and open errors get their own answers", () => {
  const setup = uploadFailure(
    new UploadRejectedError("Cannot use upload temp store directory", "setup"),
    unchrooted,
  );
  assert.deepEqual([setup.status, setup.level], [500, "error"]);
  const tampered = uploadFailure(
    new UploadRejectedError("a symlink, not a file"),
    unchrooted,
  );
  assert.deepEqual([tampered.status, tampered.level], [400, "warn"]);
  const gone = uploadFailure(new Deno.errors.NotFound("gone"), unchrooted);
  assert.deepEqual([gone.status, gone.level], [500, "warn"]);
  assert.match(gone.why, /removed the upload file .* before m2fetch opened it/);
  const denied = uploadFailure(
    new Deno.errors.PermissionDenied("denied"),
    unchrooted,
  );
  assert.match(denied.why, /use "0644" when m2fetch runs as another user/);
  const notCapable = uploadFailure(
    new Deno.errors.NotCapable("no --allow-read"),
    unchrooted,
  );
  assert.match(notCapable.why, /grant m2fetch --allow-read and --allow-write/);
  for (const failure of [setup, tampered, gone, denied, notCapable]) {
    assert.equal(failure.missingUnfinished, false);
  }
});
