/**
 * m2fetch serves Web Fetch handler modules, the ones `deno serve` runs,
 * behind the mongrel2 web server over ZeroMQ.
 *
 * Handlers import from here only what `deno serve` has no room for:
 *
 * ```ts
 * import { mongrel2Info } from "@m2fetch/m2fetch";
 *
 * // The module's `export default`:
 * const app = {
 *   fetch(request: Request, info: Deno.ServeHandlerInfo) {
 *     const m2 = mongrel2Info(request); // undefined under deno serve
 *     const { hostname } = info.remoteAddr as Deno.NetAddr;
 *     return new Response(`hello ${hostname} ${m2?.connectionId ?? ""}\n`);
 *   },
 * } satisfies Deno.ServeDefaultExport;
 * ```
 *
 * WebSockets: {@linkcode upgradeWebSocket} is `Deno.upgradeWebSocket` that
 * also works behind mongrel2 (where m2fetch serves, `Deno.upgradeWebSocket`
 * itself is routed to it), and {@linkcode broadcast} sends one message to
 * many sockets:
 *
 * ```ts
 * import { broadcast, upgradeWebSocket } from "@m2fetch/m2fetch";
 *
 * const room = new Set<WebSocket>();
 * // The module's `export default`:
 * const app = {
 *   fetch(request: Request) {
 *     const { socket, response } = upgradeWebSocket(request);
 *     socket.onopen = () => room.add(socket);
 *     socket.onclose = () => room.delete(socket);
 *     socket.onmessage = (event) => broadcast(room, event.data);
 *     return response;
 *   },
 * } satisfies Deno.ServeDefaultExport;
 * ```
 *
 * Nothing here opens a socket or needs a permission, so a handler importing
 * this module still runs under plain `deno serve`.
 *
 * Embedding the server (what `cli.ts` does); the ZeroMQ transport is a
 * separate entry point because it connects to mongrel2 (the example serves
 * until stopped, so it is not run as a test):
 *
 * ```ts ignore
 * import { serveMongrel2 } from "@m2fetch/m2fetch";
 * import { ZmqTransport } from "@m2fetch/m2fetch/transport";
 * const server = serveMongrel2({
 *   handler: () => new Response("hello\n"),
 *   transport: new ZmqTransport({
 *     sendSpec: "tcp://127.0.0.1:9997",
 *     recvSpec: "tcp://127.0.0.1:9996",
 *   }),
 * });
 * await server.finished;
 * ```
 *
 * @module
 */

export { mongrel2Info, type Mongrel2RequestInfo } from "./runtime/info.ts";
export {
  upgradeWebSocket,
  type UpgradeWebSocketOptions,
} from "./runtime/websocket/upgrade.ts";
export { broadcast } from "./runtime/websocket/broadcast.ts";
export type { Mongrel2WebSocket } from "./runtime/websocket/socket.ts";
export {
  type FetchHandler,
  type Mongrel2Server,
  serveMongrel2,
  type ServeMongrel2Options,
  type ServerSettings,
  type UploadOptions,
} from "./runtime/server.ts";
export type { UploadStore } from "./runtime/upload/policy.ts";
export type { Transport } from "./runtime/transport/transport.ts";
export {
  findHandler,
  type LoadedHandler,
  loadHandler,
} from "./runtime/handler.ts";
export {
  type AccessEntry,
  createLogger,
  type Logger,
  type LoggerOptions,
} from "./runtime/log.ts";
export type { Mongrel2Headers } from "./runtime/protocol/message.ts";
