/**
 * Least privilege (issue 7): m2fetch started with the narrowest `deno run`
 * permission set that works (docs/reliability.md), no `-A`, serves the core
 * scenarios through a real mongrel2: GET, POST, an upload through
 * mongrel2's temp store (read, then deleted), a streamed response. Dropping
 * a grant makes it fail, so none of them is spare.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type RawResponse, ROOT, waitFor } from "../e2e/harness.ts";
import { rawRequest, type Site, spawnM2fetch, startSite } from "./site.ts";

const APP_DIR = `${ROOT}/tests/reliability`;
const APP = "tests/reliability/stream_app.ts";
const decoder = new TextDecoder();

/** What the set is built from. */
interface Grants {
  /** The directory of the handler module (and its m2fetch.json). */
  appDir: string;
  /** The directory of mongrel2's upload.temp_store, as m2fetch sees it. */
  uploadDir?: string;
  /** mongrel2's config.sqlite, with --mongrel2-config. */
  database?: string;
  /** With --workers above 0: the worker module graph is read at run time. */
  workers?: boolean;
  /** mongrel2's handler endpoints (`ipc://` paths are connected to). */
  endpoints: string[];
}

/** The socket paths of the `ipc://` endpoints among `endpoints`. */
function socketPaths(endpoints: string[]): string[] {
  return endpoints.filter((spec) => spec.startsWith("ipc://"))
    .map((spec) => spec.slice("ipc://".length));
}

/**
 * The narrowest permissions for `deno run cli.ts` (see docs/reliability.md).
 *
 * @param grants The paths of this deployment.
 * @returns The `deno run` flags.
 */
export function leastPrivilege(grants: Grants): string[] {
  const sockets = socketPaths(grants.endpoints);
  const read = [
    grants.appDir, // the handler module (a dynamic import) and m2fetch.json
    ...sockets, // connecting to a unix socket takes read and write
  ];
  if (grants.workers) read.push(`${ROOT}/runtime`);
  if (grants.uploadDir !== undefined) read.push(grants.uploadDir);
  if (grants.database !== undefined) read.push(grants.database);
  const write = [...sockets];
  if (grants.uploadDir !== undefined) write.push(grants.uploadDir);
  return [
    "--no-prompt",
    // Deno checks a unix socket as a net host, and the path as a file.
    `--allow-net=${sockets.map((path) => `unix:${path}`).join(",")}`,
    `--allow-read=${read.join(",")}`,
    `--allow-write=${write.join(",")}`,
  ];
}

/** The site's handler endpoints, which its m2fetch connects to. */
function endpointsOf(site: Site): string[] {
  return site.mongrel2.handlers.flatMap((h) => [h.sendSpec, h.recvSpec]);
}

/** POSTs `size` bytes of "u" to /echo on a new connection. */
function postUpload(port: number, size: number): Promise<RawResponse> {
  return rawRequest(
    port,
    `POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${size}\r\n\r\n${
      "u".repeat(size)
    }`,
  );
}

async function coreScenarios(site: Site, uploadDir: string): Promise<void> {
  const get = await rawRequest(site.port, "/hello");
  assert.equal(get.status, 200);
  assert.equal(decoder.decode(get.body), "ok /hello\n");

  const post = await rawRequest(
    site.port,
    "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
  );
  assert.equal(post.status, 200);
  assert.equal(decoder.decode(post.body), "hello world");

  // Over limits.content_length (20 KiB): mongrel2 spools it to a temp file.
  const size = 300 * 1024;
  const upload = await postUpload(site.port, size);
  assert.equal(upload.status, 200);
  assert.equal(upload.body.length, size);
  assert.ok(upload.body.every((byte) => byte === 0x75));

  const stream = await rawRequest(site.port, "/big?mib=4");
  assert.equal(stream.status, 200);
  assert.equal(stream.body.length, 4 * 1024 * 1024);

  // The upload's temp file was deleted (that needs the write grant).
  const deadline = performance.now() + 3000;
  let left = [...Deno.readDirSync(uploadDir)];
  while (left.length > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    left = [...Deno.readDirSync(uploadDir)];
  }
  assert.deepEqual(left.map((entry) => entry.name), []);
}

