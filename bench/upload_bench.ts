/**
 * Large-upload benchmark: 1 GiB through a real mongrel2 into m2fetch running
 * as `deno run -A cli.ts` (a subprocess, so its memory is its own), to a
 * handler that hashes the body.
 *
 * Prints:
 *
 * - m2fetch's RSS above idle while the upload streams (sampled from
 *   `/proc/PID/status` VmRSS every 10 ms, and VmHWM), target ≤ 64 MiB;
 * - the body read rate, as a ratio to `cat FILE > /dev/null` on the same
 *   complete temp file in the same run (measured inside the handler with
 *   `--upload-invoke done`, so the file is complete and in the page cache
 *   for both), target ≥ 0.8, with a default reader and with a BYOB reader
 *   reusing one 1 MiB buffer;
 * - for information: end-to-end rate in the default streaming mode and the
 *   read+hash rate.
 *
 * Each run starts a fresh m2fetch, warms it with an 8 MiB upload (a BYOB
 * reader takes it in 4 KiB reads, so that the read path is compiled before
 * the timed read), then takes idle RSS. The exit code is 1 when a hash
 * mismatches, when streaming RSS misses its target, or when the BYOB read
 * ratio misses its target.
 *
 * Run: `deno run -A bench/upload_bench.ts [SIZE_MIB]` (default 1024).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { startMongrel2 } from "../runtime/mongrel2/mod.ts";
import {
  delay,
  readMemory,
  type ServerProcess,
  spawnDeno,
} from "./processes.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const MiB = 1024 * 1024;
const SIZE = Number(Deno.args[0] ?? 1024) * MiB;
const RSS_TARGET_MIB = 64;
const RATIO_TARGET = 0.8;

const APP = `import { createHash } from "node:crypto";
import { mongrel2Info } from "${ROOT}/runtime/info.ts";

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const hashIt = url.searchParams.get("hash") !== "0";
    const hash = createHash("sha256");
    const byob = url.searchParams.get("byob") === "1";
    // A BYOB reader reads into one buffer (1 MiB unless \`buffer\` says),
    // over and over.
    const reader = byob
      ? request.body!.getReader({ mode: "byob" })
      : request.body!.getReader();
    let buffer = new Uint8Array(
      Number(url.searchParams.get("buffer") ?? 1024 * 1024),
    );
    let bytes = 0;
    let chunks = 0;
    let readMs = 0;
    let hashMs = 0;
    const started = performance.now();
    while (true) {
      const before = performance.now();
      const { value, done } = byob
        ? await (reader as ReadableStreamBYOBReader).read(buffer)
        : await (reader as ReadableStreamDefaultReader<Uint8Array>).read();
      readMs += performance.now() - before;
      if (done) break;
      if (byob) buffer = new Uint8Array(value.buffer);
      bytes += value.length;
      chunks++;
      if (hashIt) {
        const at = performance.now();
        hash.update(value);
        hashMs += performance.now() - at;
      }
    }
    const totalMs = performance.now() - started;
    const catMs: number[] = [];
    if (url.searchParams.get("cat") === "1") {
      // The same file, complete and in the page cache, before it is deleted.
      const path = mongrel2Info(request)!.headers["x-mongrel2-upload-start"];
      for (let i = 0; i < 3; i++) {
        const at = performance.now();
        const { success } = await new Deno.Command("sh", {
          args: ["-c", 'cat "$1" > /dev/null', "sh", String(path)],
        }).output();
        if (!success) throw new Error("cat failed");
        catMs.push(performance.now() - at);
      }
    }
    return Response.json({
      bytes,
      chunks,
      sha256: hashIt ? hash.digest("hex") : null,
      readMs,
      hashMs,
      totalMs,
      catMs,
    });
  },
};
`;

interface HandlerReport {
  bytes: number;
  chunks: number;
  sha256: string | null;
  readMs: number;
  hashMs: number;
  totalMs: number;
  catMs: number[];
}

/** Samples a process's VmRSS until stopped; returns the peak. */
function sampleRss(pid: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        peak = Math.max(peak, readMemory(pid).rss);
      } catch {
        return;
      }
      await delay(10);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** `deno run -A cli.ts` serving the bench app; resolves once it settles. */
