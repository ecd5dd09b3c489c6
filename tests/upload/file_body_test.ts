/**
 * Unit tests of the upload body: a stream that follows mongrel2's temp file
 * while it grows and ends exactly at the size fixed by upload-done.
 *
 * Run: `deno test -A tests/upload/file_body_test.ts`
 *
 * @module
 */

import assert from "node:assert/strict";
import { within } from "../subprocess.ts";
import {
  openUploadBody,
  type UploadBodyOptions,
} from "../../runtime/upload/file_body.ts";

const MiB = 1024 * 1024;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Deterministic bytes: `length` bytes starting at pattern offset `from`. */
function pattern(length: number, from = 0): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = ((from + i) * 31 + 7) & 0xff;
  return bytes;
}

async function withFile(
  fn: (path: string, file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "m2b-" });
  const path = `${dir}/upload.aB3dE6`;
  const file = await Deno.open(path, { write: true, createNew: true });
  try {
    await fn(path, file);
  } finally {
    try {
      file.close();
    } catch {
      // closed by the test
    }
    await Deno.remove(dir, { recursive: true });
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await file.write(bytes.subarray(written));
  }
}

/**
 * Settles a promise at once into its error (or `null`), so a rejection that
 * comes while the test is still awaiting something else is not unhandled.
 */
function failureOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(() => null, (error) => error);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}

/**
 * Reads chunks with a default reader, or with a BYOB reader that reuses one
 * buffer of `byobBytes` (each chunk returned is a copy).
 */
function readerOf(
  stream: ReadableStream<Uint8Array>,
  byobBytes?: number,
): () => Promise<ReadableStreamReadResult<Uint8Array>> {
  if (byobBytes === undefined) {
    const reader = stream.getReader();
    return () => reader.read();
  }
  const reader = stream.getReader({ mode: "byob" });
  let buffer = new Uint8Array(byobBytes);
  return async () => {
    const { value, done } = await reader.read(buffer);
    if (done) return { done, value: undefined };
    buffer = new Uint8Array(value.buffer);
    return { done, value: value.slice() };
  };
}

/** Reads a stream to the end (see {@linkcode readerOf}), recording chunk sizes. */
async function drain(
  stream: ReadableStream<Uint8Array>,
  byobBytes?: number,
): Promise<{ bytes: Uint8Array; chunks: number[] }> {
  const read = readerOf(stream, byobBytes);
  const parts: Uint8Array[] = [];
  while (true) {
    const { value, done } = await read();
    if (done) break;
    parts.push(value);
  }
  return { bytes: concat(parts), chunks: parts.map((part) => part.length) };
}

/**
 * The ways a handler may read the body: a default reader's chunks are read
 * asynchronously; a BYOB reader's buffer too while the file grows, then
 * synchronously between turns of the event loop (or still asynchronously,
 * with `syncSliceMs: 0`). All must behave the same.
 */
const READ_MODES = [
  { mode: "default reader", byob: false, syncSliceMs: undefined },
  { mode: "BYOB reader", byob: true, syncSliceMs: undefined },
  { mode: "BYOB reader, asynchronous reads", byob: true, syncSliceMs: 0 },
];

