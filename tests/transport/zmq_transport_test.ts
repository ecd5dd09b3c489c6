import assert from "node:assert/strict";
import { ZmqContext } from "../libzmq.ts";
import { ZmqTransport } from "../../runtime/transport/zmq.ts";
import { Inbox } from "../zmq_peer.ts";
import { greeting, readyCommand } from "../../runtime/transport/zmtp.ts";
import { waitFor } from "../subprocess.ts";
import { setTimeout as sleep } from "node:timers/promises";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("ZmqTransport.stopReceiving() yields what mongrel2 already pushed before it closes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
  // Stand-in for mongrel2's request socket: a bound PUSH.
  const context = new ZmqContext();
  const push = context.socket("push", { linger: 1000 });
  push.bind(`ipc://${dir}/send`);
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  try {
    const messages = transport.messages()[Symbol.asyncIterator]();
    // A PUSH refuses a message until the PULL has connected.
    while (!push.send(encoder.encode("first"))) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const first = await messages.next();
    assert.equal(decoder.decode(first.value), "first");
    for (const text of ["a", "b", "c"]) {
      assert.ok(push.send(encoder.encode(text)));
    }
    // Let them reach the PULL socket's queue, unread.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const stopped = transport.stopReceiving();
    const rest: string[] = [];
    while (true) {
      const next = await messages.next();
      if (next.done) break;
      rest.push(decoder.decode(next.value));
    }
    await stopped;
    assert.deepEqual(rest, ["a", "b", "c"]);
  } finally {
    await transport.close();
    push.close();
    await context.terminate();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ZmqTransport.stopReceiving() returns when nobody reads messages()", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  await transport.stopReceiving();
  await transport.close();
  await Deno.remove(dir, { recursive: true });
});

/** The warnings of a transport whose recv_spec in `dir` nobody subscribes through. */
async function warningsWhileUnsubscribed(dir: string): Promise<string[]> {
  const warnings: string[] = [];
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
    stillWaitingMs: 100,
    onWarning: (message) => warnings.push(message),
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  await transport.stopReceiving();
  await transport.close();
  return warnings;
}

Deno.test("ZmqTransport warns once when a recv_spec stays unsubscribed, and says the socket file is missing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
  assert.deepEqual(await warningsWhileUnsubscribed(dir), [
    `mongrel2 has not subscribed at ipc://${dir}/recv after 0.1 s, so no reply can reach it: check that mongrel2 is running and that its Handler's recv_spec (not its send_spec: --send-spec and --recv-spec are easily swapped) is this endpoint (there is no socket file at ${dir}/recv: mongrel2 has not bound it)`,
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name:
    "ZmqTransport's warning about a socket file nobody subscribes through needs no --allow-sys",
  permissions: {
    read: true,
    write: true,
    ffi: true,
    env: true,
    net: true,
    sys: false,
  },
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
    // A socket file that is there, with nothing speaking ZeroMQ behind it
    // (a crashed mongrel2's, or one m2fetch may not write to).
    const listener = Deno.listen({ transport: "unix", path: `${dir}/recv` });
    const warnings = await warningsWhileUnsubscribed(dir);
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0],
      /\(the socket .*\/recv is owned by uid \d+, gid \d+, mode \d+: if m2fetch's user may not write to it, run mongrel2 and m2fetch as the same user/,
    );
    listener.close();
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("ZmqTransport holds replies until mongrel2 subscribes, dropping the oldest beyond maxHeldReplies", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
  const statuses: string[] = [];
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
    maxHeldReplies: 2,
    onStatus: (line) => statuses.push(line),
  });
  const receiving = (async () => {
    for await (const _ of transport.messages()) {
      // Nothing is sent to it; the loop notices the subscription.
    }
  })();
  try {
    for (const reply of ["r1", "r2", "r3", "r4", "r5"]) {
      transport.send(encoder.encode(reply));
    }
    // Sends go out on the next turn of the event loop: the stand-in is
    // bound only once they are held, so no subscription can come first.
    assert.ok(await waitFor(() => transport.queuedReplies === 2, 2000));
    // Stand-in for mongrel2's reply socket, bound once the replies wait.
    await using mongrel2 = Inbox.bind("sub", `ipc://${dir}/recv`);
    assert.equal(decoder.decode(await mongrel2.next()), "r4");
    assert.equal(decoder.decode(await mongrel2.next()), "r5");
    transport.send(encoder.encode("r6"));
    assert.equal(decoder.decode(await mongrel2.next()), "r6");
    assert.ok(
      statuses.some((line) =>
        line.includes("(dropped the 3 oldest held while it was away)")
      ),
      statuses.join("\n"),
    );
  } finally {
    await transport.stopReceiving();
    await receiving;
    await transport.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A socket standing in for mongrel2's, counting the connections it took. */
interface StandIn extends AsyncDisposable {
  readonly connections: number;
}

/**
 * Listens at `path` and runs `serve` for each connection m2fetch opens.
 * Disposing stops listening, aborts `closing`, closes every connection and
 * waits for each `serve` to end (its errors, from m2fetch hanging up or
 * from the close, are expected).
 */
function standIn(
  path: string,
  serve: (conn: Deno.Conn, closing: AbortSignal) => Promise<void>,
): StandIn {
  const listener = Deno.listen({ transport: "unix", path });
  const closing = new AbortController();
  const held: Deno.Conn[] = [];
  const serving: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      held.push(conn);
      serving.push(serve(conn, closing.signal).catch(() => {}));
    }
  })();
  return {
    get connections() {
      return held.length;
    },
    async [Symbol.asyncDispose]() {
      closing.abort();
      listener.close();
      await accepting;
      for (const conn of held) {
        try {
          conn.close();
        } catch { /* closed by serve */ }
      }
      await Promise.all(serving);
    },
  };
}

