/**
 * `upgradeWebSocket()`: `Deno.upgradeWebSocket()` for requests that came
 * through mongrel2, and `Deno.upgradeWebSocket()` itself for every other
 * request, so a handler module runs unchanged under `deno serve`.
 *
 * `Deno.upgradeWebSocket()` cannot serve mongrel2's handshakes: its socket
 * opens only for requests that came from `Deno.serve`. Behind mongrel2 the
 * handshake arrives as a `WEBSOCKET_HANDSHAKE` message whose body is the
 * `Sec-WebSocket-Accept` value mongrel2 computed, and the handler side must
 * write the 101 itself. The server marks such requests
 * ({@linkcode markHandshake}), and the socket made here belongs to the
 * request's handshake: any 101 the handler returns for that request takes
 * it ({@linkcode acceptedSocket}), so middleware that rebuilds the response
 * (to add a header, say) loses nothing, as under `Deno.serve`.
 *
 * @module
 */

import { createWebSocket, type SocketControl } from "./socket.ts";
import { mongrel2Info } from "../info.ts";

/**
 * Options for {@linkcode upgradeWebSocket}: those of
 * `Deno.upgradeWebSocket()`, plus a message size limit.
 *
 * @example
 * ```ts
 * import type { UpgradeWebSocketOptions } from "@m2fetch/m2fetch";
 * const options: UpgradeWebSocketOptions = { protocol: "chat", maxMessageSize: 1 << 20 };
 * console.assert(options.protocol === "chat");
 * ```
 */
export interface UpgradeWebSocketOptions extends Deno.UpgradeWebSocketOptions {
  /**
   * Behind mongrel2: the largest message accepted from the client, in bytes
   * (default 64 MiB, Deno's own limit). A larger one closes the connection
   * with 1009.
   * mongrel2 buffers each whole message before passing it on and has no
   * limit of its own, so this bounds what reaches the handler, not what
   * mongrel2 holds.
   * Under `deno serve` this option is ignored (Deno applies its own limit).
   */
  maxMessageSize?: number;
}

/** A mongrel2 WebSocket handshake, as the server marks its request. */
export interface Handshake {
  /** The `Sec-WebSocket-Accept` value mongrel2 computed. */
  readonly acceptKey: string;
}

/** The default of {@linkcode UpgradeWebSocketOptions.maxMessageSize}. */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;

/** Deno's default `idleTimeout`, in seconds. */
const DEFAULT_IDLE_TIMEOUT = 30;

const handshakes = new WeakMap<Request, Handshake>();
/** The socket opened for each handshake. */
const sockets = new WeakMap<Handshake, SocketControl>();
/** Deno's own, for requests that did not come through mongrel2. */
const denoUpgradeWebSocket = Deno.upgradeWebSocket;

/**
 * Marks `request` as a mongrel2 WebSocket handshake (done by the server).
 *
 * @param request The request given to the handler.
 * @param acceptKey The body of the `WEBSOCKET_HANDSHAKE` message.
 * @returns The handshake, to compare with {@linkcode Upgrade.handshake}.
 *
 * @example
 * ```ts
 * import { markHandshake } from "./upgrade.ts";
 * const handshake = markHandshake(new Request("http://localhost/"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
 * console.assert(handshake.acceptKey.length === 28);
 * ```
 */
export function markHandshake(request: Request, acceptKey: string): Handshake {
  const handshake = { acceptKey };
  handshakes.set(request, handshake);
  return handshake;
}

/**
 * Returns the handshake mark of a request, if the server marked it.
 *
 * @param request A request given to the handler.
 * @returns The handshake, or `undefined`.
 *
 * @example
 * ```ts
 * import { handshakeOf, markHandshake } from "./upgrade.ts";
 * const request = new Request("http://localhost/");
 * markHandshake(request, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
 * console.assert(handshakeOf(request)?.acceptKey.length === 28);
 * ```
 */
export function handshakeOf(request: Request): Handshake | undefined {
  return handshakes.get(request);
}