async function startM2fetch(args: string[]): Promise<ServerProcess> {
  const m2fetch = spawnDeno(["run", "-A", "cli.ts", "--quiet", ...args]);
  // --quiet hides the "serving" line: wait until its memory settles.
  const deadline = performance.now() + 30_000;
  let last = -1;
  let stableFor = 0;
  while (stableFor < 1000) {
    if (performance.now() > deadline) {
      await m2fetch.stop();
      throw new Error(`m2fetch did not start:\n${m2fetch.stderrTail()}`);
    }
    let rss: number;
    try {
      rss = readMemory(m2fetch.pid).rss;
    } catch {
      await m2fetch.stop();
      throw new Error(`m2fetch exited:\n${m2fetch.stderrTail()}`);
    }
    stableFor = Math.abs(rss - last) < 512 * 1024 ? stableFor + 100 : 0;
    last = rss;
    await delay(100);
  }
  return m2fetch;
}

/**
 * Uploads `size` deterministic bytes over raw TCP, hashing them as they are
 * generated; returns the handler's report, the client's hash and the time.
 */
async function upload(
  port: number,
  path: string,
  size: number,
): Promise<{ report: HandlerReport; sha256: string; ms: number }> {
  const block = new Uint8Array(MiB);
  crypto.getRandomValues(block.subarray(0, 65536));
  for (let at = 65536; at < MiB; at *= 2) block.copyWithin(at, 0, at);
  const hash = createHash("sha256");
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  const encoder = new TextEncoder();
  const writeAll = async (bytes: Uint8Array) => {
    let written = 0;
    while (written < bytes.length) {
      written += await conn.write(bytes.subarray(written));
    }
  };
  const reading = (async () => {
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(65536);
    let text = "";
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
      const end = text.indexOf("\r\n\r\n");
      const length = Number(/content-length: *(\d+)/i.exec(text)?.[1] ?? -1);
      if (end >= 0 && length >= 0 && text.length >= end + 4 + length) {
        return { head: text.slice(0, end), body: text.slice(end + 4) };
      }
    }
    throw new Error(`No response: ${text.slice(0, 300)}`);
  })();
  await writeAll(
    encoder.encode(
      `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${size}\r\n\r\n`,
    ),
  );
  for (let sent = 0, index = 0; sent < size; index++) {
    const piece = block.slice(0, Math.min(MiB, size - sent));
    new DataView(piece.buffer).setUint32(0, index);
    hash.update(piece);
    await writeAll(piece);
    sent += piece.length;
  }
  const response = await reading;
  const ms = performance.now() - started;
  conn.close();
  if (!response.head.startsWith("HTTP/1.1 200")) {
    throw new Error(`Upload failed: ${response.head}\n${response.body}`);
  }
  return {
    report: JSON.parse(response.body),
    sha256: hash.digest("hex"),
    ms,
  };
}

const mib = (bytes: number) => (bytes / MiB).toFixed(1);
const rate = (bytes: number, ms: number) =>
  `${(bytes / MiB / (ms / 1000)).toFixed(0)} MiB/s`;

interface Run {
  /** What the line says. */
  label: string;
  /** `--upload-invoke`. */
  invoke: "start" | "done";
  /** Request path and query for the bench app. */
  path: string;
}

const RUNS: Run[] = [
  { label: "stream + sha256, default reader", invoke: "start", path: "/hash" },
  {
    label: "stream + sha256, BYOB reader",
    invoke: "start",
    path: "/hash?byob=1",
  },
  {
    label: "complete file, read only, default reader",
    invoke: "done",
    path: "/read?hash=0&cat=1",
  },
  {
    label: "complete file, read only, BYOB reader",
    invoke: "done",
    path: "/read?hash=0&byob=1&cat=1",
  },
  {
    label: "complete file + sha256, default reader",
    invoke: "done",
    path: "/hash",
  },
];

