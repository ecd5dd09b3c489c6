import assert from "node:assert/strict";
import { ZmqContext } from "../libzmq.ts";
import { checkEndpoint, ZmqTransport } from "../../runtime/transport/zmq.ts";
import { Inbox } from "../zmq_peer.ts";
import {
  commandFrame,
  frameHeaderLength,
  greeting,
  parseCommand,
  readyCommand,
  writeFrameHeader,
  ZmtpDecoder,
  type ZmtpFrame,
} from "../../runtime/transport/zmtp.ts";
import { waitFor, within } from "../subprocess.ts";
import { tempDir } from "../site.ts";
import { setTimeout as sleep } from "node:timers/promises";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("ZmqTransport.stopReceiving() yields what mongrel2 already pushed before it closes", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  // Stand-in for mongrel2's request socket: a bound PUSH.
  const context = new ZmqContext();
  const push = context.socket("push", { linger: 1000 });
  push.bind(`ipc://${dir}/send`);
  const errors: string[] = [];
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
    onError: (error) => errors.push(error.message),
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
    // Closing the links was no problem worth reporting.
    assert.deepEqual(errors, []);
  } finally {
    await transport.close();
    push.close();
    await context.terminate();
  }
});

Deno.test("ZmqTransport.stopReceiving() returns when nobody reads messages()", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  await transport.stopReceiving();
  await transport.close();
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
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  assert.deepEqual(await warningsWhileUnsubscribed(dir), [
    `mongrel2 has not subscribed at ipc://${dir}/recv after 0.1 s, so no reply can reach it: check that mongrel2 is running and that its Handler's recv_spec (not its send_spec: --send-spec and --recv-spec are easily swapped) is this endpoint (there is no socket file at ${dir}/recv: mongrel2 has not bound it)`,
  ]);
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
    await using tmp = await tempDir("m2zt-");
    const dir = tmp.path;
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
  },
});

Deno.test("ZmqTransport holds replies until mongrel2 subscribes, dropping the oldest beyond maxHeldReplies", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
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
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
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
        "a socket that sends a message before its handshake",
        (path) =>
          Promise.resolve(standIn(path, async (conn) => {
            await conn.write(greeting());
            await conn.write(frameOf(encoder.encode("hello")));
          })),
        /^Cannot take requests from ipc:\/\/\S+\/send: The peer sent a message before its handshake$/,
      ],
      [
        "a socket that refuses the handshake",
        (path) =>
          Promise.resolve(standIn(path, async (conn) => {
            await conn.write(greeting());
            await conn.write(
              commandFrame(
                "ERROR",
                Uint8Array.of(4, ...encoder.encode("nope")),
              ),
            );
          })),
        /^Cannot take requests from ipc:\/\/\S+\/send: The peer refused the handshake: nope$/,
      ],
      [
        "a socket that never answers",
        (path) => Promise.resolve(standIn(path, () => Promise.resolve())),
        /^Cannot take requests from ipc:\/\/\S+\/send: The peer did not complete the ZMTP handshake within 5 s$/,
      ],
    ];
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
});

Deno.test("ZmqTransport hangs up on a peer whose handshake fails", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  const hungUp = Promise.withResolvers<void>();
  await using _peer = standIn(`${dir}/send`, async (conn) => {
    await conn.write(encoder.encode("HTTP/1.1 400 Bad Request\r\n"));
    // What m2fetch sends (its greeting), until it hangs up.
    const buffer = new Uint8Array(1024);
    while (await conn.read(buffer) !== null);
    hungUp.resolve();
  });
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  const outcome = await within(
    hungUp.promise.then(() => "hung up"),
    2000,
    "held",
  );
  await transport.close();
  assert.equal(outcome, "hung up");
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
    await using tmp = await tempDir("m2zt-");
    const dir = tmp.path;
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
    const outcome = await within(
      transport.close().then(() => "closed"),
      2000,
      "hung",
    );
    assert.equal(outcome, "closed");
    // Not held until the handshake ends (or times out after 5 s).
    assert.ok(performance.now() - started < 300);
    assert.deepEqual(errors, []);
  });
}