for (const { mode, byob, syncSliceMs } of READ_MODES) {
  // With the op sanitizer on (Deno 2.9's default leaves timers out): a
  // wait woken by new bytes must not leave its poll timer to cut a later
  // wait short.
  Deno.test({
    name:
      `openUploadBody follows a file that grows in steps and ends at the done size (${mode})`,
    sanitizeOps: true,
  }, async () => {
    await withFile(async (path, file) => {
      const body = await openUploadBody(path, {
        chunkBytes: 4096,
        syncSliceMs,
      });
      const reading = drain(body.stream, byob ? 4096 : undefined);
      const steps = [1, 4095, 4096, 10_000, 0, 3, 65_536];
      let size = 0;
      for (const step of steps) {
        await writeAll(file, pattern(step, size));
        size += step;
        await delay(15);
        // The reader keeps up, but never passes what is on disk.
        assert.ok(body.bytesRead <= size);
      }
      await body.done();
      const { bytes, chunks } = await reading;
      assert.equal(bytes.length, size);
      assert.deepEqual(bytes, pattern(size));
      assert.ok(chunks.every((n) => n > 0 && n <= 4096), String(chunks));
      assert.equal(body.bytesRead, size);
      body.release();
    });
  });

  Deno.test(`openUploadBody stops at the done size even if the file grows afterwards (${mode})`, async () => {
    await withFile(async (path, file) => {
      await writeAll(file, pattern(1000));
      const body = await openUploadBody(path, { chunkBytes: 300, syncSliceMs });
      await body.done();
      await writeAll(file, pattern(500, 1000));
      const { bytes, chunks } = await drain(
        body.stream,
        byob ? 300 : undefined,
      );
      assert.deepEqual(bytes, pattern(1000));
      assert.deepEqual(chunks, [300, 300, 300, 100]);
      body.release();
    });
  });

  Deno.test(`openUploadBody ends at the Content-Length when mongrel2 wrote more (${mode})`, async () => {
    await withFile(async (path, file) => {
      const overruns: number[] = [];
      const body = await openUploadBody(path, {
        chunkBytes: 300,
        syncSliceMs,
        length: 1000,
        onOverrun: (extra) => overruns.push(extra),
      });
      const reading = drain(body.stream, byob ? 300 : undefined);
      await writeAll(file, pattern(700));
      await delay(15);
      // Bytes past the length are never read, even before done.
      await writeAll(file, pattern(340, 700));
      await delay(15);
      assert.equal(body.bytesRead, 1000);
      assert.deepEqual(overruns, []);
      await body.done();
      const { bytes } = await reading;
      assert.deepEqual(bytes, pattern(1000));
      assert.deepEqual(overruns, [40]);
      body.release();
    });
  });

  Deno.test(`openUploadBody errors when the file is shorter than the Content-Length (${mode})`, async () => {
    await withFile(async (path, file) => {
      await writeAll(file, pattern(100));
      const body = await openUploadBody(path, { syncSliceMs, length: 160 });
      await body.done();
      await assert.rejects(
        () => drain(body.stream, byob ? 4096 : undefined),
        /ended at 100 of 160 bytes/,
      );
      body.release();
    });
  });

  Deno.test(`openUploadBody errors when the file is shorter than the done size (${mode})`, async () => {
    await withFile(async (path, file) => {
      await writeAll(file, pattern(100));
      const body = await openUploadBody(path, { syncSliceMs });
      await body.done();
      await file.truncate(40);
      await assert.rejects(
        () => drain(body.stream, byob ? 4096 : undefined),
        /ended at 40 of 100 bytes/,
      );
      body.release();
    });
  });

  Deno.test(`openUploadBody: upload-done arriving while a read at the end of the file is pending ends the body cleanly (${mode})`, async () => {
    // Regression: done() fixed the size while file.read() was returning EOF,
    // and the body failed with "the upload file ended at N of N bytes".
    await withFile(async (path, file) => {
      await writeAll(file, pattern(1000));
      for (let round = 0; round < 300; round++) {
        const body = await openUploadBody(path, {
          chunkBytes: 4096,
          syncSliceMs,
        });
        const read = readerOf(body.stream, byob ? 4096 : undefined);
        assert.equal((await read()).value?.length, 1000);
        // The next pull reads EOF; done() races it.
        const next = read();
        await Promise.all([body.done(), Promise.resolve()]);
        const result = await next;
        assert.equal(result.done, true, `round ${round}`);
        body.release();
      }
    });
  });
}

for (const syncSliceMs of [undefined, 0]) {
  const mode = syncSliceMs === 0 ? "asynchronous reads" : "synchronous reads";
  Deno.test(`openUploadBody: a BYOB reader reuses its own buffer while the file grows (${mode})`, async () => {
    await withFile(async (path, file) => {
      const body = await openUploadBody(path, { maxPollMs: 10, syncSliceMs });
      const reader = body.stream.getReader({ mode: "byob" });
      const received = new Uint8Array(30_000);
      let at = 0;
      let buffer = new Uint8Array(4096);
      const reading = (async () => {
        while (true) {
          const { value, done } = await reader.read(buffer);
          if (done) break;
          received.set(value, at);
          at += value.length;
          assert.ok(value.length <= 4096);
          // The same memory comes back each time (transferred, not copied).
          buffer = new Uint8Array(value.buffer);
        }
      })();
      let size = 0;
      for (const step of [100, 5000, 0, 9000, 15_900]) {
        await writeAll(file, pattern(step, size));
        size += step;
        await delay(15);
      }
      await body.done();
      await reading;
      assert.equal(at, size);
      assert.deepEqual(received.subarray(0, at), pattern(size));
      body.release();
    });
  });

  Deno.test(`openUploadBody: BYOB reads stop exactly at the done size (${mode})`, async () => {
    await withFile(async (path, file) => {
      await writeAll(file, pattern(10_000));
      const body = await openUploadBody(path, { syncSliceMs });
      await body.done();
      await writeAll(file, pattern(100, 10_000));
      const reader = body.stream.getReader({ mode: "byob" });
      const sizes: number[] = [];
      let buffer = new Uint8Array(3000);
      while (true) {
        const { value, done } = await reader.read(buffer);
        if (done) break;
        sizes.push(value.length);
        buffer = new Uint8Array(value.buffer);
      }
      assert.deepEqual(sizes, [3000, 3000, 3000, 1000]);
      body.release();
    });
  });
}

