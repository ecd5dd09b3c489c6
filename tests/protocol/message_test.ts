import assert from "node:assert/strict";
import {
  firstHeader,
  type Mongrel2Headers,
  type Mongrel2Message,
  parseMessage,
} from "../../runtime/protocol/message.ts";
import { parseNotice } from "../../runtime/protocol/notice.ts";
import {
  ALL_BYTES,
  assertProtocolError,
  bytes,
  fixture,
  FIXTURE_NAMES,
  type FixtureName,
  latin1,
  message,
  type Mode,
  MODES,
  SENDERS,
} from "./helpers.ts";

// --- expected values of every fixture -----------------------------------

/** Connection ids in capture order: json 2–13, then tnet 14–25. */
const CONNECTION_IDS: Record<Mode, Record<FixtureName, string>> = {
  json: {
    get_query: "2",
    duplicate_headers: "3",
    post_inline: "4",
    post_binary: "5",
    raw_tab: "6",
    head: "7",
    http10: "8",
    connection_close: "9",
    credits: "10",
    disconnect: "11",
    upload_start: "12",
    upload_done: "12",
    websocket_handshake: "13",
    websocket_text: "13",
    websocket_binary: "13",
    websocket_ping: "13",
    websocket_close: "13",
  },
  tnet: {
    get_query: "14",
    duplicate_headers: "15",
    post_inline: "16",
    post_binary: "17",
    raw_tab: "18",
    head: "19",
    http10: "20",
    connection_close: "21",
    credits: "22",
    disconnect: "23",
    upload_start: "24",
    upload_done: "24",
    websocket_handshake: "25",
    websocket_text: "25",
    websocket_binary: "25",
    websocket_ping: "25",
    websocket_close: "25",
  },
};

const UPLOAD_PATHS: Record<Mode, string> = {
  json: "/tmp/m2fetch-capture/tmp/upload.ekkypm",
  tnet: "/tmp/m2fetch-capture/tmp/upload.OwQOJ2",
};

interface Expected {
  path: string;
  headers: Mongrel2Headers;
  body: Uint8Array;
}

/** The keys mongrel2 adds to every HTTP request of the capture. */
function request(
  mode: Mode,
  path: string,
  extra: Mongrel2Headers = {},
  uri = path,
): Mongrel2Headers {
  return {
    PATH: path,
    "x-forwarded-for": "127.0.0.1",
    DOWNLOAD_CREDITS: "102400",
    host: "localhost",
    METHOD: "GET",
    VERSION: "HTTP/1.1",
    URI: uri,
    PATTERN: `/${mode}`,
    URL_SCHEME: "http",
    REMOTE_ADDR: "127.0.0.1",
    ...extra,
  };
}

function websocket(mode: Mode, extra: Mongrel2Headers): Mongrel2Headers {
  return request(mode, `/${mode}/ws`, {
    origin: "http://localhost",
    connection: "Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    upgrade: "websocket",
    QUERY: "room=1",
    ...extra,
  }, `/${mode}/ws?room=1`);
}

const EMPTY = new Uint8Array(0);

