import assert from "node:assert/strict";
import {
  encodeClose,
  encodeCtl,
  encodeReplies,
  encodeReply,
  encodeReplyPrefix,
  MAX_REPLY_IDS,
} from "../../runtime/protocol/reply.ts";
import { parseTNetstring } from "../../runtime/protocol/tnetstring.ts";
import {
  ALL_BYTES,
  assertSentence,
  bytes,
  latin1,
  SENDERS,
} from "./helpers.ts";

const SENDER = SENDERS.json;
const OK = bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");

/** Splits a reply as mongrel2's handler_parser.rl does. */
function splitReply(message: Uint8Array): {
  sender: string;
  ids: string[];
  extended: boolean;
  body: Uint8Array;
} {
  const text = latin1(message);
  const match = text.match(/^([A-Za-z0-9-]+) (\d+):((?:X )?[\d ]+), /);
  assert.ok(match, `reply prefix of ${text.slice(0, 80)}`);
  const [prefix, sender, length, list] = match;
  assert.equal(Number(length), list.length, "LEN is the byte length of IDS");
  const extended = list.startsWith("X ");
  const ids = (extended ? list.slice(2) : list).split(" ");
  return { sender, ids, extended, body: message.subarray(prefix.length) };
}

function range(count: number, first = 1): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}

