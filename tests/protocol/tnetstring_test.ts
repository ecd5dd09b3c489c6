import assert from "node:assert/strict";
import {
  defineEntry,
  encodeTNetstring,
  parseTNetstring,
  readFrame,
  type TNetValue,
} from "../../runtime/protocol/tnetstring.ts";
import {
  ALL_BYTES,
  assertProtocolError,
  assertSentence,
  bytes,
  latin1,
} from "./helpers.ts";

function encoded(value: TNetValue | Uint8Array): string {
  return latin1(encodeTNetstring(value));
}

function decode(text: string): TNetValue {
  const input = bytes(text);
  const { value, end } = parseTNetstring(input);
  assert.equal(end, input.length, `end of ${JSON.stringify(text)}`);
  return value;
}

function roundTrip(value: TNetValue): TNetValue {
  return parseTNetstring(encodeTNetstring(value)).value;
}

// --- encodeTNetstring: exact bytes --------------------------------------

Deno.test("encodeTNetstring() writes each type with its tag", () => {
  const cases: [TNetValue, string][] = [
    ["", "0:,"],
    ["hello", "5:hello,"],
    [0, "1:0#"],
    [42, "2:42#"],
    [-7, "2:-7#"],
    [3.5, "3:3.5^"],
    [-0.25, "5:-0.25^"],
    [true, "4:true!"],
    [false, "5:false!"],
    [null, "0:~"],
    [[], "0:]"],
    [{}, "0:}"],
    [[1, "a"], "8:1:1#1:a,]"],
    [{ a: "b" }, "8:1:a,1:b,}"],
  ];
  for (const [value, text] of cases) {
    assert.equal(encoded(value), text, JSON.stringify(value));
  }
});

Deno.test("encodeTNetstring() writes a Uint8Array as a raw string payload", () => {
  assert.equal(encoded(bytes("\x00\xff,")), "3:\x00\xff,,");
  assert.equal(encoded(new Uint8Array(0)), "0:,");
  assert.equal(encodeTNetstring(ALL_BYTES).length, 256 + 5);
});

Deno.test("encodeTNetstring() counts bytes, not characters, in lengths", () => {
  // "é" as a byte string is one byte; as UTF-8 bytes it is two.
  assert.equal(encoded("\u00e9"), "1:\u00e9,");
  assert.equal(encoded("\u00c3\u00a9"), "2:\u00c3\u00a9,");
  assert.equal(encoded({ "\u00e9": ["\u00ff"] }), "11:1:\u00e9,4:1:\u00ff,]}");
});

Deno.test("encodeTNetstring() writes the §1.13 ctl bodies byte for byte", () => {
  assert.equal(
    encoded(["ctl", { "keep-alive": true }]),
    "31:3:ctl,21:10:keep-alive,4:true!}]",
  );
  assert.equal(
    encoded(["ctl", { credits: 65536 }]),
    "28:3:ctl,18:7:credits,5:65536#}]",
  );
  assert.equal(
    encoded(["ctl", { cancel: true }]),
    "26:3:ctl,16:6:cancel,4:true!}]",
  );
});

Deno.test("encodeTNetstring() writes the §1.11 upload credits and §1.13 sendfile bodies", () => {
  assert.equal(
    encoded(["ctl", { credits: 4000 }]),
    "27:3:ctl,17:7:credits,4:4000#}]",
  );
  // §1.11 prints this one as "28:3:ctl,18:…": six digits need 29 and 19.
  assert.equal(
    encoded(["ctl", { credits: 100000 }]),
    "29:3:ctl,19:7:credits,6:100000#}]",
  );
  assert.equal(
    encoded(["sendfile", "/static/big.iso"]),
    "30:8:sendfile,15:/static/big.iso,]",
  );
});

Deno.test("encodeTNetstring() writes dict entries in insertion order", () => {
  assert.equal(
    encoded({ b: 1, a: [true, null] }),
    "26:1:b,1:1#1:a,10:4:true!0:~]}",
  );
});

Deno.test("encodeTNetstring() writes integers outside the safe range as floats", () => {
  // An integer tag must hold digits the decoder can read back exactly.
  for (const value of [2 ** 53, 2 ** 60, -(2 ** 60), 1e21, Number.MAX_VALUE]) {
    const text = encoded(value);
    assert.ok(text.endsWith("^"), `${value} encodes as ${text}`);
    assert.equal(roundTrip(value), value);
  }
  assert.equal(encoded(Number.MAX_SAFE_INTEGER), "16:9007199254740991#");
  assert.equal(encoded(Number.MIN_SAFE_INTEGER), "17:-9007199254740991#");
});

// --- round trips ---------------------------------------------------------