Deno.test("openUploadBody: done before the reader starts, and an empty upload", async () => {
  await withFile(async (path, file) => {
    const empty = await openUploadBody(path);
    await empty.done();
    assert.equal((await drain(empty.stream)).bytes.length, 0);
    empty.release();
    await writeAll(file, pattern(70_000));
    const body = await openUploadBody(path);
    await body.done();
    assert.deepEqual((await drain(body.stream)).bytes, pattern(70_000));
    body.release();
  });
});

Deno.test("openUploadBody: the reader waits without spinning while the file does not grow", async () => {
  await withFile(async (path, file) => {
    const { body, counts } = await openCounting(path, { maxPollMs: 20 });
    const reader = body.stream.getReader();
    const first = reader.read();
    let settled = false;
    first.then(() => settled = true);
    await delay(120);
    assert.equal(settled, false, "read resolved with nothing written");
    // Polls back off from 1 ms to maxPollMs: about 9 reads in 120 ms (fewer
    // on a busy machine); a loop that spins reads every turn.
    assert.ok(counts.async <= 15, `${counts.async} reads in 120 ms`);
    await writeAll(file, pattern(10));
    const { value } = await first;
    assert.deepEqual(value, pattern(10));
    await body.done();
    assert.equal((await reader.read()).done, true);
    body.release();
  });
});

Deno.test("openUploadBody errors once the body grows past maxBytes", async () => {
  await withFile(async (path, file) => {
    let limits = 0;
    const body = await openUploadBody(path, {
      maxBytes: 5000,
      chunkBytes: 1024,
      onLimit: () => limits++,
    });
    const reading = failureOf(drain(body.stream));
    await writeAll(file, pattern(4000));
    await delay(20);
    await writeAll(file, pattern(4000, 4000));
    const error = await reading;
    assert.ok(error instanceof RangeError, String(error));
    assert.match(error.message, /larger than the 5000-byte limit/);
    assert.equal(limits, 1);
    body.release();
  });
});

Deno.test("openUploadBody: exactly maxBytes is accepted", async () => {
  await withFile(async (path, file) => {
    await writeAll(file, pattern(5000));
    const body = await openUploadBody(path, {
      maxBytes: 5000,
      chunkBytes: 1024,
    });
    await body.done();
    assert.equal((await drain(body.stream)).bytes.length, 5000);
    body.release();
  });
});

Deno.test("openUploadBody: fail() errors a waiting reader with the reason", async () => {
  await withFile(async (path, file) => {
    await writeAll(file, pattern(10));
    const body = await openUploadBody(path);
    const reading = failureOf(drain(body.stream));
    await delay(30);
    const reason = new DOMException(
      "The request has been cancelled.",
      "AbortError",
    );
    body.fail(reason);
    assert.equal(await reading, reason);
    body.release();
  });
});

Deno.test("openUploadBody: release() ends reads and closes the file", async () => {
  await withFile(async (path, file) => {
    await writeAll(file, pattern(10));
    const body = await openUploadBody(path);
    const reader = body.stream.getReader();
    assert.deepEqual((await reader.read()).value, pattern(10));
    const waiting = failureOf(reader.read());
    body.release();
    assert.match(String(await waiting), /the request has ended/);
    // done() after release is harmless.
    await body.done();
  });
});

Deno.test("openUploadBody: cancelling the stream closes the file", async () => {
  await withFile(async (path, file) => {
    await writeAll(file, pattern(10));
    const body = await openUploadBody(path);
    await body.stream.cancel("not interested");
    // The resource sanitizer fails the test if the file stayed open.
  });
});

Deno.test("openUploadBody notices that mongrel2 removed an unfinished file", async () => {
  await withFile(async (path, file) => {
    await writeAll(file, pattern(10));
    const body = await openUploadBody(path, { maxPollMs: 20 });
    const reading = failureOf(drain(body.stream));
    await delay(20);
    await Deno.remove(path);
    const started = performance.now();
    assert.match(String(await reading), /removed the upload file/);
    assert.ok(performance.now() - started < 3000);
    body.release();
    await Deno.writeTextFile(path, ""); // for withFile's clean-up
  });
});

