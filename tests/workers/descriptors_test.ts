/**
 * A worker started without the file descriptors its thread needs makes
 * Deno 2.9 abort the whole process. With its descriptors nearly all taken
 * (by spooled uploads, in production; here by a lowered limit), m2fetch
 * refuses to start one: a reload fails and the old workers keep serving, a
 * crashed worker's replacement waits, and both go ahead once descriptors
 * are back.
 */

import assert from "node:assert/strict";
import { startCliHarness } from "../e2e/harness.ts";
import { isRunning, runCommand, waitFor } from "../subprocess.ts";

const APP = "tests/workers/crash_app.ts";

function openDescriptors(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** Sets the process's soft open-file limit (util-linux's prlimit). */
async function setOpenFileLimit(pid: number, soft: number): Promise<void> {
  const result = await runCommand("prlimit", [
    "--pid",
    String(pid),
    `--nofile=${soft}:`,
  ]);
  assert.equal(result.code, 0, result.stderr);
}

async function softLimit(pid: number): Promise<number> {
  const limits = await Deno.readTextFile(`/proc/${pid}/limits`);
  return Number(/^Max open files\s+(\d+)/m.exec(limits)![1]);
}

/** Waits for a log line; fails at once, with the log, if m2fetch died. */
async function logged(
  harness: { process: Deno.ChildProcess; output(): string },
  pattern: RegExp,
  timeoutMs = 10_000,
): Promise<void> {
  await waitFor(
    () => pattern.test(harness.output()) || !isRunning(harness.process.pid),
    timeoutMs,
  );
  assert.match(harness.output(), pattern);
}

async function get(url: string): Promise<string> {
  const response = await fetch(url);
  return `${response.status} ${await response.text()}`;
}

Deno.test("--workers 1: a SIGHUP with m2fetch's file descriptors nearly exhausted fails the reload and keeps serving", async () => {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", "1"],
  });
  const pid = harness.process.pid;
  const limit = await softLimit(pid);
  await setOpenFileLimit(pid, openDescriptors(pid) + 3);
  harness.process.kill("SIGHUP");
  await logged(
    harness,
    /Reload of .* failed; the old code and options keep serving: Cannot start 1 handler worker\(s\): .*ulimit -n/,
  );
  assert.equal(await get(harness.url), "200 ok\n");
  await setOpenFileLimit(pid, limit);
  harness.process.kill("SIGHUP");
  await logged(harness, /Reloaded /);
  assert.equal(await get(harness.url), "200 ok\n");
});

Deno.test("--workers 2: a crashed worker is replaced only once file descriptors are free again; the other serves meanwhile", async () => {
  await using harness = await startCliHarness(APP, {
    args: ["--workers", "2"],
  });
  const pid = harness.process.pid;
  const limit = await softLimit(pid);
  // The crashed worker's own descriptors come free when it stops: fewer
  // than a worker needs are left beside them.
  await setOpenFileLimit(pid, openDescriptors(pid) - 3);
  assert.equal(await get(`${harness.url}/crash`), "200 crashing\n");
  await logged(
    harness,
    /Cannot replace handler worker \d: Cannot start 1 handler worker\(s\).*trying again in \d+ ms/,
  );
  for (let i = 0; i < 4; i++) {
    assert.equal(await get(harness.url), "200 ok\n");
  }
  await setOpenFileLimit(pid, limit);
  await logged(harness, /Handler worker \d replaced/, 15_000);
  assert.equal(await get(harness.url), "200 ok\n");
});
