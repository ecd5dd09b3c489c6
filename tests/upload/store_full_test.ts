/**
 * mongrel2's upload store on a file system that fills up: mongrel2 gives up
 * the upload (it unlinks the file and closes the client's connection), the
 * handler never gets a short body it takes for complete, m2fetch says what
 * happened, nothing is left in the store, and the next upload that fits is
 * served. Root only: the store is a small tmpfs.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startSite } from "../site.ts";
import { startM2fetch, waitFor } from "../subprocess.ts";

const isRoot = Deno.uid() === 0;
const MiB = 1024 * 1024;

async function run(command: string, args: string[]): Promise<void> {
  const result = await new Deno.Command(command, { args, stderr: "piped" })
    .output();
  assert.ok(result.success, new TextDecoder().decode(result.stderr));
}

/** POSTs `body` over raw TCP; the answer's status line, or null if cut off. */
async function post(port: number, body: Uint8Array): Promise<string | null> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head = new TextEncoder().encode(
      `POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
    );
    const reading = new Response(conn.readable).text().catch(() => "");
    const writer = conn.writable.getWriter();
    await writer.write(head);
    await writer.write(body).catch(() => {});
    const answer = await reading;
    return answer === "" ? null : answer.split("\r\n")[0];
  } finally {
    try {
      conn.close();
    } catch {
      // closed by the peer
    }
  }
}

Deno.test({
  name:
    "an upload larger than the store's free space fails without a short body, is logged, and leaves the store empty",
  ignore: !isRoot,
  fn: async () => {
    await using site = await startSite({ prefix: "m2f-" });
    const template = String(site.mongrel2.settings["upload.temp_store"]);
    const store = template.slice(0, template.lastIndexOf("/"));
    await run("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", store]);
    try {
      await using m2fetch = await startM2fetch(
        site,
        "tests/upload/hash_app.ts",
        { args: ["--upload-temp-store", template] },
      );
      const big = crypto.getRandomValues(new Uint8Array(64 * 1024));
      const body = new Uint8Array(8 * MiB);
      for (let at = 0; at < body.length; at += big.length) body.set(big, at);
      // Several at once, as many as one: none reaches the handler whole.
      const answers = await Promise.all(
        [1, 2, 3].map(() => post(site.port, body)),
      );
      for (const answer of answers) assert.equal(answer, null);
      assert.doesNotMatch(m2fetch.output(), /access POST \/up 200/);
      await m2fetch.waitForOutput(
        /mongrel2 closed connection \d+ before the upload of POST \/up was complete \(the handler had read \d+ bytes of it\): the client left, or mongrel2 could not write its upload.temp_store/,
      );
      assert.ok(
        await waitFor(() => [...Deno.readDirSync(store)].length === 0, 5000),
        `left in the store: ${[...Deno.readDirSync(store)].map((e) => e.name)}`,
      );
      // Space is back: an upload that fits is served whole.
      const fits = body.subarray(0, 2 * MiB);
      const response = await fetch(`${site.url}/up`, {
        method: "POST",
        body: fits,
      });
      assert.deepEqual(await response.json(), {
        bytes: fits.length,
        sha256: createHash("sha256").update(fits).digest("hex"),
      });
    } finally {
      await run("umount", [store]);
    }
  },
});