Deno.test("ZmqTransport sends replies while its consumer holds a message and takes no more", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
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

/** `body` as a message frame. */
function frameOf(body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(frameHeaderLength(body.length) + body.length);
  frame.set(body, writeFrameHeader(frame, 0, body.length));
  return frame;
}

/**
 * A stand-in for mongrel2's socket at `path` that completes the handshake as
 * `type` and then breaks the protocol: it announces a 1 TiB frame (after
 * sending `works` and waiting a moment, when given).
 */
function breaksProtocol(
  path: string,
  type: "PUSH" | "SUB",
  works?: Uint8Array,
): StandIn {
  const oversized = new Uint8Array(9);
  oversized[0] = 0x02; // a long frame
  new DataView(oversized.buffer).setBigUint64(1, 2n ** 40n);
  return standIn(path, async (conn) => {
    await conn.write(greeting());
    await conn.write(readyCommand(type));
    if (works !== undefined) {
      await conn.write(works);
      await sleep(50);
    }
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
    await using tmp = await tempDir("m2zt-");
    const dir = tmp.path;
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
  });
}

Deno.test("ZmqTransport drops a mongrel2 that takes no replies, freeing what waits for it", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  const path = `${dir}/recv`;
  // A mongrel2 that subscribes to everything and then reads nothing, as
  // one stopped with SIGSTOP does; once connected again, it reads.
  const later: string[] = [];
  await using mongrel2 = standIn(path, async (conn) => {
    const first = mongrel2.connections === 1;
    await conn.write(greeting());
    await conn.write(readyCommand("SUB"));
    await conn.write(Uint8Array.of(0, 1, 1)); // subscribe to ""
    if (first) return;
    const zmtp = new ZmtpDecoder();
    while (true) {
      const count = await conn.read(zmtp.space());
      if (count === null) return;
      zmtp.commit(count);
      let frame: ZmtpFrame | null;
      while ((frame = zmtp.next()) !== null) {
        if (!frame.command) later.push(decoder.decode(frame.body));
      }
    }
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
    const started = performance.now();
    for (let sent = 0; sent < 32; sent++) transport.send(reply);
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (let sent = 0; sent < 32; sent++) transport.send(reply);
    assert.ok(await waitFor(() => left.length > 0, 5000), errors.join("\n"));
    // Not before it took nothing for stalledReplyMs.
    assert.ok(performance.now() - started >= 300);
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
    // It connects again, and a mongrel2 that subscribes gets new replies,
    // and none of those that waited for the one that hung.
    assert.ok(await waitFor(() => mongrel2.connections === 2, 5000));
    assert.ok(await waitFor(() => transport.ready, 2000));
    transport.send(encoder.encode("fresh"));
    assert.ok(await waitFor(() => later.length > 0, 2000));
    await sleep(50);
    assert.deepEqual(later, ["fresh"]);
  } finally {
    await transport.close();
  }
});

Deno.test("ZmqTransport reports nothing for an endpoint nobody listens at yet", async () => {
  // A port nothing listens on: each connect is refused, as while mongrel2
  // is not up.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const errors: string[] = [];
  const transport = new ZmqTransport({
    sendSpec: `tcp://127.0.0.1:${port}`,
    recvSpec: `tcp://127.0.0.1:${port}`,
    onError: (error) => errors.push(error.message),
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  await transport.close();
  assert.deepEqual(errors, []);
});

for (
  const [spec, type, works] of [
    ["send", "PUSH", frameOf(encoder.encode("request"))],
    ["recv", "SUB", Uint8Array.of(0, 1, 1)], // subscribes to ""
  ] as const
) {
  Deno.test(`ZmqTransport reports a ${spec} spec peer's problem again after it worked in between`, async () => {
    await using tmp = await tempDir("m2zt-");
    const dir = tmp.path;
    await using _peer = breaksProtocol(`${dir}/${spec}`, type, works);
    const errors: string[] = [];
    const transport = new ZmqTransport({
      sendSpec: `ipc://${dir}/send`,
      recvSpec: `ipc://${dir}/recv`,
      onError: (error) => errors.push(error.message),
    });
    try {
      assert.ok(
        await waitFor(() => errors.length >= 2, 5000),
        errors.join("\n"),
      );
    } finally {
      await transport.close();
    }
    assert.equal(errors[0], errors[1]);
  });
}

for (const [spec, type] of [["send", "PUSH"], ["recv", "SUB"]] as const) {
  Deno.test(`ZmqTransport connects again at once to a ${spec} spec peer that hung up cleanly`, async () => {
    await using tmp = await tempDir("m2zt-");
    const dir = tmp.path;
    // A mongrel2 that restarts at once, again and again.
    await using peer = standIn(`${dir}/${spec}`, async (conn) => {
      await conn.write(greeting());
      await conn.write(readyCommand(type));
      // Takes m2fetch's READY (closing with it unread would reset the
      // connection: an error).
      const zmtp = new ZmtpDecoder();
      while (zmtp.next() === null) {
        const count = await conn.read(zmtp.space());
        if (count === null) return;
        zmtp.commit(count);
      }
      await sleep(50);
      conn.close();
    });
    const errors: string[] = [];
    const transport = new ZmqTransport({
      sendSpec: `ipc://${dir}/send`,
      recvSpec: `ipc://${dir}/recv`,
      onError: (error) => errors.push(error.message),
    });
    try {
      // 100 ms between connections, not a second as after an error (when
      // the third would come after some 2 s).
      assert.ok(
        await waitFor(() => peer.connections >= 3, 1800),
        `${peer.connections} connections`,
      );
    } finally {
      await transport.close();
    }
    assert.deepEqual(errors, []);
  });
}

for (const [spec, type] of [["send", "PUSH"], ["recv", "SUB"]] as const) {
  Deno.test(`ZmqTransport answers a ${spec} spec peer's PING with a PONG carrying its context`, async () => {
    await using tmp = await tempDir("m2zt-");
    const dir = tmp.path;
    const pong = Promise.withResolvers<Uint8Array>();
    await using _peer = standIn(`${dir}/${spec}`, async (conn) => {
      await conn.write(greeting());
      await conn.write(readyCommand(type));
      // A TTL of 1 s (in tenths), then the context.
      await conn.write(
        commandFrame("PING", Uint8Array.of(0, 10, ...encoder.encode("ctx"))),
      );
      const zmtp = new ZmtpDecoder();
      while (true) {
        const count = await conn.read(zmtp.space());
        if (count === null) return;
        zmtp.commit(count);
        let frame: ZmtpFrame | null;
        while ((frame = zmtp.next()) !== null) {
          if (!frame.command) continue;
          const { name, data } = parseCommand(frame.body);
          if (name === "PONG") pong.resolve(data);
        }
      }
    });
    const transport = new ZmqTransport({
      sendSpec: `ipc://${dir}/send`,
      recvSpec: `ipc://${dir}/recv`,
    });
    try {
      const data = await within(pong.promise, 2000, null);
      assert.deepEqual(data, encoder.encode("ctx"));
    } finally {
      await transport.close();
    }
  });
}

Deno.test("ZmqTransport publishes to a mongrel2 only what its subscriptions match, and reports each it cancels", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  const path = `${dir}/recv`;
  const received: string[] = [];
  const connected = Promise.withResolvers<Deno.Conn>();
  // A mongrel2 that reads what it is sent, and subscribes and cancels as
  // the test says through `connected`'s connection.
  await using _mongrel2 = standIn(path, async (conn) => {
    await conn.write(greeting());
    await conn.write(readyCommand("SUB"));
    connected.resolve(conn);
    const zmtp = new ZmtpDecoder();
    while (true) {
      const count = await conn.read(zmtp.space());
      if (count === null) return;
      zmtp.commit(count);
      let frame: ZmtpFrame | null;
      while ((frame = zmtp.next()) !== null) {
        if (!frame.command) received.push(decoder.decode(frame.body));
      }
    }
  });
  const statuses: string[] = [];
  const left: (readonly string[])[] = [];
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${path}`,
    onStatus: (message) => statuses.push(message),
  });
  transport.onPeerLeft((idents) => left.push(idents));
  try {
    const conn = await connected.promise;
    const change = (subscribe: boolean, topic: string) =>
      conn.write(
        frameOf(encoder.encode(`${subscribe ? "\x01" : "\0"}${topic}`)),
      );
    await change(true, "A");
    await change(true, "B");
    assert.ok(await waitFor(() => transport.ready, 2000));
    for (const reply of ["A 1", "C 2", "B 3"]) {
      transport.send(encoder.encode(reply));
    }
    assert.ok(await waitFor(() => received.length >= 2, 2000));
    await sleep(50);
    assert.deepEqual(received, ["A 1", "B 3"]);
    // A cancel for a topic it never subscribed to is no news.
    await change(false, "Z");
    await change(false, "A");
    assert.ok(await waitFor(() => left.length > 0, 2000));
    await sleep(50);
    assert.deepEqual(left, [["A"]]);
    assert.ok(transport.ready);
    await change(false, "B");
    assert.ok(await waitFor(() => !transport.ready, 2000));
    assert.deepEqual(left, [["A"], ["B"]]);
    assert.match(statuses.at(-1)!, /^mongrel2 at \S+ went away; /);
    // Subscribed again, and closed: a mongrel2 that m2fetch leaves did not
    // leave itself, so its clients are not cut.
    await change(true, "C");
    assert.ok(await waitFor(() => transport.ready, 2000));
    await transport.close();
    assert.deepEqual(left, [["A"], ["B"]]);
  } finally {
    await transport.close();
  }
});

Deno.test("ZmqTransport keeps a mongrel2 that takes replies slowly", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  const path = `${dir}/recv`;
  const reply = new Uint8Array(8 << 20);
  let got = 0;
  // Takes 64 KiB every 20 ms: some 2.6 s for the reply, far longer than
  // stalledReplyMs, but never still for that long (a write goes on once a
  // socket buffer's worth, some 200 KiB, has been taken).
  await using _mongrel2 = standIn(path, async (conn) => {
    await conn.write(greeting());
    await conn.write(readyCommand("SUB"));
    await conn.write(Uint8Array.of(0, 1, 1)); // subscribe to ""
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) return;
      got += count;
      await sleep(20);
    }
  });
  const warnings: string[] = [];
  const statuses: string[] = [];
  const left: (readonly string[])[] = [];
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${path}`,
    onWarning: (message) => warnings.push(message),
    onStatus: (message) => statuses.push(message),
    stalledReplyMs: 1000,
    // Both pass while it is subscribed: neither has anything to say.
    waitingNoticeMs: 100,
    stillWaitingMs: 100,
  });
  transport.onPeerLeft((idents) => left.push(idents));
  try {
    assert.ok(await waitFor(() => transport.ready, 2000));
    const started = got;
    transport.send(reply);
    assert.ok(
      await waitFor(() => got - started >= reply.length, 10_000),
      `${got - started} bytes`,
    );
    assert.deepEqual(warnings, []);
    assert.deepEqual(statuses, []);
    assert.deepEqual(left, []);
  } finally {
    await transport.close();
  }
});