/**
 * Opens the socket of a handshake and makes the 101 a handler returns for
 * it (Deno lets a `Response` have status 101 only with no body). Any 101
 * for the handshake then takes the socket ({@linkcode acceptedSocket}),
 * and goes out with its own headers ({@linkcode framesResponse}).
 *
 * @param handshake The handshake it answers.
 * @param control The socket's control; its frames become the body sent.
 * @param headers The 101's headers: those {@linkcode upgradeWebSocket}
 * gives it, or those a handler in a worker returned it with.
 * @returns The response.
 *
 * @example
 * ```ts
 * import { createWebSocket } from "./socket.ts";
 * import { markHandshake, upgradeResponse } from "./upgrade.ts";
 * const request = new Request("http://localhost/");
 * const handshake = markHandshake(request, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
 * const { control } = createWebSocket({ protocol: "", maxMessageSize: 1024, idleTimeout: 0 });
 * const response = upgradeResponse(handshake, control, {
 *   upgrade: "websocket",
 *   connection: "Upgrade",
 *   "sec-websocket-accept": handshake.acceptKey,
 * });
 * console.assert(response.status === 101);
 * console.assert(response.headers.get("sec-websocket-accept") === handshake.acceptKey);
 * ```
 */
export function upgradeResponse(
  handshake: Handshake,
  control: SocketControl,
  headers: HeadersInit,
): Response {
  sockets.set(handshake, control);
  return new Response(null, { status: 101, headers });
}

/**
 * The socket a handler's response switches to: `undefined` for any status
 * but 101, the socket {@linkcode upgradeWebSocket} opened for this
 * request's handshake for a 101.
 *
 * @param response What the handler returned.
 * @param handshake The request's handshake, if it was one.
 * @returns The socket's control, or `undefined`.
 * @throws {TypeError} For a 101 without a socket opened for this request.
 *
 * @example
 * ```ts
 * import { acceptedSocket } from "./upgrade.ts";
 * console.assert(acceptedSocket(new Response("hi"), undefined) === undefined);
 * ```
 */
export function acceptedSocket(
  response: Response,
  handshake: Handshake | undefined,
): SocketControl | undefined {
  if (response.status !== 101) return undefined;
  const control = handshake === undefined ? undefined : sockets.get(handshake);
  if (control === undefined) {
    throw new TypeError(
      "Cannot switch protocols: a 101 response must follow upgradeWebSocket() (m2fetch's, or Deno.upgradeWebSocket(), which m2fetch routes to it) called with this request",
    );
  }
  return control;
}

/**
 * The response to send for a handler's 101: its head, with the socket's
 * frames as the body.
 *
 * @param response The handler's 101.
 * @param control The socket it switches to.
 * @returns The response to encode.
 *
 * @example
 * ```ts
 * import { createWebSocket } from "./socket.ts";
 * import { framesResponse, markHandshake, upgradeResponse } from "./upgrade.ts";
 * const request = new Request("http://localhost/");
 * const handshake = markHandshake(request, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
 * const { control } = createWebSocket({ protocol: "", maxMessageSize: 1024, idleTimeout: 0 });
 * const response = upgradeResponse(handshake, control, { upgrade: "websocket" });
 * const sent = framesResponse(response, control);
 * console.assert(sent.status === 101 && sent.body === control.frames);
 * ```
 */
export function framesResponse(
  response: Response,
  control: SocketControl,
): Response {
  const framed = new Response(control.frames, { headers: response.headers });
  // Fetch cannot make a 101 with a body; the encoder reads the status only.
  Object.defineProperty(framed, "status", { value: 101 });
  return framed;
}

/** Whether a comma-separated header holds `token`, ignoring case. */
function hasToken(value: string | null, token: string): boolean {
  return value !== null &&
    value.split(",").some((item) => item.trim().toLowerCase() === token);
}

