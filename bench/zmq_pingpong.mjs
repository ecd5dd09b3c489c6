/**
 * What one zeromq.js message costs under this runtime: a PUSH and a PULL
 * socket over ipc in one process, first ping-pong (one message in flight,
 * so every receive finds the queue empty and waits on the socket's file
 * descriptor), then pipelined (the queue is never empty). Plain JavaScript
 * so the same file runs under Deno and Node for a side-by-side comparison:
 *
 * ```sh
 * deno run -A bench/zmq_pingpong.mjs [MESSAGES]
 * node bench/zmq_pingpong.mjs [MESSAGES]
 * ```
 *
 * It imports npm:zeromq directly (runtime code reaches it only through
 * runtime/transport/zmq.ts): the point is to measure the library, not
 * m2fetch.
 *
 * @module
 */

import { rmSync } from "node:fs";
import process from "node:process";
import * as zmq from "zeromq";

const messages = Number(process.argv[2] ?? 100_000);
const runtime = typeof Deno === "undefined"
  ? `node ${process.version}`
  : `deno ${Deno.version.deno}`;
const push = new zmq.Push({ sendHighWaterMark: 0 });
const pull = new zmq.Pull({ receiveHighWaterMark: 0 });
const socketPath = `/tmp/m2fetch-zmq-pingpong-${process.pid}`;
const endpoint = `ipc://${socketPath}`;
await pull.bind(endpoint);
push.connect(endpoint);
const message = new Uint8Array(200).fill(0x61);
await push.send(message);
await pull.receive();

function report(name, count, started, cpu) {
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  console.log(
    `${runtime} ${name}: ${(count / seconds).toFixed(0)} messages/s, ${
      ((used.user + used.system) / count).toFixed(1)
    } µs CPU per message`,
  );
}

const pingPongs = Math.max(1, Math.floor(messages / 10));
let cpu = process.cpuUsage();
let started = performance.now();
for (let i = 0; i < pingPongs; i++) {
  await push.send(message);
  await pull.receive();
}
report("ping-pong", pingPongs, started, cpu);

cpu = process.cpuUsage();
started = performance.now();
const received = (async () => {
  for (let i = 0; i < messages; i++) await pull.receive();
})();
for (let i = 0; i < messages; i++) await push.send(message);
await received;
report("pipelined", messages, started, cpu);

push.close();
pull.close();
rmSync(socketPath, { force: true });