/**
 * A mongrel2 at `path` that pushes `count` requests of 8 KiB in one go: far
 * more than the 1,000 messages m2fetch takes ahead of its consumer, and
 * than the socket buffers hold.
 */
function pushesAtOnce(
  path: string,
  count: number,
): StandIn & { readonly written: boolean } {
  const frame = frameOf(new Uint8Array(8 * 1024).fill(0x61));
  let written = false;
  const peer = standIn(path, async (conn) => {
    await conn.write(greeting());
    await conn.write(readyCommand("PUSH"));
    const all = new Uint8Array(count * frame.length);
    for (let i = 0; i < count; i++) all.set(frame, i * frame.length);
    let at = 0;
    while (at < all.length) at += await conn.write(all.subarray(at));
    written = true;
  });
  return {
    get connections() {
      return peer.connections;
    },
    get written() {
      return written;
    },
    [Symbol.asyncDispose]: () => peer[Symbol.asyncDispose](),
  };
}

Deno.test("ZmqTransport stops reading while 1,000 messages wait, and reads again once they are taken", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  const count = 3000;
  await using mongrel2 = pushesAtOnce(`${dir}/send`, count);
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  const messages = transport.messages()[Symbol.asyncIterator]();
  let taken = 0;
  try {
    await sleep(500);
    assert.equal(mongrel2.written, false);
    while (taken < count) {
      const next = await within(messages.next(), 2000, null);
      assert.ok(next !== null && !next.done, `stuck after ${taken} messages`);
      assert.equal(next.value.length, 8 * 1024);
      taken++;
    }
    assert.ok(await waitFor(() => mongrel2.written, 2000));
  } finally {
    await messages.return?.();
    await transport.close();
  }
});