/**
 * Upgrades a request to a WebSocket, like `Deno.upgradeWebSocket()`: returns
 * the socket and the response the handler must return.
 *
 * Behind mongrel2 the socket is a `Mongrel2WebSocket`; it opens
 * once the 101 has been handed to mongrel2, after the handler returned.
 * Anywhere else (`deno serve`, `Deno.serve`) this is
 * `Deno.upgradeWebSocket()`.
 *
 * @param request The handshake request the handler received.
 * @param options `protocol` (must be one the client offered), `idleTimeout`
 * (seconds; default 30, 0 disables) and `maxMessageSize`.
 * @returns The socket and the upgrade response.
 * @throws {TypeError} When the request is not a WebSocket handshake, was
 * already upgraded, or the client did not offer `options.protocol`.
 * @throws {RangeError} When `maxMessageSize` or `idleTimeout` is negative or
 * not a number.
 *
 * @example Echo server
 * ```ts
 * import { upgradeWebSocket } from "@m2fetch/m2fetch";
 * export default {
 *   fetch(request: Request): Response {
 *     if (request.headers.get("upgrade") !== "websocket") {
 *       return new Response("WebSocket only", { status: 426 });
 *     }
 *     const { socket, response } = upgradeWebSocket(request);
 *     socket.onmessage = (event) => socket.send(event.data);
 *     return response;
 *   },
 * } satisfies Deno.ServeDefaultExport;
 * ```
 */
export function upgradeWebSocket(
  request: Request,
  options: UpgradeWebSocketOptions = {},
): Deno.WebSocketUpgrade {
  const handshake = handshakes.get(request);
  if (handshake === undefined) {
    if (mongrel2Info(request) !== undefined) {
      // Deno's would "succeed" on a request no connection can switch.
      throw new TypeError(
        "Cannot upgrade to a WebSocket: mongrel2 passed this request as a plain request, not a WebSocket handshake (it takes one only as a connection's first request, with Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Key and Sec-WebSocket-Version: 13)",
      );
    }
    return denoUpgradeWebSocket(request, options);
  }
  if (sockets.has(handshake)) {
    // Deno's throws "Already upgraded" too; a second socket would orphan
    // the first, which never opens.
    throw new TypeError(
      "Cannot upgrade to a WebSocket: this request was already upgraded (call upgradeWebSocket() once per request and keep its socket)",
    );
  }
  const headers = request.headers;
  if (!hasToken(headers.get("upgrade"), "websocket")) {
    throw new TypeError(
      "Cannot upgrade to a WebSocket: the 'upgrade' header must contain 'websocket'",
    );
  }
  if (!hasToken(headers.get("connection"), "upgrade")) {
    throw new TypeError(
      "Cannot upgrade to a WebSocket: the 'connection' header must contain 'Upgrade'",
    );
  }
  if (headers.get("sec-websocket-key") === null) {
    throw new TypeError(
      "Cannot upgrade to a WebSocket: the 'sec-websocket-key' header must be set",
    );
  }
  const protocol = options.protocol ?? "";
  // Split at ", " like Deno, so both accept and refuse the same lists.
  const offered = (headers.get("sec-websocket-protocol") ?? "").split(", ");
  if (protocol !== "" && !offered.includes(protocol)) {
    throw new TypeError(
      `Cannot upgrade to a WebSocket with protocol '${protocol}': the client offered only '${
        offered.join(", ")
      }'`,
    );
  }
  const maxMessageSize = checkLimit(
    "maxMessageSize",
    options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE,
  );
  const idleTimeout = checkLimit(
    "idleTimeout",
    options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
  );
  const { socket, control } = createWebSocket({
    protocol,
    maxMessageSize,
    idleTimeout,
  });
  const response = upgradeResponse(handshake, control, {
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-accept": handshake.acceptKey,
    ...(protocol === "" ? {} : { "sec-websocket-protocol": protocol }),
  });
  return { socket, response };
}

function checkLimit(name: string, value: number): number {
  if (!(value >= 0)) {
    throw new RangeError(
      `Cannot upgrade to a WebSocket with ${name} ${value}: it must be a non-negative number`,
    );
  }
  return value;
}

/**
 * Makes `Deno.upgradeWebSocket()` itself serve mongrel2's handshakes (it is
 * {@linkcode upgradeWebSocket} from then on, which passes every other
 * request to Deno's own), so that handlers and frameworks calling it, such
 * as Hono's `upgradeWebSocket` from `hono/deno`, run unchanged behind
 * mongrel2. m2fetch does this wherever it serves; it is idempotent.
 *
 * @example Usage
 * ```ts
 * import { routeDenoUpgradeWebSocket } from "./upgrade.ts";
 * routeDenoUpgradeWebSocket();
 * ```
 */
export function routeDenoUpgradeWebSocket(): void {
  Object.defineProperty(Deno, "upgradeWebSocket", {
    value: upgradeWebSocket,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}