function expected(mode: Mode, name: FixtureName): Expected {
  const upload = {
    METHOD: "POST",
    "content-type": "application/octet-stream",
    "content-length": "2048",
    "x-mongrel2-upload-start": UPLOAD_PATHS[mode],
  };
  switch (name) {
    case "get_query": {
      const path = `/${mode}/a%20b/c`;
      return {
        path,
        headers: request(mode, path, {
          QUERY: "x=1&y=%22q%22",
          FRAGMENT: "frag",
        }, `${path}?x=1&y=%22q%22`),
        body: EMPTY,
      };
    }
    case "duplicate_headers":
      return {
        path: `/${mode}/dup`,
        headers: request(mode, `/${mode}/dup`, {
          "x-dup": ["one", "two", "three"],
          cookie: ["a=1", "b=2"],
        }),
        body: EMPTY,
      };
    case "post_inline":
      return {
        path: `/${mode}/post`,
        headers: request(mode, `/${mode}/post`, {
          METHOD: "POST",
          "content-type": "text/plain",
          "content-length": "11",
        }),
        body: bytes("hello world"),
      };
    case "post_binary":
      return {
        path: `/${mode}/binary`,
        headers: request(mode, `/${mode}/binary`, {
          METHOD: "POST",
          "content-type": "application/octet-stream",
          "content-length": "256",
        }),
        body: ALL_BYTES,
      };
    case "raw_tab":
      return {
        path: `/${mode}/raw`,
        headers: request(mode, `/${mode}/raw`, {
          // Raw TAB, lone Latin-1 0xE9 and UTF-8 C3 A9, one code unit a byte.
          "x-raw": "tab[\t] latin1[\u00e9] utf8[\u00c3\u00a9]",
        }),
        body: EMPTY,
      };
    case "head":
      return {
        path: `/${mode}/head`,
        headers: request(mode, `/${mode}/head`, { METHOD: "HEAD" }),
        body: EMPTY,
      };
    case "http10":
      return {
        path: `/${mode}/http10`,
        headers: request(mode, `/${mode}/http10`, { VERSION: "HTTP/1.0" }),
        body: EMPTY,
      };
    case "connection_close":
      return {
        path: `/${mode}/close`,
        headers: request(mode, `/${mode}/close`, { connection: "close" }),
        body: EMPTY,
      };
    case "credits":
      return {
        path: "@*",
        headers: { METHOD: "JSON", DOWNLOAD_CREDITS: "66" },
        body: bytes('{"type":"credits"}'),
      };
    case "disconnect":
      return {
        path: "@*",
        headers: { METHOD: "JSON" },
        body: bytes('{"type":"disconnect"}'),
      };
    case "upload_start":
      return {
        path: `/${mode}/upload`,
        headers: request(mode, `/${mode}/upload`, upload),
        body: EMPTY,
      };
    case "upload_done":
      return {
        path: `/${mode}/upload`,
        headers: request(mode, `/${mode}/upload`, {
          ...upload,
          "x-mongrel2-upload-done": UPLOAD_PATHS[mode],
        }),
        body: EMPTY,
      };
    case "websocket_handshake":
      return {
        path: `/${mode}/ws`,
        headers: websocket(mode, { METHOD: "WEBSOCKET_HANDSHAKE" }),
        body: bytes("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
      };
    case "websocket_text":
      return {
        path: `/${mode}/ws`,
        headers: websocket(mode, { METHOD: "WEBSOCKET", FLAGS: "0x81" }),
        body: bytes("hello"),
      };
    case "websocket_binary":
      return {
        path: `/${mode}/ws`,
        headers: websocket(mode, { METHOD: "WEBSOCKET", FLAGS: "0x82" }),
        body: ALL_BYTES,
      };
    case "websocket_ping":
      return {
        path: `/${mode}/ws`,
        headers: websocket(mode, { METHOD: "WEBSOCKET", FLAGS: "0x89" }),
        body: bytes("ping"),
      };
    case "websocket_close":
      return {
        path: `/${mode}/ws`,
        headers: websocket(mode, { METHOD: "WEBSOCKET", FLAGS: "0x88" }),
        body: bytes("\x03\xe8bye"),
      };
  }
}

function parseFixture(mode: Mode, name: FixtureName): Mongrel2Message {
  return parseMessage(fixture(mode, name));
}

// --- fixtures: exact values ----------------------------------------------

for (const mode of MODES) {
  for (const name of FIXTURE_NAMES) {
    Deno.test(`parseMessage() parses ${mode}/${name}.bin exactly`, () => {
      const parsed = parseFixture(mode, name);
      const want = expected(mode, name);
      assert.equal(parsed.sender, SENDERS[mode]);
      assert.equal(parsed.connectionId, CONNECTION_IDS[mode][name]);
      assert.equal(parsed.path, want.path);
      assert.deepEqual(parsed.headers, want.headers);
      assert.deepEqual(parsed.body, want.body);
      assert.equal(
        parsed.headerFormat,
        mode === "json" ? "json" : "tnetstring",
      );
    });
  }
}

Deno.test("parseMessage() keeps duplicate headers as arrays in arrival order", () => {
  for (const mode of MODES) {
    const { headers } = parseFixture(mode, "duplicate_headers");
    assert.deepEqual(headers["x-dup"], ["one", "two", "three"], mode);
    assert.deepEqual(headers.cookie, ["a=1", "b=2"], mode);
    assert.equal(firstHeader(headers, "x-dup"), "one");
    assert.equal(firstHeader(headers, "host"), "localhost");
  }
});

Deno.test("parseMessage() keeps mongrel2's own keys upper case", () => {
  for (const mode of MODES) {
    const keys = Object.keys(parseFixture(mode, "get_query").headers).sort();
    assert.deepEqual(keys, [
      "DOWNLOAD_CREDITS",
      "FRAGMENT",
      "METHOD",
      "PATH",
      "PATTERN",
      "QUERY",
      "REMOTE_ADDR",
      "URI",
      "URL_SCHEME",
      "VERSION",
      "host",
      "x-forwarded-for",
    ]);
  }
});

Deno.test("parseMessage() returns raw header bytes as byte strings in both modes", () => {
  const raw = bytes("tab[\t] latin1[\xe9] utf8[\xc3\xa9]");
  for (const mode of MODES) {
    const value = parseFixture(mode, "raw_tab").headers["x-raw"];
    assert.equal(typeof value, "string");
    assert.equal(value, latin1(raw), mode);
    // "é" sent as UTF-8 arrives as two code units, as Deno.serve shows it.
    assert.ok((value as string).endsWith("utf8[\u00c3\u00a9]"));
    assert.equal((value as string).indexOf("\t"), 4);
  }
});

Deno.test("parseMessage() returns a binary-safe body with all 256 byte values", () => {
  for (const mode of MODES) {
    const { body } = parseFixture(mode, "post_binary");
    assert.equal(body.length, 256);
    assert.deepEqual(body, ALL_BYTES, mode);
  }
});

Deno.test("parseMessage() returns the body as a view into the input", () => {
  const input = fixture("tnet", "post_inline");
  const { body } = parseMessage(input);
  assert.equal(body.buffer, input.buffer);
  assert.equal(body.byteOffset, input.length - 12);
});

Deno.test("parseMessage() parses a message inside a larger buffer", () => {
  const input = fixture("json", "post_inline");
  const padded = new Uint8Array(input.length + 20).fill(0x20);
  padded.set(input, 10);
  const parsed = parseMessage(padded.subarray(10, 10 + input.length));
  assert.equal(parsed.sender, SENDERS.json);
  assert.equal(latin1(parsed.body), "hello world");
});

Deno.test("parseMessage() detects the header format per message", () => {
  assert.equal(parseFixture("json", "credits").headerFormat, "json");
  assert.equal(parseFixture("tnet", "credits").headerFormat, "tnetstring");
  assert.equal(parseFixture("tnet", "credits").path, "@*");
});

Deno.test("parseMessage() keeps notice bodies as JSON for both modes", () => {
  for (const mode of MODES) {
    assert.equal(
      latin1(parseFixture(mode, "disconnect").body),
      '{"type":"disconnect"}',
    );
    assert.equal(
      latin1(parseFixture(mode, "credits").body),
      '{"type":"credits"}',
    );
  }
});

Deno.test("parseNotice() reads the disconnect and credits fixtures", () => {
  for (const mode of MODES) {
    assert.deepEqual(parseNotice(parseFixture(mode, "disconnect")), {
      type: "disconnect",
    });
    assert.deepEqual(parseNotice(parseFixture(mode, "credits")), {
      type: "credits",
      credits: 66,
    });
  }
});

Deno.test("parseNotice() returns null for every request fixture", () => {
  for (const mode of MODES) {
    for (const name of FIXTURE_NAMES) {
      if (name === "credits" || name === "disconnect") continue;
      assert.equal(parseNotice(parseFixture(mode, name)), null, name);
    }
  }
});

Deno.test("parseMessage() shows the upload-start and upload-done markers", () => {
  for (const mode of MODES) {
    const start = parseFixture(mode, "upload_start");
    const done = parseFixture(mode, "upload_done");
    const path = UPLOAD_PATHS[mode];
    assert.equal(start.headers["x-mongrel2-upload-start"], path);
    assert.equal(Object.hasOwn(start.headers, "x-mongrel2-upload-done"), false);
    assert.equal(done.headers["x-mongrel2-upload-start"], path);
    assert.equal(done.headers["x-mongrel2-upload-done"], path);
    assert.ok(path.startsWith("/tmp/m2fetch-capture/tmp/upload."));
    assert.equal(start.body.length, 0);
    assert.equal(done.body.length, 0);
    assert.equal(start.connectionId, done.connectionId);
  }
});

Deno.test("parseMessage() shows the WebSocket FLAGS of each frame", () => {
  const flags = {
    websocket_text: "0x81",
    websocket_binary: "0x82",
    websocket_close: "0x88",
    websocket_ping: "0x89",
  } as const;
  for (const mode of MODES) {
    const handshake = parseFixture(mode, "websocket_handshake");
    assert.equal(handshake.headers.METHOD, "WEBSOCKET_HANDSHAKE");
    assert.equal(Object.hasOwn(handshake.headers, "FLAGS"), false);
    for (const [name, value] of Object.entries(flags)) {
      const frame = parseFixture(mode, name as FixtureName);
      assert.equal(frame.headers.FLAGS, value, `${mode}/${name}`);
      assert.equal(frame.headers.METHOD, "WEBSOCKET");
      assert.equal(frame.connectionId, handshake.connectionId);
    }
  }
});

// --- worked examples from the protocol report ----------------------------

Deno.test("parseMessage() parses the §1.2 JSON worked example", () => {
  const input = bytes(
    '34f9ceee-cd52-4b7f-b197-88bf2f0ec378 1 /json/a%20b/c 324:{"PATH":"/json/a%20b/c","x-dup":["one","two"],"x-forwarded-for":"127.0.0.1","x-tab":"a\tb","x-weird":"a \\"quoted\\" \\\\back\\\\ \xc3\xa9","host":"localhost","METHOD":"GET","VERSION":"HTTP/1.1","URI":"/json/a%20b/c?x=1&y=%22q%22","QUERY":"x=1&y=%22q%22","FRAGMENT":"frag","PATTERN":"/json","URL_SCHEME":"http","REMOTE_ADDR":"127.0.0.1"},0:,',
  );
  const parsed = parseMessage(input);
  assert.deepEqual(parsed, {
    sender: "34f9ceee-cd52-4b7f-b197-88bf2f0ec378",
    connectionId: "1",
    path: "/json/a%20b/c",
    headers: {
      PATH: "/json/a%20b/c",
      "x-dup": ["one", "two"],
      "x-forwarded-for": "127.0.0.1",
      "x-tab": "a\tb",
      "x-weird": 'a "quoted" \\back\\ \u00c3\u00a9',
      host: "localhost",
      METHOD: "GET",
      VERSION: "HTTP/1.1",
      URI: "/json/a%20b/c?x=1&y=%22q%22",
      QUERY: "x=1&y=%22q%22",
      FRAGMENT: "frag",
      PATTERN: "/json",
      URL_SCHEME: "http",
      REMOTE_ADDR: "127.0.0.1",
    },
    body: new Uint8Array(0),
    headerFormat: "json",
  });
});

Deno.test("parseMessage() parses the §1.2 tnetstring worked example", () => {
  const input = bytes(
    "53f9f1d1-1116-4751-b6ff-4fbe3e43d142 2 /tnet/a 235:11:REMOTE_ADDR,9:127.0.0.1,6:METHOD,3:GET,10:URL_SCHEME,4:http,7:PATTERN,5:/tnet,5:QUERY,3:x=1,3:URI,11:/tnet/a?x=1,7:VERSION,8:HTTP/1.1,4:PATH,7:/tnet/a,4:host,15:localhost:41767,15:x-forwarded-for,9:127.0.0.1,5:x-dup,12:3:one,3:two,]}0:,",
  );
  assert.deepEqual(parseMessage(input), {
    sender: "53f9f1d1-1116-4751-b6ff-4fbe3e43d142",
    connectionId: "2",
    path: "/tnet/a",
    headers: {
      REMOTE_ADDR: "127.0.0.1",
      METHOD: "GET",
      URL_SCHEME: "http",
      PATTERN: "/tnet",
      QUERY: "x=1",
      URI: "/tnet/a?x=1",
      VERSION: "HTTP/1.1",
      PATH: "/tnet/a",
      host: "localhost:41767",
      "x-forwarded-for": "127.0.0.1",
      "x-dup": ["one", "two"],
    },
    body: new Uint8Array(0),
    headerFormat: "tnetstring",
  });
});

Deno.test("parseMessage() parses the §1.2 POST with an inline body", () => {
  const input = bytes(
    '34f9ceee-cd52-4b7f-b197-88bf2f0ec378 3 /json/p 234:{"PATH":"/json/p","x-forwarded-for":"127.0.0.1","content-type":"text/plain","content-length":"11","host":"localhost","METHOD":"POST","VERSION":"HTTP/1.1","URI":"/json/p","PATTERN":"/json","URL_SCHEME":"http","REMOTE_ADDR":"127.0.0.1"},11:hello world,',
  );
  const parsed = parseMessage(input);
  assert.equal(parsed.connectionId, "3");
  assert.equal(parsed.headers.METHOD, "POST");
  assert.equal(parsed.headers["content-length"], "11");
  assert.equal(latin1(parsed.body), "hello world");
});

Deno.test("parseMessage() parses the §1.6 notice examples", () => {
  const sender = SENDERS.json;
  const cases: [string, Mongrel2Headers, string][] = [
    [
      `${sender} 5 @* 17:{"METHOD":"JSON"},21:{"type":"disconnect"},`,
      { METHOD: "JSON" },
      "json",
    ],
    [
      `${sender} 5 @* 16:6:METHOD,4:JSON,}21:{"type":"disconnect"},`,
      { METHOD: "JSON" },
      "tnetstring",
    ],
    [
      `${sender} 2 @* 41:{"METHOD":"JSON","DOWNLOAD_CREDITS":"40"},18:{"type":"credits"},`,
      { METHOD: "JSON", DOWNLOAD_CREDITS: "40" },
      "json",
    ],
    [
      `${sender} 1 @* 41:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,}18:{"type":"credits"},`,
      { METHOD: "JSON", DOWNLOAD_CREDITS: "78" },
      "tnetstring",
    ],
  ];
  for (const [text, headers, format] of cases) {
    const parsed = parseMessage(bytes(text));
    assert.equal(parsed.path, "@*");
    assert.deepEqual(parsed.headers, headers);
    assert.equal(parsed.headerFormat, format);
  }
  assert.deepEqual(parseNotice(parseMessage(bytes(cases[2][0]))), {
    type: "credits",
    credits: 40,
  });
  assert.deepEqual(parseNotice(parseMessage(bytes(cases[3][0]))), {
    type: "credits",
    credits: 78,
  });
  assert.deepEqual(parseNotice(parseMessage(bytes(cases[1][0]))), {
    type: "disconnect",
  });
});

Deno.test("parseMessage() parses the §1.11 upload-stream continuation headers", () => {
  const parsed = parseMessage(
    bytes('abc 2 /json/stream 24:{"UPLOAD_STREAM":"3000"},4:abcd,'),
  );
  assert.deepEqual(parsed.headers, { UPLOAD_STREAM: "3000" });
  assert.equal(latin1(parsed.body), "abcd");
  assert.equal(firstHeader(parsed.headers, "METHOD"), undefined);
});

// --- malformed input -----------------------------------------------------

for (const mode of MODES) {
  Deno.test(`parseMessage() throws ProtocolError for every truncation of the ${mode} fixtures`, () => {
    for (const name of FIXTURE_NAMES) {
      const input = fixture(mode, name);
      for (let length = 0; length < input.length; length++) {
        const prefix = input.slice(0, length);
        assertProtocolError(() => parseMessage(prefix), undefined, prefix);
      }
    }
  });
}

Deno.test("parseMessage() throws ProtocolError for an empty input", () => {
  assertProtocolError(() => parseMessage(new Uint8Array(0)), /sender/);
});

Deno.test("parseMessage() throws ProtocolError when the header length is wrong", () => {
  for (const mode of MODES) {
    const text = latin1(fixture(mode, "get_query"));
    const length = Number(text.match(/ (\d+):/)![1]);
    for (const wrong of [length - 1, length + 1, length + 2, 0]) {
      const input = bytes(text.replace(` ${length}:`, ` ${wrong}:`));
      assertProtocolError(() => parseMessage(input), undefined, input);
    }
  }
});

Deno.test("parseMessage() throws ProtocolError when the body length is wrong", () => {
  for (const mode of MODES) {
    const text = latin1(fixture(mode, "post_inline"));
    assert.ok(text.endsWith("11:hello world,"));
    for (const wrong of ["10", "12", "0", "1"]) {
      const input = bytes(
        text.replace(/11:hello world,$/, `${wrong}:hello world,`),
      );
      assertProtocolError(() => parseMessage(input), undefined, input);
    }
    const empty = latin1(fixture(mode, "get_query"));
    for (const wrong of ["1:,", "2:,"]) {
      const input = bytes(empty.replace(/0:,$/, wrong));
      assertProtocolError(() => parseMessage(input), undefined, input);
    }
  }
});

Deno.test("parseMessage() throws ProtocolError for a bad connection id", () => {
  const headers = '{"METHOD":"GET"}';
  const tail = ` /p ${headers.length}:${headers},0:,`;
  for (
    const id of [
      "x1",
      "1x",
      "",
      "-1",
      "+1",
      "1.5",
      "0x10",
      "１",
      "1234567890123456",
    ]
  ) {
    const input = new TextEncoder().encode(`abc ${id}${tail}`);
    assertProtocolError(
      () => parseMessage(input),
      /connection id is not a decimal number/,
      input,
    );
  }
});

Deno.test("parseMessage() throws ProtocolError when a space is missing", () => {
  const good = latin1(fixture("json", "get_query"));
  const sender = SENDERS.json;
  const cases = [
    good.replace(`${sender} `, sender), // sender and id run together
    good.replace(" 2 ", " 2"), // id and path run together
    good.replace(" /json/a%20b/c ", " /json/a%20b/c"), // path and headers
    good.replace(/ /g, ""), // no spaces at all
    " " + good, // empty sender
    good.slice(0, good.indexOf(" /json")), // sender and id only
  ];
  for (const text of cases) {
    const input = bytes(text);
    assertProtocolError(() => parseMessage(input), undefined, input);
  }
});

Deno.test("parseMessage() throws ProtocolError for an over-long sender", () => {
  const input = bytes(`${"a".repeat(129)} 1 /p 2:{},0:,`);
  assertProtocolError(() => parseMessage(input), /sender/, input);
  // 128 bytes is still a sender.
  assert.equal(
    parseMessage(bytes(`${"a".repeat(128)} 1 /p 2:{},0:,`)).sender.length,
    128,
  );
});

Deno.test("parseMessage() throws ProtocolError for bad tnetstring tags", () => {
  const good = latin1(fixture("tnet", "get_query"));
  const cases = [
    good.replace("127.0.0.1,}0:,", "127.0.0.1,]0:,"), // headers as a list
    good.replace("127.0.0.1,}0:,", "127.0.0.1,#0:,"), // headers as a number
    good.replace("127.0.0.1,}0:,", "127.0.0.1,x0:,"), // unknown tag
    good.replace(/0:,$/, "0:}"), // body is not a netstring
    good.replace(/0:,$/, "0:~"),
    good.replace("6:METHOD,3:GET,", "6:METHOD,3:GET#"), // value is a number
    good.replace("6:METHOD,3:GET,", "6:METHOD,3:GET!"),
    good.replace("6:METHOD,3:GET,", "6:METHOD#3:GET,"), // key is not a string
    good.replace("6:METHOD,3:GET,", "6:METHOD,3:GET?"),
  ];
  for (const text of cases) {
    assert.notEqual(text, good);
    const input = bytes(text);
    assertProtocolError(() => parseMessage(input), undefined, input);
  }
});

Deno.test("parseMessage() throws ProtocolError for tnet header values that are not strings", () => {
  const cases = [
    "1:a,1:1#", // integer value
    "1:a,0:~", // null value
    "1:a,0:}", // dict value
    "1:a,8:1:1#1:b,]", // list holding a number
    "1:a,7:4:1:b,]]", // nested list
    "1:a,", // key without a value
    "1:a,3:abc,1:b,", // second key without a value
    "1:a,5:abc,", // value runs past the dict
  ];
  for (const items of cases) {
    const input = message(items, "}");
    assertProtocolError(
      () => parseMessage(input),
      /headers|tnetstring/,
      input,
    );
  }
});

Deno.test("parseMessage() throws ProtocolError for huge declared lengths", () => {
  const cases = [
    "abc 1 /p 99999999999:{},0:,",
    "abc 1 /p 9999999999:{},0:,",
    "abc 1 /p 999999999999999999999999:{},0:,",
    "abc 1 /p 00000000000000002:{},0:,",
    "abc 1 /p 2:{},99999999999:",
    "abc 1 /p 2:{},9999999999:x,",
    "abc 1 /p 2:{},4294967296:x,",
    "abc 1 /p 2:{},9007199254740993:x,",
    "abc 1 /p 16:99999999999:abc,}0:,",
    "abc 1 /p 16:1:a,9999999999:,}0:,",
  ];
  for (const text of cases) {
    const input = bytes(text);
    assertProtocolError(() => parseMessage(input), /tnetstring|headers/, input);
  }
});

Deno.test("parseMessage() throws ProtocolError for invalid JSON headers", () => {
  const cases = [
    "{",
    "}",
    '{"a":}',
    '{"a" "b"}',
    '{"a":"b",}',
    '{"a":"b"',
    '{"a":"b}',
    '{"a":"b\\x"}',
    '{"a":"\\u12"}',
    '{"a":"\\u12zz"}',
    "{'a':'b'}",
    '{"a":NaN}',
    '{"a":tru}',
    '{a:"b"}',
    '{"a":"b"} x',
    '{"a":"b"}{}',
    '{"a":01}',
    "",
    " ",
  ];
  for (const text of cases) {
    const input = message(text);
    assertProtocolError(() => parseMessage(input), /JSON/, input);
  }
});

Deno.test("parseMessage() throws ProtocolError for JSON headers of the wrong shape", () => {
  const cases = [
    '"a"',
    "[]",
    '["a"]',
    "null",
    "1",
    "true",
    '{"a":1}',
    '{"a":null}',
    '{"a":{}}',
    '{"a":["b",1]}',
    '{"a":[["b"]]}',
    '{"__proto__":{"polluted":"yes"}}',
  ];
  for (const text of cases) {
    const input = message(text);
    assertProtocolError(() => parseMessage(input), /headers/, input);
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("parseMessage() keeps a __proto__ header as an own key without polluting prototypes", () => {
  const cases = [
    message('{"__proto__":"x","METHOD":"GET"}'),
    message('{"__proto__":["x","y"],"METHOD":"GET"}'),
    message("9:__proto__,1:x,6:METHOD,3:GET,", "}"),
    message("9:__proto__,8:1:x,1:y,]6:METHOD,3:GET,", "}"),
  ];
  for (const input of cases) {
    const { headers } = parseMessage(input);
    assert.equal(Object.getPrototypeOf(headers), Object.prototype);
    assert.ok(Object.hasOwn(headers, "__proto__"));
    assert.deepEqual(Object.keys(headers).sort(), ["METHOD", "__proto__"]);
    assert.equal(headers.METHOD, "GET");
    assert.ok(["x", "x,y"].includes(String(firstHeader(headers, "__proto__"))));
  }
  const probe: Record<string, unknown> = {};
  assert.equal(probe.polluted, undefined);
  assert.equal(Object.keys(Object.prototype).length, 0);
});

Deno.test("parseMessage() throws ProtocolError for nesting past the depth limit", () => {
  for (const depth of [33, 1000, 100_000]) {
    const json = `{"a":${"[".repeat(depth)}${"]".repeat(depth)}}`;
    const input = message(json);
    assertProtocolError(() => parseMessage(input), /nesting|JSON/, input);
    const objects = `${'{"a":'.repeat(depth)}"x"${"}".repeat(depth)}`;
    const nested = message(objects);
    assertProtocolError(() => parseMessage(nested), /nesting|headers/, nested);
  }
});

Deno.test("parseMessage() throws ProtocolError for bytes after the body", () => {
  for (const mode of MODES) {
    const good = fixture(mode, "post_inline");
    for (const extra of ["x", ",", " ", "\n", "0:,", latin1(good)]) {
      const input = bytes(latin1(good) + extra);
      assertProtocolError(
        () => parseMessage(input),
        /bytes follow the body/,
        input,
      );
    }
  }
});

Deno.test("parseMessage() never throws anything but ProtocolError for byte flips", () => {
  // Each fixture with every byte position replaced by a few telling values.
  const replacements = [0x00, 0x20, 0x2c, 0x3a, 0x5d, 0x7d, 0x39, 0xff];
  for (const mode of MODES) {
    for (const name of ["get_query", "duplicate_headers", "credits"] as const) {
      const good = fixture(mode, name);
      for (let i = 0; i < good.length; i++) {
        for (const value of replacements) {
          if (good[i] === value) continue;
          const input = good.slice();
          input[i] = value;
          try {
            parseMessage(input);
          } catch (error) {
            assertProtocolError(
              () => {
                throw error;
              },
              undefined,
              input,
            );
          }
        }
      }
    }
  }
});
