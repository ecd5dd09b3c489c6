/**
 * The server's upload paths fed through `runHandler` (an in-memory
 * transport), for sequences a real mongrel2 produces only by chance: an
 * upload that finishes after m2fetch failed to find its file at the start.
 *
 * @module
 */

import assert from "node:assert/strict";
import { buildRequestMessage, runHandler } from "../../testing.ts";
import { tempDir } from "../site.ts";

const fields = {
  method: "POST",
  url: "/up",
  headers: { "content-length": "12" },
};

/** A run whose upload file is not where the store says (`dir` is empty). */
async function uploadNotThere(dir: string, doneAfterAnswer: boolean) {
  const path = `${dir}/upload.Ab12Cd`;
  const done = await buildRequestMessage(fields, {
    upload: { path, stage: "done" },
  });
  const start = await buildRequestMessage(fields, {
    upload: { path, stage: "start" },
  });
  const run = await runHandler(
    () => new Response("unreachable"),
    doneAfterAnswer ? [start] : [start, done],
    {
      server: { uploads: { store: { template: `${dir}/upload.XXXXXX` } } },
      onReply: (_reply, control) => {
        if (doneAfterAnswer && control.replies.length === 1) {
          control.deliver(done);
        }
      },
    },
  );
  assert.equal(run.response.status, 500);
  return run.logs.join("\n");
}

Deno.test("an upload found missing that mongrel2 had already finished gets 500 that names the options to check", async () => {
  await using tmp = await tempDir("m2su-");
  assert.match(
    await uploadNotThere(tmp.path, false),
    /warn mongrel2 finished the upload ".*upload\.Ab12Cd", but it is not there: --upload-temp-store and --mongrel2-chroot must match .*; the file is left where mongrel2 wrote it; answered 500/,
  );
});

Deno.test("the upload-done of an upload found missing at its start says the set-up is wrong", async () => {
  await using tmp = await tempDir("m2su-");
  const logs = await uploadNotThere(tmp.path, true);
  assert.match(logs, /the client probably left/);
  assert.match(
    logs,
    /warn mongrel2 finished the upload ".*upload\.Ab12Cd" that m2fetch did not find at .*: --upload-temp-store and --mongrel2-chroot must match/,
  );
});
