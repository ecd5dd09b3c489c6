/**
 * The server's WebSocket paths, fed with the byte-exact messages mongrel2
 * 1.12.2 sent (tests/fixtures) over an in-memory transport: handshake, 101,
 * frames both ways, close, refusal, disconnect, shutdown.
 *
 * @module
 */

import assert from "node:assert/strict";
import { within } from "../subprocess.ts";
import { createLogger } from "../../runtime/log.ts";
import { serveMongrel2 } from "../../runtime/server.ts";
import { MemoryTransport } from "../../runtime/transport/memory.ts";
import { upgradeWebSocket } from "../../runtime/websocket/upgrade.ts";
import { buildRequestMessage } from "../../testing.ts";

const FIXTURES = new URL("../fixtures/", import.meta.url);
const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/** Replies as latin1 text, so every byte shows. */
function text(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += String.fromCharCode(byte);
  return out;
}

/** A {@linkcode MemoryTransport} whose replies the assertions read as text. */
class TestTransport extends MemoryTransport {
  /** The replies sent so far, as text. */
  get texts(): string[] {
    return this.replies.map(text);
  }

  /** Waits (up to 2 s) until `count` replies have been sent. */
  async replied(count: number): Promise<string[]> {
    await this.waitForReplies((replies) => replies.length >= count, {
      signal: AbortSignal.timeout(2000),
    });
    return this.texts;
  }
}

async function fixture(mode: string, name: string): Promise<Uint8Array> {
  return await Deno.readFile(new URL(`${mode}/${name}.bin`, FIXTURES));
}

function withServer(
  handler: (request: Request) => Response | Promise<Response>,
  fn: (transport: TestTransport, logs: string[]) => Promise<void>,
): () => Promise<void> {
  return async () => {
    const transport = new TestTransport();
    const logs: string[] = [];
    const server = serveMongrel2({
      handler,
      transport,
      logger: createLogger({ quiet: true, write: (line) => logs.push(line) }),
    });
    try {
      await fn(transport, logs);
    } finally {
      await server.shutdown(500);
    }
  };
}

for (const mode of ["tnet", "json"]) {
  const sender = mode === "tnet"
    ? "53f9f1d1-1116-4751-b6ff-4fbe3e43d142"
    : "34f9ceee-cd52-4b7f-b197-88bf2f0ec378";
  const events: string[] = [];
  let method = "";
  Deno.test(
    `${mode}: handshake, echo, ping, close from mongrel2's own messages`,
    withServer((request) => {
      method = request.method;
      const { socket, response } = upgradeWebSocket(request);
      socket.onmessage = (event) => socket.send(event.data);
      socket.onclose = (event) => {
        events.push(`close ${event.code} ${event.reason} ${event.wasClean}`);
      };
      return response;
    }, async (transport) => {
      const handshake = await fixture(mode, "websocket_handshake");
      const id = /^\S+ (\d+) /.exec(text(handshake))![1];
      const prefix = `${sender} ${id.length}:${id}, `;
      transport.deliver(handshake);
      const [head] = await transport.replied(1);
      assert.equal(method, "GET");
      assert.ok(
        head.startsWith(`${prefix}HTTP/1.1 101 Switching Protocols\r\n`),
      );
      assert.match(head, /\r\nupgrade: websocket\r\n/);
      assert.match(head, /\r\nconnection: Upgrade\r\n/);
      assert.ok(head.includes(`\r\nsec-websocket-accept: ${ACCEPT}\r\n`));
      assert.doesNotMatch(head, /content-length|transfer-encoding|close/);
      for (const name of ["text", "binary", "ping", "close"]) {
        transport.deliver(await fixture(mode, `websocket_${name}`));
      }
      const replies = (await transport.replied(6)).slice(1);
      assert.equal(replies[0], `${prefix}\x81\x05hello`);
      const bytes = Array.from({ length: 256 }, (_, i) => i);
      assert.equal(
        replies[1],
        `${prefix}\x82\x7e\x01\x00${String.fromCharCode(...bytes)}`,
      );
      assert.equal(replies[2], `${prefix}\x8a\x04ping`);
      assert.equal(replies[3], `${prefix}\x88\x05\x03\xe8bye`);
      assert.equal(replies[4], prefix);
      assert.deepEqual(events, ["close 1000 bye true"]);
    }),
  );
}

Deno.test(
  "a refused handshake is answered, then the connection closed",
  withServer(
    () => new Response("no", { status: 403 }),
    async (transport) => {
      transport.deliver(await fixture("tnet", "websocket_handshake"));
      const [response, close] = await transport.replied(2);
      assert.match(response, /^\S+ 2:25, HTTP\/1\.1 403 Forbidden\r\n/);
      assert.match(response, /\r\nconnection: close\r\n/);
      assert.ok(response.endsWith("\r\n\r\nno"));
      assert.match(close, /^\S+ 2:25, $/);
    },
  ),
);

Deno.test(
  "a 101 without upgradeWebSocket() is a 500",
  withServer(
    () => new Response(null, { status: 101 }),
    async (transport, logs) => {
      transport.deliver(await fixture("tnet", "websocket_handshake"));
      const [response, close] = await transport.replied(2);
      assert.match(response, /^\S+ 2:25, HTTP\/1\.1 500 /);
      assert.match(close, /^\S+ 2:25, $/);
      assert.match(
        logs.join("\n"),
        /a 101 response must follow upgradeWebSocket\(\)/,
      );
    },
  ),
);

