/**
 * `examples/chat.ts` behind mongrel2 and under `deno serve` with the flags
 * its documentation gives: two clients join, one talks, one leaves.
 *
 * @module
 */

import assert from "node:assert/strict";
import chat from "../../examples/chat.ts";
import { startDenoServe, startM2fetch, type TestServer } from "./servers.ts";

const CHAT = new URL("../../examples/chat.ts", import.meta.url).pathname;

interface Line {
  from: string;
  text: string;
}

async function converse(server: TestServer): Promise<void> {
  const page = await fetch(`http://127.0.0.1:${server.port}/`);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(await page.text(), /<title>m2fetch chat<\/title>/);
  const join = async (name: string) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws?name=${name}`);
    const lines: Line[] = [];
    const arrived: (() => void)[] = [];
    ws.onmessage = (event) => {
      lines.push(JSON.parse(event.data));
      arrived.shift()?.();
    };
    await new Promise((resolve) => ws.onopen = resolve);
    const closed = new Promise((resolve) => ws.onclose = resolve);
    /** Waits until `count` lines have arrived. */
    const until = async (count: number) => {
      while (lines.length < count) {
        await new Promise<void>((resolve) => arrived.push(resolve));
      }
      return lines.map((line) => `${line.from}|${line.text}`);
    };
    return { ws, until, closed };
  };
  const ann = await join("ann");
  assert.deepEqual(await ann.until(1), ["|ann joined (1 here)"]);
  const bob = await join("bob");
  assert.deepEqual(await bob.until(1), ["|bob joined (2 here)"]);
  ann.ws.send("hi bob");
  assert.deepEqual((await bob.until(2))[1], "ann|hi bob");
  bob.ws.close();
  await bob.closed;
  assert.deepEqual(await ann.until(4), [
    "|ann joined (1 here)",
    "|bob joined (2 here)",
    "ann|hi bob",
    "|bob left",
  ]);
  ann.ws.close();
  await ann.closed;
}

Deno.test("examples/chat.ts behind mongrel2", async () => {
  await using server = await startM2fetch(chat.fetch);
  await converse(server);
});

// What a browser sends is what chat.html's input holds, so its longest line
// must fit chat.ts's maxMessageSize (4096 bytes) in the worst case, three
// UTF-8 bytes per character. Before, the input had no maxlength: pasting a
// long text closed the sender's socket with 1009 behind mongrel2 ("left" for
// everyone, "Disconnected (1009)" for them), while `deno serve`, which
// ignores maxMessageSize, posted it.
Deno.test("examples/chat.ts takes the longest line chat.html lets a user send", async () => {
  const page = await Deno.readTextFile(
    new URL("../../examples/chat.html", import.meta.url),
  );
  const maxLength = page.match(/<input id="text"[^>]*\smaxlength="(\d+)"/)
    ?.[1];
  assert.ok(maxLength !== undefined, "chat.html's input has no maxlength");
  await using server = await startM2fetch(chat.fetch);
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws?name=ann`);
  const lines: Line[] = [];
  let arrived = () => {};
  ws.onmessage = (event) => {
    lines.push(JSON.parse(event.data));
    arrived();
  };
  const closed = new Promise<CloseEvent>((resolve) => ws.onclose = resolve);
  const next = async (count: number) => {
    while (lines.length < count) {
      const line = new Promise<void>((resolve) => arrived = resolve);
      const close = await Promise.race([line.then(() => null), closed]);
      if (close !== null) {
        assert.fail(`closed with ${close.code} before line ${count} came`);
      }
    }
    return lines[count - 1];
  };
  await new Promise((resolve) => ws.onopen = resolve);
  assert.equal((await next(1)).text, "ann joined (1 here)");
  const longest = "\u20ac".repeat(Number(maxLength)); // 3 bytes each
  ws.send(longest);
  const line = await next(2);
  assert.equal(`${line.from}|${line.text}`, `ann|${longest}`);
  ws.close();
  await closed;
});

// With no grant but read: importing mod.ts must open no socket.
Deno.test("examples/chat.ts under deno serve --allow-read", async () => {
  await using server = await startDenoServe(CHAT, ["--allow-read"], "/");
  await converse(server);
});
