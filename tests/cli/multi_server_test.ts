import assert from "node:assert/strict";
import { Inbox } from "../zmq_peer.ts";
import { ZmqTransport } from "../../runtime/transport/zmq.ts";
import { startMongrel2 } from "../../runtime/mongrel2/mod.ts";
import { ROOT, spawnCli, tempDir, waitFor } from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Answers with the handler ident mongrel2 stamped on the request and the path.
const WHO_APP = `import { mongrel2Info } from "${ROOT}/runtime/info.ts";
export default {
  async fetch(request: Request): Promise<Response> {
    const delay = Number(new URL(request.url).searchParams.get("delay") ?? 0);
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    return new Response(
      \`\${mongrel2Info(request)?.sender} \${new URL(request.url).pathname}\`,
    );
  },
};
`;

Deno.test("ZmqTransport holds replies per recv spec: one mongrel2 missing does not hold up another", async () => {
  await using tmp = await tempDir("m2z-");
  const a = `ipc://${tmp.path}/a_recv`;
  const b = `ipc://${tmp.path}/b_recv`;
  // Stand-ins for mongrel2's reply sockets: bound SUBs, read all along.
  await using subA = Inbox.bind("sub", a);
  let subB: Inbox | undefined;
  const status: string[] = [];
  const transport = new ZmqTransport({
    sendSpec: `ipc://${tmp.path}/nobody_send`,
    recvSpec: [a, b],
    waitingNoticeMs: 800,
    onStatus: (line) => status.push(line),
  });
  try {
    assert.ok(
      await waitFor(
        () => status.some((line) => line.includes("Waiting for mongrel2")),
        5000,
      ),
      status.join("\n"),
    );
    assert.equal(
      status[0],
      `Waiting for mongrel2 to subscribe at ${b} (1 of 2 joined); replies for it are held until then`,
    );
    assert.equal(transport.ready, false);
    transport.send(encoder.encode("first"));
    assert.equal(decoder.decode(await subA.next()), "first");

    // B joins late and still gets what was held for it, in order.
    subB = Inbox.bind("sub", b);
    transport.send(encoder.encode("second"));
    assert.equal(decoder.decode(await subB.next()), "first");
    assert.equal(decoder.decode(await subB.next()), "second");
    assert.equal(decoder.decode(await subA.next()), "second");
    assert.ok(await waitFor(() => transport.ready, 2000));

    // B leaves: its replies are held again (and A's keep flowing).
    await subB.close();
    assert.ok(
      await waitFor(
        () => status.some((line) => line.includes(`${b} went away`)),
        2000,
      ),
      status.join("\n"),
    );
    assert.equal(transport.ready, false);
    transport.send(encoder.encode("third"));
    assert.equal(decoder.decode(await subA.next()), "third");
    assert.equal(transport.queuedReplies, 1);
    subB = Inbox.bind("sub", b);
    assert.equal(decoder.decode(await subB.next()), "third");
    assert.ok(
      status.includes(
        `mongrel2 at ${b} subscribed again; sending its replies`,
      ),
      status.join("\n"),
    );
  } finally {
    await transport.close();
    await subB?.close();
  }
});

Deno.test("ZmqTransport rejects a repeated or missing endpoint", () => {
  assert.throws(
    () =>
      new ZmqTransport({
        sendSpec: "tcp://127.0.0.1:9",
        recvSpec: ["tcp://127.0.0.1:8", "tcp://127.0.0.1:8"],
      }),
    /Cannot use recv spec "tcp:\/\/127\.0\.0\.1:8" twice/,
  );
  assert.throws(
    () => new ZmqTransport({ sendSpec: [], recvSpec: "tcp://127.0.0.1:8" }),
    /no send spec given/,
  );
});