Deno.test("openUploadBody: a missing file is NotFound", async () => {
  await assert.rejects(
    () => openUploadBody("/nonexistent/upload.aB3dE6"),
    Deno.errors.NotFound,
  );
});

/**
 * openUploadBody over the real file at `path`, counting its synchronous and
 * asynchronous reads, and the most synchronous reads between two
 * asynchronous ones.
 */
async function openCounting(path: string, options: UploadBodyOptions) {
  const counts = { sync: 0, async: 0 };
  const syncRun = { current: 0, longest: 0 };
  const file = await Deno.open(path, { read: true });
  const counting = {
    read(buffer: Uint8Array) {
      counts.async++;
      syncRun.current = 0;
      return file.read(buffer);
    },
    readSync(buffer: Uint8Array) {
      counts.sync++;
      syncRun.longest = Math.max(syncRun.longest, ++syncRun.current);
      return file.readSync(buffer);
    },
    stat: () => file.stat(),
    close: () => file.close(),
  };
  const open = Deno.open;
  // deno-lint-ignore no-explicit-any
  (Deno as any).open = () => Promise.resolve(counting);
  try {
    return { body: await openUploadBody(path, options), counts, syncRun };
  } finally {
    Deno.open = open;
  }
}

Deno.test("openUploadBody: a BYOB reader reads a growing file asynchronously, then the complete upload synchronously, 1 MiB at most each and never past the done size", async () => {
  await withFile(async (path, file) => {
    await writeAll(file, pattern(100));
    const { body, counts } = await openCounting(path, {
      syncSliceMs: 60_000, // no turns of the event loop needed
    });
    const reader = body.stream.getReader({ mode: "byob" });
    let buffer = new Uint8Array(3 * MiB);
    const sizes: number[] = [];
    const received: Uint8Array[] = [];
    const read = async () => {
      const { value, done } = await reader.read(buffer);
      if (done) return false;
      sizes.push(value.length);
      received.push(value.slice());
      buffer = new Uint8Array(value.buffer);
      return true;
    };
    assert.ok(await read());
    assert.deepEqual(counts, { sync: 0, async: 1 });
    // mongrel2 finishes the upload (and the file then grows past it).
    const size = 100 + 2.5 * MiB;
    await writeAll(file, pattern(size - 100, 100));
    await body.done();
    await writeAll(file, pattern(MiB, size));
    while (await read());
    assert.deepEqual(sizes, [100, MiB, MiB, 0.5 * MiB]);
    assert.deepEqual(concat(received), pattern(size));
    assert.equal(body.bytesRead, size);
    assert.deepEqual(counts, { sync: 3, async: 1 });
    body.release();
  });
});

Deno.test("openUploadBody: a long read lets the event loop take a turn every syncSliceMs", async () => {
  await withFile(async (path, file) => {
    await writeAll(file, pattern(4 * MiB));
    const { body, counts, syncRun } = await openCounting(path, {
      syncSliceMs: 5,
    });
    await body.done();
    // Other work waiting on the event loop: a message posted after a read
    // arrives only when the loop takes a turn. (Not a timer: while op
    // completions keep the loop busy, Deno may hold a due timer back for a
    // good while, more so on a loaded machine.)
    const { port1, port2 } = new MessageChannel();
    let turns = 0;
    let posted = false;
    port1.onmessage = () => {
      turns++;
      posted = false;
    };
    // 256 reads at 1 ms of work each. A body that never yielded would read
    // them all synchronously; a 5 ms slice holds about 5. Reads are counted
    // rather than milliseconds measured: on a loaded machine a slice holds
    // fewer reads.
    const reader = body.stream.getReader({ mode: "byob" });
    let buffer = new Uint8Array(16 * 1024);
    let bytes = 0;
    while (true) {
      const { value, done } = await reader.read(buffer);
      if (done) break;
      bytes += value.length;
      buffer = new Uint8Array(value.buffer);
      const until = performance.now() + 1;
      while (performance.now() < until) {
        // the handler's work
      }
      if (!posted) {
        posted = true;
        port2.postMessage(null);
      }
    }
    port1.close();
    port2.close();
    assert.equal(bytes, 4 * MiB);
    assert.ok(
      syncRun.longest <= 40,
      `${syncRun.longest} synchronous reads without an asynchronous one`,
    );
    assert.ok(counts.async >= 5, `${counts.async} asynchronous reads`);
    assert.ok(counts.sync > counts.async, `${counts.sync} synchronous reads`);
    assert.ok(turns >= 1, "no other work ran during the read");
    body.release();
  });
});

