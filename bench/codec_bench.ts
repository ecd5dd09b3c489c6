import { encodeResponseHead } from "../runtime/http/response.ts";
import { ResponseEncoder } from "../runtime/http/response_encoder.ts";
import { parseMessage } from "../runtime/protocol/message.ts";
import { parseNotice, readCreditsNotice } from "../runtime/protocol/notice.ts";
import { encodeReply } from "../runtime/protocol/reply.ts";

// tests/fixtures/{tnet,json}/get_query.bin and tnet/credits.bin, byte for
// byte (all ASCII), inlined so the bench needs no read permission.
const encoder = new TextEncoder();
const tnetGet = encoder.encode(
  "53f9f1d1-1116-4751-b6ff-4fbe3e43d142 14 /tnet/a%20b/c 285:11:REMOTE_ADDR,9:127.0.0.1,6:METHOD,3:GET,10:URL_SCHEME,4:http,7:PATTERN,5:/tnet,8:FRAGMENT,4:frag,5:QUERY,13:x=1&y=%22q%22,3:URI,27:/tnet/a%20b/c?x=1&y=%22q%22,7:VERSION,8:HTTP/1.1,4:PATH,13:/tnet/a%20b/c,4:host,9:localhost,16:DOWNLOAD_CREDITS,6:102400,15:x-forwarded-for,9:127.0.0.1,}0:,",
);
const jsonGet = encoder.encode(
  '34f9ceee-cd52-4b7f-b197-88bf2f0ec378 2 /json/a%20b/c 279:{"PATH":"/json/a%20b/c","x-forwarded-for":"127.0.0.1","DOWNLOAD_CREDITS":"102400","host":"localhost","METHOD":"GET","VERSION":"HTTP/1.1","URI":"/json/a%20b/c?x=1&y=%22q%22","QUERY":"x=1&y=%22q%22","FRAGMENT":"frag","PATTERN":"/json","URL_SCHEME":"http","REMOTE_ADDR":"127.0.0.1"},0:,',
);
const creditsBytes = encoder.encode(
  '53f9f1d1-1116-4751-b6ff-4fbe3e43d142 22 @* 41:16:DOWNLOAD_CREDITS,2:66,6:METHOD,4:JSON,}18:{"type":"credits"},',
);
const credits = parseMessage(creditsBytes);
const sender = "34f9ceee-cd52-4b7f-b197-88bf2f0ec378";
const smallResponse = encoder.encode(
  "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello",
);
const DATE = "Thu, 01 Jan 1970 00:00:00 GMT";
const context = {
  method: "GET",
  version: "HTTP/1.1",
  keepAlive: true,
  date: DATE,
};

Deno.bench("parseMessage tnet GET", { group: "parse", baseline: true }, () => {
  parseMessage(tnetGet);
});

Deno.bench("parseMessage JSON GET", { group: "parse" }, () => {
  parseMessage(jsonGet);
});

Deno.bench("parseNotice credits (after parseMessage)", () => {
  parseNotice(credits);
});

Deno.bench("credits notice, generic: parseMessage + parseNotice", {
  group: "credits",
  baseline: true,
}, () => {
  parseNotice(parseMessage(creditsBytes));
});

Deno.bench("credits notice, fast path: readCreditsNotice", {
  group: "credits",
}, () => {
  readCreditsNotice(creditsBytes);
});

Deno.bench("encodeReply small response", () => {
  encodeReply(sender, ["7"], smallResponse);
});

Deno.bench('encodeResponseHead new Response("hello")', () => {
  encodeResponseHead(new Response("hello"), { ...context, bodyLength: 5 });
});

const manyHeaders = new Headers();
for (let i = 0; i < 1000; i++) manyHeaders.append(`x-h${i}`, "v");

// Linear in the header count (Deno's Headers iterator is quadratic: about
// 70 ms for these 1,000 fields).
Deno.bench("encodeResponseHead with 1,000 headers", () => {
  encodeResponseHead(new Response("hello", { headers: manyHeaders }), {
    ...context,
    bodyLength: 5,
  });
});

Deno.bench('ResponseEncoder full run new Response("hello")', async () => {
  const encoder = new ResponseEncoder(new Response("hello"), context);
  while (await encoder.next() !== null) { /* drain */ }
});