async function main(): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "m2bench-" });
  await Deno.writeTextFile(`${dir}/app.ts`, APP);
  await using mongrel2 = await startMongrel2({
    dir: `${dir}/m2`,
    handlers: [{ route: "/", protocol: "tnetstring" }],
  });
  const [route] = mongrel2.handlers;
  let failed = false;
  console.log(
    `upload bench: ${
      mib(SIZE)
    } MiB per upload through mongrel2 ${mongrel2.url} into \`deno run -A cli.ts\` (deno ${Deno.version.deno}), a fresh m2fetch per run`,
  );
  try {
    for (const run of RUNS) {
      const m2fetch = await startM2fetch([
        "--send-spec",
        route.sendSpec,
        "--recv-spec",
        route.recvSpec,
        "--upload-temp-store",
        String(mongrel2.settings["upload.temp_store"]),
        "--upload-invoke",
        run.invoke,
        `${dir}/app.ts`,
      ]);
      try {
        // Warm-up (JIT, buffers). 2,048 BYOB reads of 4 KiB get the read
        // path compiled; after 8 reads of 1 MiB the timed read ran it cold
        // and took 10-20% longer.
        const query = run.path.includes("?") ? "&" : "?";
        await upload(mongrel2.port, `${run.path}${query}buffer=4096`, 8 * MiB);
        await delay(500);
        const idle = readMemory(m2fetch.pid).rss;
        const sampler = sampleRss(m2fetch.pid);
        const { report, sha256, ms } = await upload(
          mongrel2.port,
          run.path,
          SIZE,
        );
        const peak = await sampler.stop();
        const { hwm } = readMemory(m2fetch.pid);
        const above = (peak - idle) / MiB;
        const rssOk = above <= RSS_TARGET_MIB;
        const hashOk = report.bytes === SIZE &&
          (report.sha256 === null || report.sha256 === sha256);
        failed ||= !hashOk;
        const parts = [
          `${run.label} (upload-invoke ${run.invoke}):`,
          `  m2fetch RSS ${above.toFixed(1)} MiB above idle (idle ${
            mib(idle)
          }, peak ${mib(peak)}, VmHWM ${mib(hwm)} incl. start-up) → ${
            rssOk ? "OK" : "MISSED"
          } (target ≤ ${RSS_TARGET_MIB})`,
        ];
        if (run.invoke === "start") {
          failed ||= !rssOk;
          parts.push(
            `  end to end ${
              rate(SIZE, ms)
            }, body read in ${report.chunks} chunks, sha256 ${
              hashOk ? "matches" : "MISMATCH"
            }`,
          );
        } else if (report.catMs.length > 0) {
          const cat = Math.min(...report.catMs);
          const ratio = cat / report.totalMs;
          const ingest = ms - report.totalMs -
            report.catMs.reduce((a, b) => a + b, 0);
          parts.push(
            `  body read ${
              rate(SIZE, report.totalMs)
            } (${report.chunks} chunks) vs cat > /dev/null ${
              rate(SIZE, cat)
            } (best of ${report.catMs.length}) → ratio ${ratio.toFixed(2)} → ${
              ratio >= RATIO_TARGET ? "OK" : "MISSED"
            } (target ≥ ${RATIO_TARGET})`,
            `  mongrel2 alone took the upload at ${
              rate(SIZE, ingest)
            } (client to complete temp file)`,
          );
          if (run.path.includes("byob")) failed ||= ratio < RATIO_TARGET;
        } else {
          parts.push(
            `  read + sha256 ${rate(SIZE, report.totalMs)} (awaiting reads ${
              report.readMs.toFixed(0)
            } ms, hashing ${report.hashMs.toFixed(0)} ms), sha256 ${
              hashOk ? "matches" : "MISMATCH"
            }`,
          );
        }
        console.log(parts.join("\n"));
      } finally {
        await m2fetch.stop();
      }
    }
  } finally {
    await mongrel2.stop();
    await Deno.remove(dir, { recursive: true });
  }
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
