import {
  classifyMessage,
  encodeFrame,
  OPCODE,
} from "../runtime/websocket/frame.ts";

const small = new Uint8Array(16).fill(0x61);
const large = new Uint8Array(64 * 1024).fill(0x62);
const text = new TextEncoder().encode("Hello, WebSocket");

Deno.bench("encodeFrame 16 B binary", { group: "encode" }, () => {
  encodeFrame(OPCODE.binary, small);
});

Deno.bench("encodeFrame 64 KiB binary", { group: "encode" }, () => {
  encodeFrame(OPCODE.binary, large);
});

Deno.bench("classifyMessage 16 B text", () => {
  classifyMessage("0x81", text, 1024 * 1024);
});
