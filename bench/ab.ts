/**
 * Two versions of m2fetch side by side: each checkout serves
 * `examples/hello.ts` through its own `dev` (its own mongrel2), and wrk
 * loads them in alternating rounds, so that both see the same machine.
 * Prints requests/s, p50/p99 and the CPU each m2fetch process spent per
 * request, per round; with `--stream-mib`, each serves
 * `bench/stream_app.ts` instead and curl downloads that much per round
 * (MiB/s and CPU per MiB). This is how a change to the hot path is judged on a
 * shared machine, where two full `deno task bench` runs differ more than
 * most changes do.
 *
 * ```sh
 * git worktree add /tmp/before HEAD~1 && ln -s "$PWD/node_modules" /tmp/before/
 * deno run -A bench/ab.ts /tmp/before                      # wrk -c64, 3 rounds of 5 s
 * deno run -A bench/ab.ts /tmp/before --connections 1 --rounds 4
 * deno run -A bench/ab.ts /tmp/before --stream-mib 256
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { findFreePort } from "../runtime/mongrel2/process.ts";
import {
  curlDownload,
  readCpuSeconds,
  REPO_ROOT,
  waitForOk,
} from "./processes.ts";
import { runWrk } from "./wrk.ts";

const USAGE = `deno run -A bench/ab.ts OTHER_CHECKOUT [options]

Options:
  --connections N   wrk connections (default 64)
  --seconds S       seconds per round (default 5)
  --rounds N        rounds per checkout (default 3)
  --stream-mib N    stream N MiB to curl per round instead of wrk's hello
`;

interface Contender {
  name: string;
  url: string;
  child: Deno.ChildProcess;
  /** Its dev state dir (mongrel2's config and sockets). */
  state: string;
}

/** The CPU seconds of a process's children (dev's mongrel2). */
function childrenCpuSeconds(pid: number): number {
  let seconds = 0;
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    const children = Deno.readTextFileSync(
      `/proc/${pid}/task/${task.name}/children`,
    ).trim();
    for (const child of children === "" ? [] : children.split(" ")) {
      seconds += readCpuSeconds(Number(child));
    }
  }
  return seconds;
}

async function startDev(
  name: string,
  root: string,
  app: string,
): Promise<Contender> {
  const port = await findFreePort();
  const state = await Deno.makeTempDir({ prefix: "m2ab-" });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "cli.ts",
        "dev",
        "--quiet",
        "--port",
        String(port),
        "--state-dir",
        state,
        app,
      ],
      cwd: root,
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    await Deno.remove(state, { recursive: true });
    throw error;
  }
  const url = `http://127.0.0.1:${port}/`;
  const contender = { name, url, child, state };
  try {
    // Both apps answer a request for one byte of the stream.
    await waitForOk(app.endsWith("stream_app.ts") ? `${url}stream/1` : url);
  } catch (error) {
    await stopDev(contender);
    throw error;
  }
  return contender;
}

/** Stops a dev (and with it its mongrel2) and removes its state dir. */
async function stopDev({ child, state }: Contender): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* it has exited already (it could not start) */ }
  await child.status;
  await Deno.remove(state, { recursive: true });
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      connections: { type: "string", default: "64" },
      seconds: { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
      "stream-mib": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help || positionals.length !== 1) {
    console.log(USAGE);
    Deno.exit(values.help ? 0 : 2);
  }
  const connections = Number(values.connections);
  const seconds = Number(values.seconds);
  const streamMib = values["stream-mib"] === undefined
    ? undefined
    : Number(values["stream-mib"]);
  const app = streamMib === undefined
    ? "examples/hello.ts"
    : "bench/stream_app.ts";
  const contenders: Contender[] = [];
  try {
    contenders.push(
      await startDev(`other (${positionals[0]})`, positionals[0], app),
    );
    contenders.push(await startDev("this checkout", REPO_ROOT, app));
    for (let round = 0; round < Number(values.rounds); round++) {
      // Each goes first in every other round.
      const order = round % 2 === 0 ? contenders : [...contenders].reverse();
      for (const { name, url, child } of order) {
        const before = readCpuSeconds(child.pid);
        const mongrel2Before = childrenCpuSeconds(child.pid);
        if (streamMib !== undefined) {
          const download = await curlDownload(
            `${url}stream/${streamMib * 2 ** 20}`,
          );
          const cpu = readCpuSeconds(child.pid) - before;
          console.log(
            `round ${round + 1} ${name}: ${
              (download.bytes / 2 ** 20 / download.seconds).toFixed(0)
            } MiB/s, m2fetch ${
              (cpu / streamMib * 1024).toFixed(2)
            } s CPU a GiB`,
          );
          continue;
        }
        const result = await runWrk({ url, connections, seconds });
        const cpu = readCpuSeconds(child.pid) - before;
        const mongrel2Cpu = childrenCpuSeconds(child.pid) - mongrel2Before;
        console.log(
          `round ${round + 1} ${name}: ${
            result.requestsPerSecond.toFixed(0)
          } requests/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, m2fetch ${
            (1e6 * cpu / result.requests).toFixed(1)
          } µs CPU a request, mongrel2 ${
            (1e6 * mongrel2Cpu / result.requests).toFixed(1)
          } µs`,
        );
      }
    }
  } finally {
    for (const contender of contenders) await stopDev(contender);
  }
}
