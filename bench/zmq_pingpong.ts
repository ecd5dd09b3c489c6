/**
 * What one ZeroMQ message costs over m2fetch's libzmq binding
 * (runtime/transport/libzmq.ts): a PUSH and a PULL socket over ipc in one
 * process, first ping-pong (one message in flight, so every receive finds
 * the queue empty and waits on a blocking thread), then pipelined (the
 * queue is rarely empty and one wait covers many messages).
 *
 * Run: `deno run -A bench/zmq_pingpong.ts [MESSAGES]` (default 100 000).
 *
 * Before the binding (zeromq.js 6.8.0 under Deno 2.9.6, same machine):
 * ping-pong 12 998 messages/s at 70.1 µs CPU per message, pipelined
 * 196 124 messages/s at 9.3 µs.
 *
 * @module
 */

import process from "node:process";
import { ZmqContext } from "../tests/libzmq.ts";

const messages = Number(Deno.args[0] ?? 100_000);
const context = new ZmqContext();
const push = context.socket("push", { sendHighWaterMark: 0, linger: 0 });
const pull = context.socket("pull", { receiveHighWaterMark: 0, linger: 0 });
const dir = await Deno.makeTempDir({ prefix: "m2fetch-pingpong-" });
const endpoint = `ipc://${dir}/pingpong`;
pull.bind(endpoint);
push.connect(endpoint);
const message = new Uint8Array(200).fill(0x61);

async function receive(): Promise<Uint8Array> {
  const message = await pull.receiveWithin(5000);
  if (message === null) throw new Error("No message within 5 s");
  return message;
}

function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

function report(name: string, count: number, started: number, cpu: number) {
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `libzmq binding, ${name}: ${(count / seconds).toFixed(0)} messages/s, ${
      ((cpuMicros() - cpu) / count).toFixed(1)
    } µs CPU per message`,
  );
}

push.send(message);
await receive();

const pingPongs = Math.max(1, Math.floor(messages / 10));
let cpu = cpuMicros();
let started = performance.now();
for (let i = 0; i < pingPongs; i++) {
  push.send(message);
  await receive();
}
report("ping-pong", pingPongs, started, cpu);

cpu = cpuMicros();
started = performance.now();
const received = (async () => {
  for (let i = 0; i < messages; i++) await receive();
})();
for (let i = 0; i < messages; i++) {
  push.send(message);
  // Let the receiver run now and then, as a server's event loop would.
  if (i % 256 === 255) await new Promise((resolve) => setTimeout(resolve, 0));
}
await received;
report("pipelined", messages, started, cpu);

push.close();
pull.close();
await context.terminate();
await Deno.remove(dir, { recursive: true });