function assertError(
  fn: () => unknown,
  type: typeof TypeError | typeof RangeError,
  pattern: RegExp,
): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${error}`);
    assertSentence(error.message);
    assert.match(error.message, pattern);
    return true;
  });
}

// --- byte-exact examples from §1.7 ----------------------------------------

Deno.test("encodeReply() writes the §1.7 single-target example", () => {
  assert.equal(
    latin1(encodeReply(SENDER, ["7"], OK)),
    `${SENDER} 1:7, HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`,
  );
  assert.equal(
    latin1(encodeReply(SENDER, [7], OK)),
    `${SENDER} 1:7, HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`,
  );
});

Deno.test("encodeReply() writes the §1.7 multi-target example", () => {
  const body = bytes("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nboth");
  assert.equal(
    latin1(encodeReply(SENDER, ["6", "7"], body)),
    `${SENDER} 3:6 7, HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nboth`,
  );
  assert.equal(
    latin1(encodeReply(SENDER, [6, "7"], body)),
    `${SENDER} 3:6 7, HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nboth`,
  );
});

Deno.test("encodeClose() writes the §1.7 0-length close", () => {
  assert.equal(latin1(encodeClose(SENDER, ["7"])), `${SENDER} 1:7, `);
  assert.equal(latin1(encodeClose(SENDER, [6, 7])), `${SENDER} 3:6 7, `);
  assert.deepEqual(
    encodeClose(SENDER, ["7"]),
    encodeReply(SENDER, ["7"], new Uint8Array(0)),
  );
});

Deno.test("encodeCtl() writes the §1.7 keep-alive example", () => {
  assert.equal(
    latin1(encodeCtl(SENDER, ["7"], { "keep-alive": true })),
    `${SENDER} 3:X 7, 31:3:ctl,21:10:keep-alive,4:true!}]`,
  );
});

// --- encodeReply -----------------------------------------------------------

Deno.test("encodeReply() copies a binary body verbatim", () => {
  const message = encodeReply("abc", [12345], ALL_BYTES);
  const { sender, ids, extended, body } = splitReply(message);
  assert.equal(sender, "abc");
  assert.deepEqual(ids, ["12345"]);
  assert.equal(extended, false);
  assert.deepEqual(body, ALL_BYTES);
});

Deno.test("encodeReply() takes up to 128 ids in one message", () => {
  for (const count of [1, 2, 127, 128]) {
    const ids = range(count, 1000);
    const split = splitReply(encodeReply(SENDER, ids, OK));
    assert.deepEqual(split.ids, ids.map(String), `${count} ids`);
    assert.deepEqual(split.body, OK);
  }
  assert.equal(MAX_REPLY_IDS, 128);
});

Deno.test("encodeReply() throws RangeError for 0 or more than 128 ids", () => {
  for (const count of [0, 129, 300]) {
    assertError(
      () => encodeReply(SENDER, range(count), OK),
      RangeError,
      new RegExp(`${count} connection ids given`),
    );
  }
});

Deno.test("encodeReply() throws TypeError for a sender mongrel2 rejects", () => {
  for (
    const sender of [
      "",
      "bad_sender",
      "a b",
      "a:b",
      "uuid\n",
      "caf\u00e9",
      "a,b",
    ]
  ) {
    assertError(
      () => encodeReply(sender, ["1"], OK),
      TypeError,
      /sender "[\s\S]*" may only hold letters, digits and '-'/,
    );
  }
  assert.doesNotThrow(() => encodeReply("ABC-def-0123456789", ["1"], OK));
});

Deno.test("encodeReply() throws TypeError for an id that is not a decimal number", () => {
  const ids: (string | number)[] = [
    "",
    "x",
    "1x",
    "-1",
    -1,
    "1.5",
    1.5,
    NaN,
    Infinity,
    1e21,
    " 1",
    "1 2",
    "X",
    "12345678901",
  ];
  for (const id of ids) {
    assertError(
      () => encodeReply(SENDER, ["1", id], OK),
      TypeError,
      /connection id .* is not a decimal number/,
    );
  }
  assert.equal(
    latin1(encodeReply(SENDER, ["4294967295", 0], new Uint8Array(0))),
    `${SENDER} 12:4294967295 0, `,
  );
});

// --- encodeReplies -----------------------------------------------------------

Deno.test("encodeReplies() splits ids into messages of at most 128", () => {
  const cases: [number, number[]][] = [
    [1, [1]],
    [128, [128]],
    [129, [128, 1]],
    [300, [128, 128, 44]],
  ];
  for (const [count, sizes] of cases) {
    const ids = range(count);
    const messages = encodeReplies(SENDER, ids, OK);
    assert.deepEqual(
      messages.map((message) => splitReply(message).ids.length),
      sizes,
      `${count} ids`,
    );
    const all = messages.flatMap((message) => {
      const split = splitReply(message);
      assert.equal(split.sender, SENDER);
      assert.deepEqual(split.body, OK);
      return split.ids;
    });
    assert.deepEqual(all, ids.map(String));
  }
});

Deno.test("encodeReplies() writes each message byte for byte", () => {
  const messages = encodeReplies("abc", range(3), bytes("hi"), 2);
  assert.deepEqual(messages.map(latin1), ["abc 3:1 2, hi", "abc 1:3, hi"]);
});

Deno.test("encodeReplies() honours a smaller maxIds", () => {
  const messages = encodeReplies(SENDER, range(300), OK, 100);
  assert.deepEqual(
    messages.map((message) => splitReply(message).ids.length),
    [100, 100, 100],
  );
  assert.equal(encodeReplies(SENDER, range(5), OK, 1).length, 5);
});

Deno.test("encodeReplies() returns no messages for no ids", () => {
  assert.deepEqual(encodeReplies(SENDER, [], OK), []);
});

Deno.test("encodeReplies() throws RangeError for maxIds outside 1 to 128", () => {
  for (const maxIds of [0, -1, 129, 1.5, NaN]) {
    assertError(
      () => encodeReplies(SENDER, range(3), OK, maxIds),
      RangeError,
      /maxIds .* is not between 1 and 128/,
    );
  }
});

Deno.test("encodeReplies() validates the sender and every id", () => {
  assertError(() => encodeReplies("bad sender", [1], OK), TypeError, /sender/);
  assertError(
    () => encodeReplies(SENDER, [...range(200), "x"], OK),
    TypeError,
    /connection id "x"/,
  );
});

// --- encodeReplyPrefix and encodeClose ---------------------------------------

Deno.test("encodeReplyPrefix() returns the bytes before the body", () => {
  assert.equal(latin1(encodeReplyPrefix("abc", ["7"])), "abc 1:7, ");
  assert.equal(latin1(encodeReplyPrefix("abc", [10, 11])), "abc 5:10 11, ");
  const body = bytes("xyz");
  assert.equal(
    latin1(encodeReplyPrefix("abc", [10, 11])) + "xyz",
    latin1(encodeReply("abc", [10, 11], body)),
  );
  assertError(() => encodeReplyPrefix("abc", []), RangeError, /0 connection/);
});

Deno.test("encodeClose() validates like encodeReply()", () => {
  assertError(() => encodeClose("bad_sender", [1]), TypeError, /sender/);
  assertError(() => encodeClose(SENDER, []), RangeError, /0 connection ids/);
  assertError(() => encodeClose(SENDER, range(129)), RangeError, /129/);
  assert.equal(splitReply(encodeClose(SENDER, range(128))).body.length, 0);
});

// --- encodeCtl ---------------------------------------------------------------

Deno.test("encodeCtl() writes the §1.13 bodies byte for byte", () => {
  assert.equal(
    latin1(encodeCtl(SENDER, [7], { credits: 65536 })),
    `${SENDER} 3:X 7, 28:3:ctl,18:7:credits,5:65536#}]`,
  );
  assert.equal(
    latin1(encodeCtl(SENDER, [7], { cancel: true })),
    `${SENDER} 3:X 7, 26:3:ctl,16:6:cancel,4:true!}]`,
  );
  assert.equal(
    latin1(encodeCtl(SENDER, ["2"], { credits: 4000 })),
    `${SENDER} 3:X 2, 27:3:ctl,17:7:credits,4:4000#}]`,
  );
});