Deno.test("ZmqTransport says what is wrong with a socket that is not mongrel2's handler endpoint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
  const cases: [string, (path: string) => Promise<AsyncDisposable>, RegExp][] =
    [
      [
        "the specs swapped (a SUB at the send spec)",
        (path) => Promise.resolve(Inbox.bind("sub", `ipc://${path}`)),
        /^Cannot take requests from ipc:\/\/\S+\/send: The socket at ipc:\/\/\S+\/send is a SUB socket, where mongrel2's send_spec is a PUSH: --send-spec and --recv-spec look swapped$/,
      ],
      [
        "a socket that does not speak ZeroMQ",
        (path) =>
          Promise.resolve(standIn(path, async (conn) => {
            await conn.write(encoder.encode("HTTP/1.1 400 Bad Request\r\n"));
            conn.close();
          })),
        /^Cannot take requests from ipc:\/\/\S+\/send: The peer is not a ZeroMQ socket \(its first byte is not a ZMTP signature\)$/,
      ],
      [
        "a socket that never answers",
        (path) => Promise.resolve(standIn(path, () => Promise.resolve())),
        /^Cannot take requests from ipc:\/\/\S+\/send: The peer did not complete the ZMTP handshake within 5 s$/,
      ],
    ];
  try {
    for (const [what, serve, expected] of cases) {
      await Deno.remove(`${dir}/send`).catch(() => {});
      await using _peer = await serve(`${dir}/send`);
      const errors: string[] = [];
      const transport = new ZmqTransport({
        sendSpec: `ipc://${dir}/send`,
        recvSpec: `ipc://${dir}/recv`,
        onError: (error) => errors.push(error.message),
      });
      assert.ok(await waitFor(() => errors.length > 0, 8000), what);
      // Reported once, not at every reconnection.
      await new Promise((resolve) => setTimeout(resolve, 1200));
      await transport.close();
      assert.equal(errors.length, 1, `${what}: ${errors.join("\n")}`);
      assert.match(errors[0], expected, `${what}: ${errors[0]}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A stand-in for mongrel2's socket at `path` that answers m2fetch's
 * greeting only after `delayMs` (a mongrel2 busy starting).
 */
function slowToGreet(
  path: string,
  type: "PUSH" | "SUB",
  delayMs: number,
): StandIn {
  return standIn(path, async (conn, closing) => {
    await sleep(delayMs, undefined, { signal: closing });
    await conn.write(greeting());
    await conn.write(readyCommand(type));
  });
}

for (const [spec, type] of [["recv", "SUB"], ["send", "PUSH"]] as const) {
  Deno.test(`ZmqTransport.close() cuts short a handshake under way with the ${spec} spec`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
    try {
      await using _mongrel2 = slowToGreet(`${dir}/${spec}`, type, 500);
      const errors: string[] = [];
      const transport = new ZmqTransport({
        sendSpec: `ipc://${dir}/send`,
        recvSpec: `ipc://${dir}/recv`,
        onError: (error) => errors.push(error.message),
      });
      // Connected, and waiting for the stand-in's greeting.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        transport.close().then(() => "closed"),
        new Promise((resolve) => timer = setTimeout(resolve, 2000, "hung")),
      ]);
      clearTimeout(timer);
      assert.equal(outcome, "closed");
      // Not held until the handshake ends (or times out after 5 s).
      assert.ok(performance.now() - started < 300);
      assert.deepEqual(errors, []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("ZmqTransport sends replies while its consumer holds a message and takes no more", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
  const context = new ZmqContext();
  const push = context.socket("push", { linger: 0 });
  push.bind(`ipc://${dir}/send`);
  await using mongrel2 = Inbox.bind("sub", `ipc://${dir}/recv`);
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  const messages = transport.messages()[Symbol.asyncIterator]();
  try {
    while (!push.send(encoder.encode("request"))) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(decoder.decode((await messages.next()).value), "request");
    assert.ok(await waitFor(() => transport.ready, 2000));
    // The server, paused (a worker far behind, say), takes nothing more
    // while replies from elsewhere (a worker's response) still go out.
    transport.send(encoder.encode("reply while paused"));
    assert.equal(
      decoder.decode(await mongrel2.next(1000)),
      "reply while paused",
    );
  } finally {
    // Ends the loop held at its yield, which close() waits for.
    await messages.return?.();
    await transport.close();
    push.close();
    await context.terminate();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ZmqTransport.close() aborts a TCP connect that gets no answer", async () => {
  // A listener that accepts nothing: once its queue is full the kernel
  // drops further SYNs, and a connect waits for minutes.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  const fillers: Deno.Conn[] = [];
  try {
    while (true) {
      const probe = new AbortController();
      const timer = setTimeout(() => probe.abort(), 200);
      try {
        fillers.push(
          await Deno.connect({
            hostname: "127.0.0.1",
            port,
            signal: probe.signal,
          }),
        );
      } catch {
        break; // The queue is full.
      } finally {
        clearTimeout(timer);
      }
    }
    const errors: string[] = [];
    const transport = new ZmqTransport({
      sendSpec: `tcp://127.0.0.1:${port}`,
      recvSpec: `tcp://127.0.0.1:${port}`,
      onError: (error) => errors.push(error.message),
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    await transport.close();
    assert.ok(
      performance.now() - started < 1000,
      `close() took ${performance.now() - started} ms`,
    );
    assert.deepEqual(errors, []);
  } finally {
    for (const filler of fillers) filler.close();
    listener.close();
  }
});

/**
 * A stand-in for mongrel2's socket at `path` that completes the handshake as
 * `type` and then breaks the protocol: it announces a 1 TiB frame.
 */
function breaksProtocol(path: string, type: "PUSH" | "SUB"): StandIn {
  const oversized = new Uint8Array(9);
  oversized[0] = 0x02; // a long frame
  new DataView(oversized.buffer).setBigUint64(1, 2n ** 40n);
  return standIn(path, async (conn) => {
    await conn.write(greeting());
    await conn.write(readyCommand(type));
    await conn.write(oversized);
  });
}

for (
  const [spec, type, side] of [
    ["send", "PUSH", "take requests from"],
    ["recv", "SUB", "send replies to"],
  ] as const
) {
  Deno.test(`ZmqTransport reports a ${spec} spec peer that breaks the protocol once, and retries it slowly`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
    try {
      await using peer = breaksProtocol(`${dir}/${spec}`, type);
      const errors: string[] = [];
      const transport = new ZmqTransport({
        sendSpec: `ipc://${dir}/send`,
        recvSpec: `ipc://${dir}/recv`,
        onError: (error) => errors.push(error.message),
      });
      assert.ok(await waitFor(() => errors.length > 0, 5000));
      // Long enough for a second connection and its failure.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await transport.close();
      assert.equal(errors.length, 1, errors.join("\n"));
      assert.equal(
        errors[0],
        `Cannot ${side} ipc://${dir}/${spec}: The peer sent a frame of 1099511627776 bytes, more than the 1073741824 m2fetch takes`,
      );
      // Reconnected after a second, not at every 100 ms.
      assert.ok(
        peer.connections >= 2 && peer.connections <= 3,
        `${peer.connections} connections`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("ZmqTransport drops a mongrel2 that takes no replies, freeing what waits for it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "m2zt-" });
  const path = `${dir}/recv`;
  // A mongrel2 that subscribes to everything and then reads nothing, as
  // one stopped with SIGSTOP does.
  await using mongrel2 = standIn(path, async (conn) => {
    await conn.write(greeting());
    await conn.write(readyCommand("SUB"));
    await conn.write(Uint8Array.of(0, 1, 1)); // subscribe to ""
  });
  const errors: string[] = [];
  const warnings: string[] = [];
  const statuses: string[] = [];
  const left: (readonly string[])[] = [];
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${path}`,
    onError: (error) => errors.push(error.message),
    onWarning: (message) => warnings.push(message),
    onStatus: (message) => statuses.push(message),
    stalledReplyMs: 300,
  });
  transport.onPeerLeft((idents) => left.push(idents));
  try {
    assert.ok(await waitFor(() => mongrel2.connections > 0, 5000));
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Far more than the socket buffers take: 32 MiB in one write, which
    // stalls, and 32 MiB that wait for it.
    const reply = new Uint8Array(1 << 20);
    for (let sent = 0; sent < 32; sent++) transport.send(reply);
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (let sent = 0; sent < 32; sent++) transport.send(reply);
    assert.ok(await waitFor(() => left.length > 0, 5000), errors.join("\n"));
    assert.deepEqual(left, [[""]]);
    assert.deepEqual(errors, []);
    assert.equal(warnings.length, 1, warnings.join("\n"));
    const stalled = warnings[0].match(
      /^mongrel2 at ipc:\/\/\S+\/recv took none of the replies for 0\.3 s \((\d+\.\d) MiB wait\): taking it for hung and dropping the connection and its clients' requests$/,
    );
    assert.ok(stalled, warnings[0]);
    assert.ok(Number(stalled[1]) > 60, warnings[0]);
    assert.ok(
      await waitFor(
        () => statuses.some((line) => /went away/.test(line)),
        1000,
      ),
    );
    assert.match(
      statuses.find((line) => /went away/.test(line))!,
      /\(dropped 32 for its gone clients\)$/,
    );
    // It connects again, and a mongrel2 that subscribes gets new replies.
    assert.ok(await waitFor(() => mongrel2.connections === 2, 5000));
  } finally {
    await transport.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "ZmqTransport takes an IPv6 tcp endpoint under --allow-net for it alone, and names the flag one needs",
  permissions: { net: ["[::1]:39997"] },
  fn: async () => {
    // Nothing listens there: connecting is refused, silently, until close.
    await new ZmqTransport({
      sendSpec: "tcp://[::1]:39997",
      recvSpec: "tcp://[::1]:39997",
    }).close();
    assert.throws(
      () =>
        new ZmqTransport({
          sendSpec: "tcp://[::1]:39997",
          recvSpec: "tcp://[::1]:39996",
        }),
      (error: unknown) => {
        assert.ok(error instanceof Deno.errors.NotCapable, String(error));
        assert.equal(
          error.message,
          "Cannot connect to tcp://[::1]:39996: m2fetch needs --allow-net=[::1]:39996",
        );
        return true;
      },
    );
  },
});