Deno.test("ZmqTransport.stopReceiving() ends for a mongrel2 that never stops pushing", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  const batch = new Uint8Array(100 * 3);
  for (let i = 0; i < 100; i++) batch.set(frameOf(encoder.encode("m")), i * 3);
  await using _mongrel2 = standIn(`${dir}/send`, async (conn, closing) => {
    await conn.write(greeting());
    await conn.write(readyCommand("PUSH"));
    while (!closing.aborted) await conn.write(batch);
  });
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  let taken = 0;
  const receiving = (async () => {
    for await (const _ of transport.messages()) taken++;
  })();
  try {
    assert.ok(await waitFor(() => taken > 0, 2000));
    const outcome = await within(
      transport.stopReceiving().then(() => "stopped"),
      3000,
      "hung",
    );
    assert.equal(outcome, "stopped");
  } finally {
    await transport.close();
    await receiving;
  }
});

Deno.test("ZmqTransport.stopReceiving() ends while 1,000 messages wait and nobody takes them, taking 1,024 more at most", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  await using mongrel2 = pushesAtOnce(`${dir}/send`, 3000);
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  try {
    assert.ok(await waitFor(() => mongrel2.connections > 0, 2000));
    // The links wait for room.
    await sleep(300);
    const outcome = await within(
      transport.stopReceiving().then(() => "stopped"),
      3000,
      "hung",
    );
    assert.equal(outcome, "stopped");
    // The 1,000 (or a few more) it held, and as many more as a stopping
    // link takes from a mongrel2 that does not stop sending: not all 3,000.
    let taken = 0;
    for await (const _ of transport.messages()) taken++;
    assert.ok(taken > 1024 && taken < 2100, `${taken} messages`);
  } finally {
    await transport.close();
  }
});

