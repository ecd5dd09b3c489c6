/**
 * Requests mongrel2 passes on a connection id m2fetch has just closed after
 * its last request: one pipelined behind that request is dropped; a new
 * client's (ids start at 1 again after a mongrel2 restart) is told the
 * connection ended, or served once it is no longer a moment after the
 * close. Driven with mongrel2's byte-exact messages over the memory
 * transport, since the timing is hard to force through a real mongrel2.
 *
 * @module
 */

import assert from "node:assert/strict";
import { serveMongrel2 } from "../../runtime/server.ts";
import { createLogger } from "../../runtime/log.ts";
import { MemoryTransport } from "../../runtime/transport/memory.ts";
import { buildRequestMessage } from "../../testing.ts";

const decoder = new TextDecoder();

// The last request: an HTTP/1.0 one, or one whose response says
// `connection: close` (m2fetch closes after it on the handler's word).
for (
  const [last, version, status] of [
    ["/last", "HTTP/1.0", /HTTP\/1\.0 200 OK[^]*\/last$/],
    [
      "/close",
      "HTTP/1.1",
      /HTTP\/1\.1 200 OK[^]*connection: close[^]*\/close$/,
    ],
  ] as const
) {
  Deno.test(`a request on an id m2fetch closed after its last request (${last}): dropped with a close, served once the moment has passed`, async () => {
    const transport = new MemoryTransport();
    const logs: string[] = [];
    const server = serveMongrel2({
      handler: (request) => {
        const path = new URL(request.url).pathname;
        return new Response(
          path,
          path === "/close" ? { headers: { connection: "close" } } : {},
        );
      },
      transport,
      logger: createLogger({ write: (line) => logs.push(line) }),
    });
    const request = (path: string, version: "HTTP/1.0" | "HTTP/1.1") =>
      buildRequestMessage({ url: `http://localhost${path}`, version }, {
        connectionId: 1,
        downloadCredits: false,
      });
    try {
      transport.deliver(await request(last, version));
      const answered = decoder.decode(await transport.nextReply());
      assert.match(answered, status);
      // m2fetch closes the connection (a 0-length reply to its id).
      assert.match(decoder.decode(await transport.nextReply()), / 1:1, $/);

      // Within the moment: not served, and mongrel2 is told to close the id.
      transport.deliver(await request("/behind", "HTTP/1.1"));
      assert.match(decoder.decode(await transport.nextReply()), / 1:1, $/);
      assert.ok(
        logs.some((line) =>
          /Ignored GET \/behind: the client pipelined it after a request that closes connection 1/
            .test(line)
        ),
        logs.join("\n"),
      );

      // Past it: the id is a new client's, and it is served.
      await new Promise((resolve) => setTimeout(resolve, 2100));
      transport.deliver(await request("/new", "HTTP/1.1"));
      assert.match(
        decoder.decode(await transport.nextReply()),
        /HTTP\/1\.1 200 OK[^]*\/new$/,
      );
    } finally {
      await server.shutdown(100);
    }
  });
}