for (const workers of [false, true]) {
  Deno.test(
    `m2fetch with the least-privilege permission set (no -A${
      workers ? ", --workers 1" : ""
    }) serves GET, POST, an upload and a stream`,
    async () => {
      await using site = await startSite();
      const uploadDir = `${site.dir}/tmp`;
      const permissions = leastPrivilege({
        appDir: APP_DIR,
        uploadDir,
        database: site.mongrel2.databasePath,
        workers,
        endpoints: endpointsOf(site),
      });
      const flags = permissions.join(" ");
      assert.doesNotMatch(flags, /(^| )(-A|--allow-all)( |$)/);
      assert.doesNotMatch(flags, /--allow-(env|sys|run|import|ffi)/);
      // Net access only to mongrel2's two sockets.
      assert.match(flags, /--allow-net=unix:\S+_send,unix:\S+_recv /);
      await using m2fetch = spawnM2fetch(site, APP, {
        permissions,
        args: [
          "--mongrel2-config",
          site.mongrel2.databasePath,
          "--upload-temp-store",
          `${uploadDir}/upload.XXXXXX`,
          "--workers",
          workers ? "1" : "0",
        ],
      });
      assert.ok(await m2fetch.waitForOutput(/ serving /), m2fetch.output());
      await coreScenarios(site, uploadDir);
      const status = await m2fetch.stop();
      assert.equal(status.code, 0, m2fetch.output());
      assert.doesNotMatch(m2fetch.output(), /Requires \w+ access|NotCapable/);
    },
  );
}

Deno.test("each grant of the least-privilege set is needed", async () => {
  await using site = await startSite();
  const uploadDir = `${site.dir}/tmp`;
  const full = leastPrivilege({
    appDir: APP_DIR,
    uploadDir,
    endpoints: endpointsOf(site),
  });
  const args = ["--upload-temp-store", `${uploadDir}/upload.XXXXXX`];
  const without = (pattern: RegExp, replace: string) =>
    full.map((flag) => flag.replace(pattern, replace)).filter((f) => f !== "");

  // No app dir, or no access to mongrel2's sockets: m2fetch cannot start.
  const [socket] = socketPaths(endpointsOf(site));
  for (
    const [what, permissions, expected] of [
      [
        "the app dir",
        without(new RegExp(`=${APP_DIR}`), "=/nowhere"),
        /read access/,
      ],
      [
        "net access to the sockets",
        without(/^--allow-net=.*$/, ""),
        new RegExp(
          `Cannot connect to ipc://${socket}: m2fetch needs --allow-net=unix:${socket}\n`,
        ),
      ],
      [
        "write access to the sockets",
        without(/^--allow-write=.*$/, `--allow-write=${uploadDir}`),
        new RegExp(
          `Cannot connect to ipc://${socket}: m2fetch needs --allow-write=${socket}\n`,
        ),
      ],
    ] as const
  ) {
    await using m2fetch = spawnM2fetch(site, APP, { permissions, args });
    await m2fetch.status;
    const output = m2fetch.output();
    assert.doesNotMatch(output, / serving /, `started without ${what}`);
    assert.match(output, expected, `without ${what}`);
  }

  // No write grant on the store: the upload is served, but its temp file
  // cannot be deleted, and m2fetch says so.
  await using m2fetch = spawnM2fetch(site, APP, {
    permissions: without(
      /^--allow-write=.*$/,
      `--allow-write=${socketPaths(endpointsOf(site))}`,
    ),
    args,
  });
  assert.ok(await m2fetch.waitForOutput(/ serving /), m2fetch.output());
  const size = 64 * 1024;
  const upload = await postUpload(site.port, size);
  assert.equal(upload.status, 200);
  assert.ok(
    await m2fetch.waitForOutput(/Cannot delete the upload file/, 5000),
    m2fetch.output(),
  );
  for (const entry of Deno.readDirSync(uploadDir)) {
    await Deno.remove(`${uploadDir}/${entry.name}`);
  }
});

