import assert from "node:assert/strict";
import { parseMessage } from "../../runtime/protocol/message.ts";
import {
  parseNotice,
  readCreditsNotice,
} from "../../runtime/protocol/notice.ts";
import {
  assertProtocolError,
  bytes,
  fixture,
  message,
  MODES,
  SENDERS,
} from "./helpers.ts";

function notice(headers: string, body: string, path = "@*", tag = ",") {
  return parseNotice(
    parseMessage(
      bytes(
        `abc 9 ${path} ${headers.length}:${headers}${tag}${body.length}:${body},`,
      ),
    ),
  );
}

Deno.test("parseNotice() reads a disconnect notice in both modes", () => {
  for (const mode of MODES) {
    assert.deepEqual(parseNotice(parseMessage(fixture(mode, "disconnect"))), {
      type: "disconnect",
    });
  }
});

Deno.test("parseNotice() reads the credits value as a number in both modes", () => {
  for (const mode of MODES) {
    const result = parseNotice(parseMessage(fixture(mode, "credits")));
    assert.deepEqual(result, { type: "credits", credits: 66 });
  }
});

Deno.test("parseNotice() reads the §1.6 examples", () => {
  const sender = SENDERS.tnet;
  assert.deepEqual(
    parseNotice(parseMessage(bytes(
      `${sender} 4 @* 16:6:METHOD,4:JSON,}21:{"type":"disconnect"},`,
    ))),
    { type: "disconnect" },
  );
  assert.deepEqual(
    parseNotice(parseMessage(bytes(
      `${sender} 1 @* 41:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,}18:{"type":"credits"},`,
    ))),
    { type: "credits", credits: 78 },
  );
});

Deno.test("parseNotice() reads credits from 0 to twelve digits", () => {
  for (const credits of [0, 1, 102400, 999_999_999_999]) {
    assert.deepEqual(
      notice(
        `{"METHOD":"JSON","DOWNLOAD_CREDITS":"${credits}"}`,
        '{"type":"credits"}',
      ),
      { type: "credits", credits },
    );
  }
});

Deno.test("parseNotice() tolerates whitespace and extra keys in the body", () => {
  assert.deepEqual(
    notice('{"METHOD":"JSON"}', ' { "type" : "disconnect", "x": 1 } '),
    { type: "disconnect" },
  );
});

Deno.test("parseNotice() returns null for messages that are not notices", () => {
  // A client JSON-socket message carries METHOD JSON but never the @* path.
  assert.equal(
    notice('{"METHOD":"JSON"}', '{"type":"disconnect"}', "/chat"),
    null,
  );
  assert.equal(notice('{"METHOD":"GET"}', '{"type":"disconnect"}'), null);
  assert.equal(notice("{}", '{"type":"disconnect"}'), null);
  assert.equal(notice('{"method":"JSON"}', '{"type":"disconnect"}'), null);
  for (const mode of MODES) {
    assert.equal(parseNotice(parseMessage(fixture(mode, "get_query"))), null);
    assert.equal(
      parseNotice(parseMessage(fixture(mode, "websocket_text"))),
      null,
    );
  }
});

Deno.test("parseNotice() does not parse the body of a message that is not a notice", () => {
  assert.equal(
    parseNotice(parseMessage(message('{"METHOD":"GET"}', ",", "{{{"))),
    null,
  );
});

Deno.test("parseNotice() throws ProtocolError for an unknown notice type", () => {
  const cases = [
    '{"type":"bogus"}',
    '{"type":"DISCONNECT"}',
    '{"type":1}',
    "{}",
    "[]",
    '"disconnect"',
    "null",
    '{"__proto__":{"type":"disconnect"}}',
  ];
  for (const body of cases) {
    assertProtocolError(
      () => notice('{"METHOD":"JSON"}', body),
      /^Cannot parse notice: unknown type/,
    );
  }
});

Deno.test("parseNotice() throws ProtocolError for a body that is not JSON", () => {
  for (const body of ["", "{", "disconnect", '{"type":"disconnect"} x']) {
    assertProtocolError(
      () => notice('{"METHOD":"JSON"}', body),
      /^Cannot parse JSON/,
    );
  }
});

Deno.test("parseNotice() throws ProtocolError for a missing or bad DOWNLOAD_CREDITS", () => {
  const values = ["", "abc", "-1", "1.5", " 1", "0x10", "1e3", "9999999999999"];
  for (const value of values) {
    assertProtocolError(
      () =>
        notice(
          `{"METHOD":"JSON","DOWNLOAD_CREDITS":"${value}"}`,
          '{"type":"credits"}',
        ),
      /^Cannot parse credits notice: DOWNLOAD_CREDITS ".*" is not a byte count$/,
    );
  }
  assertProtocolError(
    () => notice('{"METHOD":"JSON"}', '{"type":"credits"}'),
    /DOWNLOAD_CREDITS "" is not a byte count/,
  );
});

Deno.test("readCreditsNotice() reads mongrel2's credits notices and nothing else", () => {
  for (const mode of MODES) {
    const bytes = fixture(mode, "credits");
    const message = parseMessage(bytes);
    assert.deepEqual(readCreditsNotice(bytes), {
      sender: SENDERS[mode],
      connectionId: message.connectionId,
      credits: 66,
    });
    assert.equal(readCreditsNotice(fixture(mode, "disconnect")), null);
    assert.equal(readCreditsNotice(fixture(mode, "get_query")), null);
  }
  // Valid for the generic parsers, but not mongrel2's shape: left to them.
  const reordered = bytes(
    'abc 9 @* 41:6:METHOD,4:JSON,16:DOWNLOAD_CREDITS,2:78,}18:{"type":"credits"},',
  );
  assert.equal(readCreditsNotice(reordered), null);
  assert.deepEqual(parseNotice(parseMessage(reordered)), {
    type: "credits",
    credits: 78,
  });
  for (
    const broken of [
      'abc 9 @* 41:16:DOWNLOAD_CREDITS,2:7x,6:METHOD,4:JSON,}18:{"type":"credits"},',
      'abc 9 @* 41:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,}18:{"type":"credits"},,',
      'abc 9 @* 40:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,}18:{"type":"credits"},',
      'a_c 9 @* 41:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,}18:{"type":"credits"},',
      'abc 9 @* 41:{"METHOD":"JSON","DOWNLOAD_CREDITS":""},18:{"type":"credits"},',
      'abc 9 /@* 41:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,}18:{"type":"credits"},',
      // Bytes after METHOD inside the dict, which the generic parser refuses.
      'abc 9 @* 43:16:DOWNLOAD_CREDITS,2:78,6:METHOD,4:JSON,xx}18:{"type":"credits"},',
    ]
  ) {
    assert.equal(readCreditsNotice(bytes(broken)), null, broken);
  }
});