Deno.test("encodeTNetstring() and parseTNetstring() round-trip every type", () => {
  const values: TNetValue[] = [
    "",
    "hello, world",
    "with : colon and } brace and ] bracket,",
    0,
    1,
    -1,
    123456789,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    0.5,
    -3.25,
    1e-7,
    6.02e23,
    Number.MIN_VALUE,
    true,
    false,
    null,
    [],
    {},
    ["a", 1, 2.5, true, false, null, [], {}],
    { s: "x", i: 7, f: 0.1, t: true, n: null, l: [1, [2, [3]]], d: { e: {} } },
  ];
  for (const value of values) {
    assert.deepEqual(roundTrip(value), value, JSON.stringify(value));
  }
});

Deno.test("encodeTNetstring() and parseTNetstring() round-trip non-UTF-8 byte strings", () => {
  const all = latin1(ALL_BYTES);
  assert.equal(roundTrip(all), all);
  assert.equal(
    roundTrip("latin1[\u00e9] utf8[\u00c3\u00a9] bad[\u00ff\u00fe]"),
    "latin1[\u00e9] utf8[\u00c3\u00a9] bad[\u00ff\u00fe]",
  );
  assert.deepEqual(roundTrip({ [all]: [all, "\x00"] }), {
    [all]: [all, "\x00"],
  });
  // Raw bytes come back as the byte string of the same bytes.
  assert.equal(parseTNetstring(encodeTNetstring(ALL_BYTES)).value, all);
});

Deno.test("encodeTNetstring() and parseTNetstring() round-trip nested lists and dicts", () => {
  let list: TNetValue = "leaf";
  let dict: TNetValue = "leaf";
  for (let i = 0; i < 32; i++) {
    list = [list, i];
    dict = { [`k${i}`]: dict, n: i };
  }
  assert.deepEqual(roundTrip(list), list);
  assert.deepEqual(roundTrip(dict), dict);
  assert.deepEqual(roundTrip([[[], {}], { a: [{ b: [] }] }]), [[[], {}], {
    a: [{ b: [] }],
  }]);
});

// --- parseTNetstring -----------------------------------------------------

Deno.test("parseTNetstring() decodes each type", () => {
  assert.equal(decode("5:hello,"), "hello");
  assert.equal(decode("0:,"), "");
  assert.equal(decode("2:42#"), 42);
  assert.equal(decode("2:-7#"), -7);
  assert.equal(decode("3:3.5^"), 3.5);
  assert.equal(decode("4:true!"), true);
  assert.equal(decode("5:false!"), false);
  assert.equal(decode("0:~"), null);
  assert.deepEqual(decode("0:]"), []);
  assert.deepEqual(decode("0:}"), {});
  assert.deepEqual(decode("12:3:one,3:two,]"), ["one", "two"]);
  assert.deepEqual(
    decode("31:3:ctl,21:10:keep-alive,4:true!}]"),
    ["ctl", { "keep-alive": true }],
  );
  assert.deepEqual(decode("28:3:ctl,18:7:credits,5:65536#}]"), [
    "ctl",
    { credits: 65536 },
  ]);
  assert.deepEqual(decode("26:3:ctl,16:6:cancel,4:true!}]"), [
    "ctl",
    { cancel: true },
  ]);
});

Deno.test("parseTNetstring() starts at an offset and returns the end", () => {
  const input = bytes("xx5:hello,2:42#rest");
  const first = parseTNetstring(input, 2);
  assert.deepEqual(first, { value: "hello", end: 10 });
  const second = parseTNetstring(input, first.end);
  assert.deepEqual(second, { value: 42, end: 15 });
});

Deno.test("parseTNetstring() keeps a __proto__ key as an own entry", () => {
  const value = decode("23:9:__proto__,8:1:x,1:y,}}") as Record<
    string,
    TNetValue
  >;
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  assert.deepEqual(Object.keys(value), ["__proto__"]);
  assert.equal(Object.hasOwn(value, "__proto__"), true);
  assert.deepEqual(
    Object.getOwnPropertyDescriptor(value, "__proto__")?.value,
    { x: "y" },
  );
  assert.equal(({} as Record<string, unknown>).x, undefined);
});

Deno.test("parseTNetstring() lets a later duplicate key win", () => {
  assert.deepEqual(decode("16:1:a,1:1#1:a,1:2#}"), { a: 2 });
});

Deno.test("parseTNetstring() throws ProtocolError for malformed input", () => {
  const cases: [string, RegExp][] = [
    ["", /no ':'/],
    ["5", /no ':'/],
    ["5hello,", /no ':'/],
    [":,", /not a decimal/],
    ["-1:,", /not a decimal/],
    ["+1:a,", /not a decimal/],
    ["x:a,", /not a decimal/],
    [" 1:a,", /not a decimal/],
    ["5:hi,", /past the end/],
    ["5:hello", /past the end/],
    ["2:hi?", /unknown type tag 0x3f/],
    ["2:hi\x00", /unknown type tag 0x00/],
    ["3:abc#", /integer/],
    ["0:#", /integer/],
    ["3:1.5#", /integer/],
    ["2:ab^", /float/],
    ["0:^", /float/],
    ["8:Infinity^", /float/],
    ["3:NaN^", /float/],
    ["3:yes!", /boolean/],
    ["4:True!", /boolean/],
    ["1:x~", /null/],
    ["4:true]", /tnetstring/],
    ["5:1:a,]", /past the list|past the end/],
    // An item or value that ends on its container's own tag.
    ["2:0:]", /an item runs past the list/],
    ["6:1:a,0:}", /a value runs past the dict/],
    ["8:1:1#1:a,}", /key is not a string/],
    ["4:1:a,}", /key|tnetstring/],
    ["3:1:a}", /key is not a string/],
    ["10:1:a,4:abc,},", /tnetstring/],
    ["99999999999:", /no ':'/],
    ["9999999999:x,", /past the end/],
    ["00000000000000001:x,", /no ':'/],
  ];
  for (const [text, pattern] of cases) {
    const input = bytes(text);
    assertProtocolError(() => parseTNetstring(input), pattern, input);
  }
});