Deno.test("cli: two mongrel2 servers share one m2fetch and each gets exactly its own replies under concurrent load", async () => {
  await using tmp = await tempDir("m2m-");
  const app = `${tmp.path}/who.ts`;
  await Deno.writeTextFile(app, WHO_APP);
  await using serverA = await startMongrel2({
    dir: `${tmp.path}/a`,
    handlers: [{ route: "/", sendIdent: "server-a" }],
  });
  await using serverB = await startMongrel2({
    dir: `${tmp.path}/b`,
    handlers: [{ route: "/", sendIdent: "server-b" }],
  });
  const [a] = serverA.handlers;
  const [b] = serverB.handlers;
  await using cli = await spawnCli([
    "--send-spec",
    a.sendSpec,
    "--recv-spec",
    a.recvSpec,
    "--send-spec",
    b.sendSpec,
    "--recv-spec",
    b.recvSpec,
    app,
  ], /via mongrel2/);
  assert.ok(
    cli.output().includes(
      `requests from ${a.sendSpec}, ${b.sendSpec}, replies to ${a.recvSpec}, ${b.recvSpec}`,
    ),
    cli.output(),
  );
  // Separate clients per server, each with its own keep-alive pool: both
  // mongrel2s number their connections alike, so the connection ids in the
  // two servers' replies collide, and only recv_ident tells them apart.
  const clientA = Deno.createHttpClient({});
  const clientB = Deno.createHttpClient({});
  try {
    for (let round = 0; round < 3; round++) {
      const requests: Promise<[string, string]>[] = [];
      for (let i = 0; i < 40; i++) {
        for (
          const [name, url, client] of [
            ["server-a", serverA.url, clientA],
            ["server-b", serverB.url, clientB],
          ] as const
        ) {
          const path = `/${name}/${round}/${i}`;
          // Mixed handler delays make the replies interleave.
          const delay = (i * 7) % 23;
          requests.push(
            fetch(`${url}${path}?delay=${delay}`, { client }).then(
              async (response) => [`${name} ${path}`, await response.text()],
            ),
          );
        }
      }
      for (const [expected, body] of await Promise.all(requests)) {
        assert.equal(body, expected);
      }
    }
  } finally {
    clientA.close();
    clientB.close();
  }
  assert.equal((await cli.stop()).code, 0, cli.output());
  // The access lines say which server each connection id belongs to.
  for (const name of ["server-a", "server-b"]) {
    assert.match(
      cli.output(),
      new RegExp(
        `access GET /${name}/2/39 200 \\d+ \\S+ms conn=\\d+ sender=${name}\n`,
      ),
    );
  }
});

Deno.test("cli: with several mongrel2 servers, one that is down does not stop the others; it is served once it starts", async () => {
  await using tmp = await tempDir("m2m-");
  const app = `${tmp.path}/who.ts`;
  await Deno.writeTextFile(app, WHO_APP);
  await using serverA = await startMongrel2({
    dir: `${tmp.path}/a`,
    handlers: [{ route: "/", sendIdent: "server-a" }],
  });
  const [a] = serverA.handlers;
  // Where the second mongrel2 will bind once it starts.
  const bDir = `${tmp.path}/b`;
  const bSend = `ipc://${bDir}/run/app0_send`;
  const bRecv = `ipc://${bDir}/run/app0_recv`;
  await using cli = await spawnCli([
    "--send-spec",
    a.sendSpec,
    "--recv-spec",
    a.recvSpec,
    "--send-spec",
    bSend,
    "--recv-spec",
    bRecv,
    app,
  ], /via mongrel2/);
  const response = await fetch(`${serverA.url}/only-a`);
  assert.equal(await response.text(), "server-a /only-a");
  await cli.waitForOutput(
    `Waiting for mongrel2 to subscribe at ${bRecv} (1 of 2 joined)`,
  );
  await using serverB = await startMongrel2({
    dir: bDir,
    handlers: [{ route: "/", sendIdent: "server-b" }],
  });
  assert.equal(serverB.handlers[0].sendSpec, bSend);
  const late = await fetch(`${serverB.url}/late-b`);
  assert.equal(await late.text(), "server-b /late-b");
  const again = await fetch(`${serverA.url}/again-a`);
  assert.equal(await again.text(), "server-a /again-a");
  assert.equal((await cli.stop()).code, 0, cli.output());
});
