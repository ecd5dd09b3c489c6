import assert from "node:assert/strict";
import { ZmqContext, ZmqError, zmqVersion } from "../libzmq.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function withContext(
  run: (context: ZmqContext, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "m2zmq-" });
  const context = new ZmqContext();
  try {
    await run(context, dir);
  } finally {
    await context.terminate();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("libzmq: the system library loads and is 4.x", () => {
  assert.match(zmqVersion(), /^4\.\d+\.\d+$/);
});

Deno.test("libzmq: PUSH to PULL over ipc, in order, bytes intact", async () => {
  await withContext(async (context, dir) => {
    const pull = context.socket("pull", { linger: 0 });
    pull.bind(`ipc://${dir}/p`);
    const push = context.socket("push", { linger: 1000 });
    push.connect(`ipc://${dir}/p`);
    const binary = new Uint8Array(300_000).map((_, i) => i % 251);
    assert.equal(push.send(encoder.encode("first")), true);
    assert.equal(push.send(new Uint8Array(0)), true);
    assert.equal(push.send(binary), true);
    assert.equal(decoder.decode((await pull.receiveWithin(2000))!), "first");
    assert.deepEqual(await pull.receiveWithin(2000), new Uint8Array(0));
    assert.deepEqual(await pull.receiveWithin(2000), binary);
    assert.equal(pull.receive(), null);
    push.close();
    pull.close();
  });
});

Deno.test("libzmq: waitReadable times out with false, and the socket refuses calls while it waits", async () => {
  await withContext(async (context, dir) => {
    const pull = context.socket("pull", { linger: 0 });
    pull.bind(`ipc://${dir}/w`);
    const waiting = pull.waitReadable(50);
    assert.throws(
      () => pull.receive(),
      /Cannot receive: the pull socket is being polled on another thread/,
    );
    assert.equal(await waiting, false);
    assert.equal(pull.receive(), null);
    pull.close();
  });
});

Deno.test("libzmq: close during a wait is deferred until the wait returns", async () => {
  await withContext(async (context, dir) => {
    const pull = context.socket("pull", { linger: 0 });
    pull.bind(`ipc://${dir}/c`);
    const waiting = pull.waitReadable(100);
    pull.close();
    assert.equal(pull.isClosed, true);
    assert.equal(await waiting, false);
    await pull.closed();
    assert.throws(() => pull.receive(), /the pull socket is closed/);
  });
});

Deno.test("libzmq: an invalid endpoint is a ZmqError that says what failed", async () => {
  await withContext((context) => {
    const push = context.socket("push", { linger: 0 });
    assert.throws(
      () => push.connect("nonsense://x"),
      (error: unknown) =>
        error instanceof ZmqError &&
        /^Cannot connect a push socket to nonsense:\/\/x: .+ \(errno \d+\)$/
          .test(error.message),
    );
    push.close();
    return Promise.resolve();
  });
});

Deno.test("libzmq: an immediate XPUB reports a SUB's subscription and, when it leaves, its unsubscription", async () => {
  await withContext(async (context, dir) => {
    const sub = context.socket("sub", { linger: 0 });
    sub.bind(`ipc://${dir}/s`);
    sub.subscribe("abc");
    const xpub = context.socket("xpub", {
      linger: 0,
      sendHighWaterMark: 0,
      immediate: true,
    });
    xpub.connect(`ipc://${dir}/s`);
    const next = async () => {
      for (let i = 0; i < 200; i++) {
        // The SUB passes its subscription on only while it is read.
        if (!sub.isClosed) sub.receive();
        const message = xpub.receive();
        if (message !== null) return message;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error("no (un)subscription within 2 s");
    };
    assert.deepEqual(await next(), new Uint8Array([1, 0x61, 0x62, 0x63]));
    xpub.send(encoder.encode("abc 1"));
    xpub.send(encoder.encode("xyz 1"));
    assert.equal(decoder.decode((await sub.receiveWithin(2000))!), "abc 1");
    assert.equal(await sub.receiveWithin(100), null);
    sub.close();
    assert.deepEqual(await next(), new Uint8Array([0, 0x61, 0x62, 0x63]));
    xpub.close();
  });
});

Deno.test("libzmq: a closed context refuses new sockets", async () => {
  const context = new ZmqContext();
  await context.terminate();
  assert.throws(
    () => context.socket("pull"),
    /Cannot create a socket: the ZeroMQ context is closed/,
  );
});