Deno.test("checkEndpoint() takes ports 1 to 65535, and ZmqTransport each endpoint once", async () => {
  checkEndpoint("--send-spec", "tcp://127.0.0.1:1");
  checkEndpoint("--send-spec", "tcp://127.0.0.1:65535");
  for (const port of [0, 65536]) {
    assert.throws(
      () => checkEndpoint("--send-spec", `tcp://127.0.0.1:${port}`),
      /: expected a port from 1 to 65535$/,
    );
  }
  // Closed should it start (with the check gone), as it would otherwise
  // connect on into the tests that follow.
  let started: ZmqTransport | undefined;
  try {
    assert.throws(
      () =>
        started = new ZmqTransport({
          sendSpec: "tcp://127.0.0.1:9997",
          recvSpec: ["tcp://127.0.0.1:9996", "tcp://127.0.0.1:9996"],
        }),
      /^TypeError: Cannot use recv spec "tcp:\/\/127\.0\.0\.1:9996" twice: give each mongrel2 endpoint once$/,
    );
  } finally {
    await started?.close();
  }
});

Deno.test("ZmqTransport.stopReceiving() takes what keeps coming, until the link is quiet", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  const go = Promise.withResolvers<void>();
  // Pushes a request every 5 ms once told, then stays connected, silent.
  await using mongrel2 = standIn(`${dir}/send`, async (conn, closing) => {
    await conn.write(greeting());
    await conn.write(readyCommand("PUSH"));
    await go.promise;
    for (let i = 0; i < 20; i++) {
      await conn.write(frameOf(encoder.encode(`m${i}`)));
      await sleep(5);
    }
    await sleep(10_000, undefined, { signal: closing });
  });
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  const taken: string[] = [];
  const receiving = (async () => {
    for await (const message of transport.messages()) {
      taken.push(decoder.decode(message));
    }
  })();
  try {
    assert.ok(await waitFor(() => mongrel2.connections > 0, 2000));
    await sleep(100);
    const stopped = transport.stopReceiving().then(() => "stopped");
    go.resolve();
    const outcome = await within(stopped, 3000, "hung");
    // Not held by a link that stays open: quiet for 20 ms, it is closed.
    assert.equal(outcome, "stopped");
    assert.ok(taken.every((message, i) => message === `m${i}`), `${taken}`);
  } finally {
    await transport.close();
    await receiving;
  }
});