Deno.test("encodeCtl() writes several commands in one dict", () => {
  const message = encodeCtl("abc", [1, 2], {
    cancel: true,
    credits: 10,
    "keep-alive": true,
  });
  const { ids, extended, body } = splitReply(message);
  assert.deepEqual(ids, ["1", "2"]);
  assert.equal(extended, true);
  assert.equal(
    latin1(body),
    "62:3:ctl,52:10:keep-alive,4:true!7:credits,2:10#6:cancel,4:true!}]",
  );
  const parsed = parseTNetstring(body);
  assert.equal(parsed.end, body.length);
  assert.deepEqual(parsed.value, [
    "ctl",
    { "keep-alive": true, credits: 10, cancel: true },
  ]);
});

Deno.test("encodeCtl() batches keep-alives up to 128 ids", () => {
  const split = splitReply(
    encodeCtl(SENDER, range(128), { "keep-alive": true }),
  );
  assert.equal(split.extended, true);
  assert.equal(split.ids.length, 128);
  assertError(
    () => encodeCtl(SENDER, range(129), { "keep-alive": true }),
    RangeError,
    /129 connection ids/,
  );
});

Deno.test("encodeCtl() throws RangeError when no command or bad credits are given", () => {
  assertError(() => encodeCtl(SENDER, [1], {}), RangeError, /no command/);
  for (const credits of [0, -1, 1.5, NaN, Infinity, 2 ** 53]) {
    assertError(
      () => encodeCtl(SENDER, [1], { credits }),
      RangeError,
      /credits .* is not a positive integer/,
    );
  }
});

Deno.test("encodeCtl() validates the sender and ids", () => {
  assertError(
    () => encodeCtl("bad_sender", [1], { cancel: true }),
    TypeError,
    /sender/,
  );
  assertError(
    () => encodeCtl(SENDER, ["X"], { cancel: true }),
    TypeError,
    /connection id "X"/,
  );
  assertError(
    () => encodeCtl(SENDER, [], { cancel: true }),
    RangeError,
    /0 connection ids/,
  );
});