Deno.test("--workers without read access to m2fetch's runtime/ stops start-up with one line naming the grant", async () => {
  await using site = await startSite();
  // The set for --workers 0: the worker module is not readable.
  const permissions = leastPrivilege({
    appDir: APP_DIR,
    endpoints: endpointsOf(site),
  });
  await using m2fetch = spawnM2fetch(site, APP, {
    permissions,
    args: ["--workers", "1"],
  });
  const status = await m2fetch.status;
  const output = m2fetch.output();
  assert.equal(status.code, 1, output);
  assert.match(
    output,
    new RegExp(
      `(^|\\n)m2fetch: Cannot start handler workers: they run m2fetch's ${ROOT}/runtime/workers/worker_main\\.ts, which this process may not read \\(grant read access to m2fetch's runtime/ directory, e\\.g\\. --allow-read=${ROOT}/runtime, or run with --workers 0\\)\\n?$`,
    ),
  );
  // Not blamed on the handler module, nor Deno's own worker error.
  assert.doesNotMatch(output, /Cannot load handler module|Uncaught/);
});

Deno.test("an upload file m2fetch may not open gets 500 at once, with the temp_store_mode hint", async () => {
  // mongrel2 writes through the descriptor mkstemp gave it; the mode is
  // what other processes get. Root would open the file anyway, so as root
  // m2fetch runs without the capabilities that override file modes.
  await using site = await startSite({
    // Write only: mongrel2 rejects "0000".
    settings: { "upload.temp_store_mode": "0200" },
  });
  const uploadDir = `${site.dir}/tmp`;
  const caps = "-dac_override,-dac_read_search";
  await using m2fetch = spawnM2fetch(site, APP, {
    args: ["--upload-temp-store", `${uploadDir}/upload.XXXXXX`],
    wrapper: Deno.uid() === 0
      ? ["setpriv", "--inh-caps", caps, "--bounding-set", caps]
      : [],
  });
  assert.ok(await m2fetch.waitForOutput(/ serving /), m2fetch.output());
  const upload = await postUpload(site.port, 64 * 1024);
  assert.equal(upload.status, 500);
  assert.equal(decoder.decode(upload.body), "Internal Server Error");
  assert.match(
    m2fetch.output(),
    /error Cannot open the upload file "[^"]+": Permission denied.*use "0644" when m2fetch runs as another user\); answered 500 \(POST \/echo\)/,
  );
  // The file is still deleted (deleting needs the directory, not the file).
  assert.ok(
    await waitFor(() => [...Deno.readDirSync(uploadDir)].length === 0, 5000),
    [...Deno.readDirSync(uploadDir)].map((entry) => entry.name).join(", "),
  );
  assert.equal((await m2fetch.stop()).code, 0, m2fetch.output());
});

Deno.test({
  name:
    "an upload store m2fetch cannot delete from is a start-up warning (as root without DAC capabilities)",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await using site = await startSite();
    const uploadDir = `${site.dir}/tmp`;
    await Deno.chmod(uploadDir, 0o555);
    const caps = "-dac_override,-dac_read_search";
    await using m2fetch = spawnM2fetch(site, APP, {
      args: ["--upload-temp-store", `${uploadDir}/upload.XXXXXX`],
      wrapper: ["setpriv", "--inh-caps", caps, "--bounding-set", caps],
    });
    assert.ok(await m2fetch.waitForOutput(/ serving /), m2fetch.output());
    assert.match(
      m2fetch.output(),
      /warn m2fetch cannot delete upload files in .*\/tmp \(Permission denied.*\): every upload would stay there; make it writable by the user m2fetch runs as/,
    );
    assert.deepEqual([...Deno.readDirSync(uploadDir)], []);
    await Deno.chmod(uploadDir, 0o755);
    assert.equal((await m2fetch.stop()).code, 0, m2fetch.output());
  },
});
