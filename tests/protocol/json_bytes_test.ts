import assert from "node:assert/strict";
import { parseJsonBytes } from "../../runtime/protocol/json_bytes.ts";
import { ALL_BYTES, assertProtocolError, bytes, latin1 } from "./helpers.ts";

function parse(text: string): unknown {
  return parseJsonBytes(bytes(text));
}

Deno.test("parseJsonBytes() parses every JSON value type", () => {
  assert.deepEqual(parse("{}"), {});
  assert.deepEqual(parse("[]"), []);
  assert.equal(parse('""'), "");
  assert.equal(parse('"abc"'), "abc");
  assert.equal(parse("true"), true);
  assert.equal(parse("false"), false);
  assert.equal(parse("null"), null);
  assert.equal(parse("0"), 0);
  assert.equal(parse("-0"), -0);
  assert.equal(parse("42"), 42);
  assert.equal(parse("-1.5"), -1.5);
  assert.equal(parse("1.5e3"), 1500);
  assert.equal(parse("1E-2"), 0.01);
  assert.equal(parse("2e+2"), 200);
  assert.deepEqual(parse('{"a":[1,"b",true,false,null,{},[]],"c":{"d":"e"}}'), {
    a: [1, "b", true, false, null, {}, []],
    c: { d: "e" },
  });
});

Deno.test("parseJsonBytes() agrees with JSON.parse on valid ASCII JSON", () => {
  const texts = [
    ' { "a" : [ 1 , 2 ] , "b" : { } } ',
    '\t\r\n["x",\n"y"]\n',
    '{"PATH":"/json/a%20b/c","x-dup":["one","two"],"METHOD":"GET"}',
    '"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9"',
    "[0.5,-0,1e300,123456789012,-9.75E-3]",
  ];
  for (const text of texts) {
    assert.deepEqual(parse(text), JSON.parse(text), text);
  }
});

Deno.test("parseJsonBytes() decodes escapes as JSON defines them", () => {
  assert.equal(
    parse('"\\"q\\" \\\\b\\\\ \\/ \\b\\f\\n\\r\\t"'),
    '"q" \\b\\ / \b\f\n\r\t',
  );
  assert.equal(parse('"\\u0041\\u00e9\\u00FF"'), "A\u00e9\u00ff");
  assert.equal(parse('"\\u20ac"'), "\u20ac");
  assert.equal(parse('"a\\u0000b"'), "a\u0000b");
  assert.equal(parse('"x\\"'.concat('"')), 'x"');
});

Deno.test("parseJsonBytes() keeps raw TAB and non-UTF-8 bytes as byte strings", () => {
  // mongrel2 copies these bytes raw; JSON.parse would reject the TAB.
  const input = bytes('{"x-raw":"tab[\t] latin1[\xe9] utf8[\xc3\xa9]"}');
  assert.throws(() => JSON.parse(new TextDecoder().decode(input)));
  assert.deepEqual(parseJsonBytes(input), {
    "x-raw": "tab[\t] latin1[\u00e9] utf8[\u00c3\u00a9]",
  });
});

Deno.test("parseJsonBytes() keeps every raw byte but quote and backslash inside a string", () => {
  const raw = Array.from(ALL_BYTES).filter((b) => b !== 0x22 && b !== 0x5c);
  const input = new Uint8Array([0x22, ...raw, 0x22]);
  assert.equal(parseJsonBytes(input), latin1(Uint8Array.from(raw)));
  // The slow path (after an escape) keeps them too.
  const escaped = new Uint8Array([0x22, 0x5c, 0x6e, ...raw, 0x22]);
  assert.equal(parseJsonBytes(escaped), "\n" + latin1(Uint8Array.from(raw)));
});

Deno.test("parseJsonBytes() parses only the given range", () => {
  const input = bytes('xx{"a":"b"}yy');
  assert.deepEqual(parseJsonBytes(input, 2, 11), { a: "b" });
  assertProtocolError(() => parseJsonBytes(input, 2, 10), /JSON/, input);
  assertProtocolError(() => parseJsonBytes(input, 2), /after the value/, input);
  // A string may not run past the range end.
  const cut = bytes('"abc"');
  assertProtocolError(() => parseJsonBytes(cut, 0, 4), /not terminated/, cut);
});

Deno.test("parseJsonBytes() lets a later duplicate key win", () => {
  assert.deepEqual(parse('{"a":"1","a":"2"}'), { a: "2" });
});