Deno.test("ZmqTransport connects to a tcp endpoint at an IPv6 address", async () => {
  const listener = Deno.listen({ hostname: "::1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  // A TCP stand-in, on the port just freed.
  const tcp = Deno.listen({ hostname: "::1", port });
  const accepted = tcp.accept();
  const errors: string[] = [];
  const transport = new ZmqTransport({
    sendSpec: `tcp://[::1]:${port}`,
    recvSpec: `ipc://${dir}/recv`,
    onError: (error) => errors.push(error.message),
  });
  try {
    const conn = await within(accepted, 2000, null);
    assert.ok(conn !== null, errors.join("\n"));
    conn.close();
  } finally {
    tcp.close();
    await transport.close();
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

Deno.test("ZmqTransport.stopReceiving() drains what comes after it past the 1,000 messages nobody takes", async () => {
  await using tmp = await tempDir("m2zt-");
  const dir = tmp.path;
  const go = Promise.withResolvers<void>();
  const messages = (count: number) => {
    const bytes = new Uint8Array(count * 3);
    for (let i = 0; i < count; i++) {
      bytes.set(frameOf(encoder.encode("m")), i * 3);
    }
    return bytes;
  };
  // 990 requests, then, once stopping, 20 more: past the 1,000 that make a
  // link wait for room, which only a consumer would make.
  await using mongrel2 = standIn(`${dir}/send`, async (conn, closing) => {
    await conn.write(greeting());
    await conn.write(readyCommand("PUSH"));
    await conn.write(messages(990));
    await go.promise;
    await conn.write(messages(20));
    await sleep(10_000, undefined, { signal: closing });
  });
  const transport = new ZmqTransport({
    sendSpec: `ipc://${dir}/send`,
    recvSpec: `ipc://${dir}/recv`,
  });
  try {
    assert.ok(await waitFor(() => mongrel2.connections > 0, 2000));
    await sleep(200);
    const stopped = transport.stopReceiving().then(() => "stopped");
    go.resolve();
    const outcome = await within(stopped, 3000, "hung");
    assert.equal(outcome, "stopped");
    let taken = 0;
    for await (const _ of transport.messages()) taken++;
    assert.ok(taken >= 990 && taken <= 1010, `${taken} messages`);
  } finally {
    await transport.close();
  }
});