Deno.test(
  "Deno.upgradeWebSocket() takes mongrel2's handshake, and a rebuilt 101 keeps its socket and headers",
  withServer(
    (request) => {
      const { socket, response } = Deno.upgradeWebSocket(request);
      socket.onmessage = (event) => socket.send(`echo ${event.data}`);
      // What middleware such as Hono's does to add a header afterwards.
      const rebuilt = new Response(response.body, response);
      rebuilt.headers.set("x-middleware", "1");
      return rebuilt;
    },
    async (transport) => {
      transport.deliver(await fixture("tnet", "websocket_handshake"));
      const [head] = await transport.replied(1);
      assert.match(head, /^\S+ 2:25, HTTP\/1\.1 101 Switching Protocols\r\n/);
      assert.match(head, /\r\nx-middleware: 1\r\n/);
      assert.match(
        head,
        /\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/,
      );
      transport.deliver(await fixture("tnet", "websocket_text"));
      const [, echo] = await transport.replied(2);
      assert.ok(echo.endsWith("\x81\x0aecho hello"), JSON.stringify(echo));
    },
  ),
);

Deno.test("frames sent before a refused handshake is answered are dropped, with a log line", async () => {
  const answer = Promise.withResolvers<Response>();
  await withServer(() => answer.promise, async (transport, logs) => {
    transport.deliver(await fixture("tnet", "websocket_handshake"));
    transport.deliver(await fixture("tnet", "websocket_text"));
    await transport.consumed();
    assert.deepEqual(transport.texts, []);
    answer.resolve(new Response("late", { status: 403 }));
    await transport.replied(2);
    assert.match(
      logs.join("\n"),
      /Ignored 1 WebSocket frame\(s\) on connection 25: the handshake they followed was not accepted/,
    );
  })();
});

Deno.test("frames sent before the handshake is answered reach the socket once it opens", async () => {
  const answer = Promise.withResolvers<void>();
  const received = Promise.withResolvers<string>();
  await withServer(async (request) => {
    await answer.promise; // a slow handler, or a worker's hop
    const { socket, response } = upgradeWebSocket(request);
    socket.onmessage = (event) => received.resolve(String(event.data));
    return response;
  }, async (transport, logs) => {
    transport.deliver(await fixture("tnet", "websocket_handshake"));
    const text = await fixture("tnet", "websocket_text");
    transport.deliver(text);
    await transport.consumed();
    answer.resolve();
    // The fixture's payload: the message's last bytes in the capture.
    const message = await within(received.promise, 2000, "not received");
    assert.notEqual(message, "not received");
    assert.ok(
      new TextDecoder().decode(text).includes(message as string),
      String(message),
    );
    assert.doesNotMatch(logs.join("\n"), /Ignored/);
  })();
});

Deno.test(
  "frames for a connection already closed are dropped quietly",
  withServer(() => new Response("unused"), async (transport, logs) => {
    transport.deliver(await fixture("tnet", "websocket_text"));
    await transport.consumed();
    assert.deepEqual(transport.texts, []);
    assert.deepEqual(logs, []);
  }),
);

Deno.test("a disconnect notice closes the socket with 1006", async () => {
  const closed = Promise.withResolvers<CloseEvent>();
  await withServer((request) => {
    const { socket, response } = upgradeWebSocket(request);
    socket.onclose = closed.resolve;
    return response;
  }, async (transport) => {
    transport.deliver(await fixture("tnet", "websocket_handshake"));
    await transport.replied(1);
    const notice = new TextDecoder().decode(
      await fixture("tnet", "disconnect"),
    ).replace(/ \d+ @\* /, " 25 @* ");
    transport.deliver(new TextEncoder().encode(notice));
    const event = await closed.promise;
    assert.deepEqual([event.code, event.wasClean], [1006, false]);
  })();
});

Deno.test("shutdown sends 1001 to open sockets, then closes", async () => {
  const events: string[] = [];
  const transport = new TestTransport();
  const server = serveMongrel2({
    handler(request) {
      const { socket, response } = upgradeWebSocket(request);
      socket.onclose = (event) => events.push(`${event.code} ${event.reason}`);
      return response;
    },
    transport,
    logger: createLogger({ quiet: true, write: () => {} }),
  });
  transport.deliver(await fixture("tnet", "websocket_handshake"));
  await transport.replied(1);
  await server.shutdown(1000);
  const [, close, end] = transport.texts;
  assert.ok(close.endsWith(" 2:25, \x88\x16\x03\xe9Server shutting down"));
  assert.match(end, /^\S+ 2:25, $/);
  assert.deepEqual(events, ["1001 Server shutting down"]);
});

Deno.test("a WebSocket handshake that arrives while shutting down gets 503, not a socket to cut", async () => {
  let upgrades = 0;
  let release!: () => void;
  const transport = new TestTransport();
  const server = serveMongrel2({
    handler(request) {
      if (new URL(request.url).pathname === "/slow") {
        // Keeps the drain going while the handshake arrives.
        return new Promise((resolve) =>
          release = () => resolve(new Response("late"))
        );
      }
      upgrades++;
      return upgradeWebSocket(request).response;
    },
    transport,
    logger: createLogger({ quiet: true, write: () => {} }),
  });
  transport.deliver(
    await buildRequestMessage("http://localhost/slow", { connectionId: 9 }),
  );
  await transport.consumed();
  const stopping = server.shutdown(2000);
  // Held while the drain runs, then answered once receiving has stopped.
  transport.deliver(await fixture("tnet", "websocket_handshake"));
  await transport.consumed();
  release();
  await stopping;
  assert.equal(upgrades, 0);
  const refused = transport.texts.find((reply) => reply.includes(" 503 "));
  assert.ok(refused, transport.texts.join("\n"));
  assert.match(
    refused,
    /HTTP\/1\.1 503 Service Unavailable\r\n[^]*connection: close\r\n/,
  );
});