Deno.test("parseJsonBytes() keeps __proto__ as an own key without polluting prototypes", () => {
  const value = parse(
    '{"__proto__":{"polluted":"yes"},"a":{"__proto__":["x"]}}',
  ) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  assert.deepEqual(Object.keys(value), ["__proto__", "a"]);
  assert.deepEqual(
    Object.getOwnPropertyDescriptor(value, "__proto__")?.value,
    { polluted: "yes" },
  );
  const inner = value.a as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(inner), Object.prototype);
  assert.deepEqual(Object.getOwnPropertyDescriptor(inner, "__proto__")?.value, [
    "x",
  ]);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(value.polluted, undefined);
  // constructor and prototype are ordinary keys.
  const other = parse('{"constructor":{"prototype":{"p":1}}}') as Record<
    string,
    unknown
  >;
  assert.deepEqual(other.constructor, { prototype: { p: 1 } });
  assert.equal(({} as Record<string, unknown>).p, undefined);
});

Deno.test("parseJsonBytes() allows 32 levels of nesting", () => {
  const arrays = "[".repeat(32) + "]".repeat(32);
  assert.deepEqual(parse(arrays), JSON.parse(arrays));
  const objects = '{"a":'.repeat(32) + "1" + "}".repeat(32);
  assert.deepEqual(parse(objects), JSON.parse(objects));
});

Deno.test("parseJsonBytes() throws ProtocolError past 32 levels of nesting", () => {
  for (const depth of [33, 1000, 1_000_000]) {
    for (
      const text of [
        "[".repeat(depth) + "]".repeat(depth),
        '{"a":'.repeat(depth) + "1" + "}".repeat(depth),
        "[".repeat(depth), // unclosed: the depth limit must still come first
      ]
    ) {
      const input = bytes(text);
      assertProtocolError(() => parseJsonBytes(input), /nesting/, input);
    }
  }
});

Deno.test("parseJsonBytes() throws ProtocolError for invalid JSON", () => {
  const cases: [string, RegExp][] = [
    ["", /input ends/],
    ["   ", /input ends/],
    ["{", /key is not a string/],
    ["[", /input ends/],
    ["}", /unexpected byte/],
    ["]", /unexpected byte/],
    ['{"a"}', /expected ':'/],
    ['{"a":}', /unexpected byte/],
    ['{"a" "b"}', /expected ':'/],
    ['{"a":"b",}', /key is not a string/],
    ['{"a":"b" "c":"d"}', /expected ',' or '}'/],
    ["[1,]", /unexpected byte/],
    ["[1 2]", /expected ',' or '\]'/],
    ['{"a":"b"', /expected ',' or '}'/],
    ['"abc', /not terminated/],
    ['"abc\\', /not terminated/],
    ['"\\x"', /unknown escape/],
    ['"\\u12"', /bad \\u escape/],
    ['"\\u12zz"', /bad \\u escape/],
    ['"\\u', /bad \\u escape/],
    ["{'a':'b'}", /key is not a string/],
    ["{a:1}", /key is not a string/],
    ["{1:1}", /key is not a string/],
    ["NaN", /unexpected byte/],
    ["Infinity", /unexpected byte/],
    ["tru", /expected "true"/],
    ["True", /unexpected byte/],
    ["nul", /expected "null"/],
    ["falsey", /after the value/],
    ["01", /unexpected byte/],
    ["1.", /unexpected byte/],
    [".5", /unexpected byte/],
    ["+1", /unexpected byte/],
    ["-", /unexpected byte/],
    ["--1", /unexpected byte/],
    ["1e", /unexpected byte/],
    ["1e+", /unexpected byte/],
    ["0x10", /after the value/],
    ['{"a":"b"} x', /after the value/],
    ['{"a":"b"}{}', /after the value/],
    ["1 2", /after the value/],
    ["\x00", /unexpected byte/],
    ["\xef\xbb\xbf{}", /unexpected byte/],
  ];
  for (const [text, pattern] of cases) {
    const input = bytes(text);
    const error = assertProtocolError(
      () => parseJsonBytes(input),
      pattern,
      input,
    );
    assert.match(error.message, /^Cannot parse JSON: /, text);
  }
});

Deno.test("parseJsonBytes() reports the offset of the problem", () => {
  assert.equal(assertProtocolError(() => parse('{"a":}')).offset, 5);
  assert.equal(assertProtocolError(() => parse("[1,2 x]")).offset, 5);
  // The offset points at the unknown escape letter.
  assert.equal(assertProtocolError(() => parse('"\\q"')).offset, 2);
  assert.equal(assertProtocolError(() => parse("{} x")).offset, 3);
});

Deno.test("parseJsonBytes() throws only ProtocolError for every truncation", () => {
  const full = bytes(
    '{"a":[1,-2.5e3,true,false,null,"s\\u00e9\\n\t\xff"],"b":{"c":{}}}',
  );
  parseJsonBytes(full);
  for (let length = 0; length < full.length; length++) {
    const prefix = full.slice(0, length);
    assertProtocolError(() => parseJsonBytes(prefix), /JSON/, prefix);
  }
});