Deno.test("openUploadBody: default readers read asynchronously, into a fresh chunk each", async () => {
  await withFile(async (path, file) => {
    await writeAll(file, pattern(100_000));
    const { body, counts } = await openCounting(path, { chunkBytes: 30_000 });
    await body.done();
    const parts: Uint8Array[] = [];
    for await (const chunk of body.stream) parts.push(chunk);
    assert.deepEqual(parts.map((part) => part.length), [
      30_000,
      30_000,
      30_000,
      10_000,
    ]);
    assert.equal(new Set(parts.map((part) => part.buffer)).size, 4);
    assert.deepEqual(concat(parts), pattern(100_000));
    assert.equal(counts.sync, 0);
    body.release();
  });
});

/**
 * A stand-in for the `Deno.FsFile` openUploadBody opens, whose reads finish
 * only when the test says, so the order of a read and upload-done is exact.
 */
class SteppedFile {
  content: Uint8Array = new Uint8Array(0);
  #position = 0;
  #pending: { buffer: Uint8Array; resolve: (n: number | null) => void }[] = [];

  read(buffer: Uint8Array): Promise<number | null> {
    return new Promise((resolve) => this.#pending.push({ buffer, resolve }));
  }

  /** Whether a read waits. */
  get waiting(): boolean {
    return this.#pending.length > 0;
  }

  /** Finishes the waiting read as the file is now (or as given). */
  finishRead(asIfSize = this.content.length): void {
    const { buffer, resolve } = this.#pending.shift()!;
    const n = Math.min(buffer.length, asIfSize - this.#position);
    if (n <= 0) return resolve(null);
    buffer.set(this.content.subarray(this.#position, this.#position + n));
    this.#position += n;
    resolve(n);
  }

  stat(): Promise<{ size: number }> {
    return Promise.resolve({ size: this.content.length });
  }

  close(): void {}
}

/**
 * openUploadBody over a {@linkcode SteppedFile}, reading asynchronously only
 * (a synchronous read cannot interleave with upload-done).
 */
async function openStepped(file: SteppedFile) {
  const open = Deno.open;
  // deno-lint-ignore no-explicit-any
  (Deno as any).open = () => Promise.resolve(file);
  try {
    return await openUploadBody("/stepped/upload.aB3dE6", { syncSliceMs: 0 });
  } finally {
    Deno.open = open;
  }
}

Deno.test("openUploadBody: upload-done arriving while a read found a shorter file reads on instead of failing", async () => {
  // Regression: a read that hit the end of the file while mongrel2 was
  // still writing returned after done() had fixed a larger size, and the
  // body failed with "the upload file ended at N of M bytes".
  const file = new SteppedFile();
  file.content = pattern(100);
  const body = await openStepped(file);
  const reader = body.stream.getReader();
  const first = reader.read();
  await waitUntil(() => file.waiting);
  file.finishRead();
  assert.equal((await first).value?.length, 100);
  const second = reader.read();
  second.catch(() => {}); // awaited below; fails the test, not the runner
  await waitUntil(() => file.waiting);
  // mongrel2 writes the rest and reports done while the read, which saw
  // only 100 bytes, has not returned yet.
  file.content = pattern(250);
  const done = body.done();
  file.finishRead(100);
  await done;
  await waitUntil(() => file.waiting);
  file.finishRead();
  const result = await second;
  assert.deepEqual(result.value, pattern(150, 100));
  assert.equal((await reader.read()).done, true);
  body.release();
});

async function waitUntil(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await delay(1);
  assert.ok(condition(), "timed out");
}

Deno.test("openUploadBody: release() ends a stream nobody is reading, so a pipe from it ends too", async () => {
  await withFile(async (path, file) => {
    await writeAll(file, pattern(200_000));
    const body = await openUploadBody(path, { chunkBytes: 64 * 1024 });
    await body.done();
    // One chunk read, then the reader stops asking: no read is under way
    // (a handler that refused the upload, a worker's pipe under
    // back-pressure).
    const reader = body.stream.getReader();
    assert.equal((await reader.read()).value?.length, 64 * 1024);
    const closed = reader.closed.then(
      () => "closed",
      (error) => `errored: ${error.message}`,
    );
    body.release();
    const outcome = await within(closed, 1000, "still open");
    assert.equal(
      outcome,
      "errored: Cannot read request body: the request has ended",
    );
  });
});