Deno.test("parseTNetstring() rejects integers it cannot hold exactly", () => {
  assert.equal(decode("16:9007199254740991#"), Number.MAX_SAFE_INTEGER);
  assert.equal(decode("17:-9007199254740991#"), Number.MIN_SAFE_INTEGER);
  for (const text of ["16:9007199254740993#", "16:9999999999999999#"]) {
    const input = bytes(text);
    assertProtocolError(() => parseTNetstring(input), /integer/, input);
  }
  assertProtocolError(() => parseTNetstring(bytes("19:1152921504606846976#")));
});

Deno.test("parseTNetstring() throws ProtocolError past 32 levels of nesting", () => {
  function nested(depth: number, open: (inner: string) => string): string {
    let text = "0:~";
    for (let i = 0; i < depth; i++) text = open(text);
    return text;
  }
  const list = (inner: string) => `${inner.length}:${inner}]`;
  const dict = (inner: string) => `${inner.length + 4}:1:k,${inner}}`;
  // The outermost value is level 0; a value 32 levels below it parses.
  assert.doesNotThrow(() => decode(nested(32, list)));
  assert.doesNotThrow(() => decode(nested(32, dict)));
  for (const depth of [33, 100, 5000]) {
    for (const open of [list, dict]) {
      const input = bytes(nested(depth, open));
      assertProtocolError(() => parseTNetstring(input), /nesting/, input);
    }
  }
});

Deno.test("parseTNetstring() never throws anything but ProtocolError for a truncated value", () => {
  const full = encodeTNetstring([
    "ctl",
    { credits: 65536, "keep-alive": true, x: null, y: 1.5, z: [false] },
  ]);
  for (let length = 0; length < full.length; length++) {
    const prefix = full.slice(0, length);
    assertProtocolError(() => parseTNetstring(prefix), undefined, prefix);
  }
});

// --- readFrame and defineEntry -------------------------------------------

Deno.test("readFrame() returns the payload bounds and tag", () => {
  assert.deepEqual(readFrame(bytes("2:hi,"), 0), {
    start: 2,
    end: 4,
    tag: 0x2c,
  });
  assert.deepEqual(readFrame(bytes("ab10:0123456789}"), 2), {
    start: 5,
    end: 15,
    tag: 0x7d,
  });
  assertProtocolError(() => readFrame(bytes("2:hi,"), 5));
});

Deno.test("defineEntry() sets __proto__ as an own, enumerable key", () => {
  const dict: Record<string, TNetValue> = {};
  defineEntry(dict, "__proto__", "x");
  defineEntry(dict, "a", 1);
  assert.equal(Object.getPrototypeOf(dict), Object.prototype);
  assert.deepEqual(Object.entries(dict), [["__proto__", "x"], ["a", 1]]);
});

// --- encodeTNetstring errors ---------------------------------------------

Deno.test("encodeTNetstring() throws RangeError for characters above U+00FF", () => {
  for (
    const value of ["\u0100", "caf\u00e9 \u20ac", { "\u20ac": 1 }, [
      "ok",
      "\u{1f600}",
    ]]
  ) {
    assert.throws(
      () => encodeTNetstring(value as TNetValue),
      (error: unknown) => {
        assert.ok(error instanceof RangeError, String(error));
        assertSentence(error.message);
        assert.match(error.message, /above U\+00FF/);
        return true;
      },
    );
  }
});

Deno.test("encodeTNetstring() throws RangeError for non-finite numbers", () => {
  for (const value of [NaN, Infinity, -Infinity, [1, NaN], { a: Infinity }]) {
    assert.throws(
      () => encodeTNetstring(value as TNetValue),
      (error: unknown) => {
        assert.ok(error instanceof RangeError, String(error));
        assertSentence(error.message);
        assert.match(error.message, /not finite/);
        return true;
      },
    );
  }
});

Deno.test("encodeTNetstring() throws TypeError for values a tnetstring cannot hold", () => {
  for (const value of [undefined, 1n, Symbol("s"), () => 1, [undefined]]) {
    assert.throws(
      () => encodeTNetstring(value as unknown as TNetValue),
      (error: unknown) => {
        assert.ok(error instanceof TypeError, String(error));
        assertSentence(error.message);
        return true;
      },
    );
  }
});
