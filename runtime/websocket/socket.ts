/**
 * The server side of a WebSocket behind mongrel2: {@linkcode Mongrel2WebSocket},
 * the `WebSocket`-shaped object `upgradeWebSocket()` hands to handlers, and
 * the {@linkcode SocketControl} through which the server and `broadcast()`
 * drive it.
 *
 * Outgoing frames leave as the body stream of the upgrade response, so the
 * connection's writer sends them within mongrel2's download credits like any
 * other body. That stream is pulled one frame at a time (see
 * `ResponseEncoder`), which makes each `pull()` a receipt: everything pulled
 * before has been handed to mongrel2. The first pull therefore means the 101
 * is out (`open`), and `bufferedAmount` drops when a frame is handed over,
 * not when it is queued for the writer.
 *
 * @module
 */

import {
  classifyMessage,
  encodeCloseFrame,
  encodeFrame,
  OPCODE,
  WebSocketProtocolError,
} from "./frame.ts";
import { Fifo } from "../fifo.ts";

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/**
 * How long a close started by the server waits for the client's close frame
 * before the connection is dropped (ms), once its own close frame went out.
 */
const CLOSE_TIMEOUT_MS = 5000;

/** Close reasons sent when the client breaks the protocol, by close code. */
const FAILURE_REASONS: Record<number, string> = {
  1002: "Protocol error",
  1007: "Invalid payload data",
  1009: "Message too big",
};

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

/**
 * Where an accepted socket's connection lives, as the server describes it.
 * `broadcast()` uses it to write one multi-id reply to many sockets.
 *
 * @example
 * ```ts
 * import type { SocketRoute } from "./socket.ts";
 * const sent: Uint8Array[] = [];
 * const route: SocketRoute = {
 *   sender: "abc",
 *   id: "7",
 *   send: (reply) => void sent.push(reply),
 *   takeCredits: () => true,
 * };
 * console.assert(route.id === "7");
 * ```
 */
export interface SocketRoute {
  /** The handler `send_ident` of the connection. */
  readonly sender: string;
  /** mongrel2's connection id. */
  readonly id: string;
  /**
   * Sends a reply through the connection's transport: one function for
   * every socket of a transport, so that `broadcast()` can group sockets
   * by it into shared replies.
   */
  readonly send: (reply: Uint8Array) => void;
  /**
   * Takes download credits for `bytes` written to the connection by a reply
   * of someone else's (a shared broadcast reply).
   *
   * @returns False when the credit window cannot take them now.
   */
  takeCredits(bytes: number): boolean;
  /**
   * Called just before `close` fires: the request is over, so its
   * `request.signal` aborts first, as under `deno serve`.
   */
  closing?(): void;
}

/**
 * What the server and `broadcast()` do with a socket; not part of the public
 * API.
 *
 * @example
 * ```ts
 * import { createWebSocket } from "./socket.ts";
 * const { control } = createWebSocket({ protocol: "", maxMessageSize: 1024, idleTimeout: 0 });
 * control.receive("0x81", new TextEncoder().encode("hi"));
 * ```
 */
export interface SocketControl {
  /** The frames to write after the 101: the upgrade response's body. */
  readonly frames: ReadableStream<Uint8Array>;
  /**
   * Binds the socket to its connection once the server has taken the
   * upgrade response.
   *
   * @param route The connection.
   */
  attach(route: SocketRoute): void;
  /**
   * Handles one `WEBSOCKET` message from mongrel2.
   *
   * @param flags The `FLAGS` header, e.g. `"0x81"`.
   * @param payload The unmasked payload.
   * @returns A promise while the socket's handler is too far behind (a
   * socket in a worker): take no more messages from mongrel2 until it
   * settles, as a handler busy on the server's own thread holds them.
   */
  receive(flags: string, payload: Uint8Array): Promise<void> | void;
  /** The server is shutting down: close with 1001 without waiting for the client. */
  goAway(): void;
  /**
   * The socket's route when a frame may be written to it directly: it is
   * open, nothing of its own is queued or being written, and it is
   * attached. Otherwise `null`.
   */
  idleRoute(): SocketRoute | null;
  /**
   * Queues an encoded data frame behind what the socket already queued.
   *
   * @param frame The frame.
   * @param size Its payload size, for `bufferedAmount`.
   */
  queue(frame: Uint8Array, size: number): void;
  /**
   * Whether both close frames have passed (the closing handshake is done):
   * the client leaving now ends the exchange as complete.
   */
  closedCleanly(): boolean;
}

/**
 * Settings of a socket, from the `upgradeWebSocket()` options.
 *
 * @example
 * ```ts
 * import type { WebSocketSettings } from "./socket.ts";
 * const settings: WebSocketSettings = { protocol: "chat", maxMessageSize: 1 << 20, idleTimeout: 30 };
 * console.assert(settings.protocol === "chat");
 * ```
 */
export interface WebSocketSettings {
  /** The selected subprotocol, or `""`. */
  protocol: string;
  /** The largest message accepted from the client (bytes). */
  maxMessageSize: number;
  /** Seconds of silence before a ping, and again before giving up; 0 disables. */
  idleTimeout: number;
  /**
   * Milliseconds the client has to answer the server's close frame once it
   * went out (default 5000).
   */
  closeTimeout?: number;
}

/**
 * A frame and its payload size. Blob payloads are read asynchronously, so
 * their frame is a promise; the queue waits for it, which keeps order.
 */
interface Outgoing {
  frame: Uint8Array | Promise<Uint8Array>;
  size: number;
  /** The close frame of a closing handshake the server began. */
  closing?: boolean;
}

type Handler = ((this: WebSocket, event: never) => unknown) | null;

const controls = new WeakMap<object, SocketControl>();

/**
 * Returns the control of a socket made by `upgradeWebSocket()` behind
 * mongrel2, or `undefined` for any other socket (e.g. one from
 * `Deno.upgradeWebSocket`).
 *
 * @param socket Any WebSocket.
 * @returns The control, or `undefined`.
 *
 * @example
 * ```ts
 * import { createWebSocket, socketControl } from "./socket.ts";
 * const { socket, control } = createWebSocket({ protocol: "", maxMessageSize: 1024, idleTimeout: 0 });
 * console.assert(socketControl(socket) === control);
 * console.assert(socketControl(new EventTarget()) === undefined);
 * ```
 */
export function socketControl(socket: object): SocketControl | undefined {
  return controls.get(socket);
}

/**
 * Encodes data the way `WebSocket.send()` takes it: a string as a text
 * frame, bytes as a binary frame (copied, so later changes to the buffer do
 * not leak into the frame).
 *
 * @param data A string, an `ArrayBuffer` or a view of one; anything else
 * is sent as its string form, like WebIDL converts it.
 * @returns The frame and its payload size.
 *
 * @example
 * ```ts
 * import { encodeDataFrame } from "./socket.ts";
 * const { frame, size } = encodeDataFrame("hi");
 * console.assert(frame[0] === 0x81 && size === 2);
 * ```
 */
export function encodeDataFrame(
  data: string | ArrayBufferLike | ArrayBufferView,
): { frame: Uint8Array; size: number } {
  let bytes: Uint8Array;
  let opcode: number = OPCODE.binary;
  if (ArrayBuffer.isView(data)) {
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } else if (
    data instanceof ArrayBuffer || data instanceof SharedArrayBuffer
  ) {
    bytes = new Uint8Array(data);
  } else {
    bytes = utf8.encode(String(data));
    opcode = OPCODE.text;
  }
  return { frame: encodeFrame(opcode, bytes), size: bytes.byteLength };
}

/**
 * Creates a socket and its control (done by `upgradeWebSocket()`).
 *
 * @param settings Subprotocol, message size limit and idle timeout.
 * @returns The socket for the handler and the control for the server.
 *
 * @example
 * ```ts
 * import { createWebSocket } from "./socket.ts";
 * const { socket } = createWebSocket({ protocol: "", maxMessageSize: 1024, idleTimeout: 0 });
 * console.assert(socket.readyState === 0);
 * ```
 */
export function createWebSocket(
  settings: WebSocketSettings,
): { socket: Mongrel2WebSocket; control: SocketControl } {
  const socket = new Mongrel2WebSocket(settings);
  return { socket, control: controls.get(socket)! };
}

/**
 * A WebSocket served through mongrel2, with the API of the `WebSocket` that
 * `Deno.upgradeWebSocket()` returns: `open`, `message`, `close` and `error`
 * events, `send()`, `close()`, `readyState`, `bufferedAmount`.
 *
 * Like Deno's server-side sockets, `binaryType` starts as `"arraybuffer"`
 * and `url` is `""`. Pings are answered automatically, pongs are swallowed.
 * A message that is not valid UTF-8 text closes the connection with 1007,
 * one over the `maxMessageSize` option with 1009, other protocol errors with
 * 1002; each fires `error`, then `close` with that code and `wasClean:
 * false`. A client that goes away without a close frame fires `close` with
 * 1006.
 *
 * Made by `upgradeWebSocket()`; a socket constructed directly never opens.
 *
 * @example Echo
 * ```ts
 * import { upgradeWebSocket } from "@m2fetch/m2fetch";
 * export default {
 *   fetch(request: Request) {
 *     const { socket, response } = upgradeWebSocket(request);
 *     socket.onmessage = (event) => socket.send(event.data);
 *     return response;
 *   },
 * };
 * ```
 */
export class Mongrel2WebSocket extends EventTarget implements WebSocket {
  /** `readyState` before the 101 has been handed to mongrel2. */
  static readonly CONNECTING: 0 = CONNECTING;
  /** `readyState` while messages flow. */
  static readonly OPEN: 1 = OPEN;
  /** `readyState` once a close frame was sent or received. */
  static readonly CLOSING: 2 = CLOSING;
  /** `readyState` once the connection is gone. */
  static readonly CLOSED: 3 = CLOSED;
  /** Same as {@linkcode Mongrel2WebSocket.CONNECTING}. */
  readonly CONNECTING: 0 = CONNECTING;
  /** Same as {@linkcode Mongrel2WebSocket.OPEN}. */
  readonly OPEN: 1 = OPEN;
  /** Same as {@linkcode Mongrel2WebSocket.CLOSING}. */
  readonly CLOSING: 2 = CLOSING;
  /** Same as {@linkcode Mongrel2WebSocket.CLOSED}. */
  readonly CLOSED: 3 = CLOSED;
  /** No extension is ever negotiated (mongrel2 does not support any). */
  readonly extensions: string = "";
  /** Always `""`, as for Deno's server-side sockets. */
  readonly url: string = "";
  readonly #protocol: string;
  readonly #maxMessageSize: number;
  readonly #idleTimeoutMs: number;
  readonly #closeTimeoutMs: number;
  readonly #frames: ReadableStream<Uint8Array>;
  readonly #handlers = new Map<string, Handler>();
  #binaryType: BinaryType = "arraybuffer";
  #readyState = CONNECTING;
  #route: SocketRoute | null = null;
  readonly #queue = new Fifo<Outgoing>();
  #buffered = 0;
  #inFlight: Outgoing | null = null;
  #headSent = false;
  #wake: (() => void) | null = null;
  /** Close code and reason given to `close()` while still connecting. */
  #pendingClose: { code?: number; reason: string } | null = null;
  /** Once set, the stream ends when the queue drains and `close` fires with it. */
  #ending: CloseEventInit | null = null;
  #closeQueued = false;
  /** Frames that came before the socket opened, delivered once it does. */
  #early: [string, Uint8Array][] = [];
  #earlyOverflow = false;
  /** A pong still in the queue, which a newer ping's pong replaces. */
  #queuedPong: Outgoing | null = null;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Creates a socket that opens only when a server writes its frames; use
   * `upgradeWebSocket()` instead.
   *
   * @param settings Subprotocol, message size limit and idle timeout.
   */
  constructor(settings: WebSocketSettings) {
    super();
    this.#protocol = settings.protocol;
    this.#maxMessageSize = settings.maxMessageSize;
    this.#idleTimeoutMs = settings.idleTimeout * 1000;
    this.#closeTimeoutMs = settings.closeTimeout ?? CLOSE_TIMEOUT_MS;
    this.#frames = new ReadableStream<Uint8Array>({
      pull: (controller) => this.#pull(controller),
      cancel: () => this.#lost(),
    }, { highWaterMark: 0 });
    controls.set(this, {
      frames: this.#frames,
      attach: (route) => this.#route = route,
      receive: (flags, payload) => this.#receive(flags, payload),
      goAway: () => this.#fail(1001, "Server shutting down"),
      idleRoute: () => this.#idleRoute(),
      queue: (frame, size) => this.#push({ frame, size }),
      closedCleanly: () => this.#ending?.wasClean === true,
    });
  }

  /** How binary messages arrive: `"arraybuffer"` (default) or `"blob"`. */
  get binaryType(): BinaryType {
    return this.#binaryType;
  }

  set binaryType(value: BinaryType) {
    // Like the WebIDL enum attribute: other values are ignored.
    if (value === "arraybuffer" || value === "blob") this.#binaryType = value;
  }

  /** Payload bytes passed to `send()` and not yet handed to mongrel2. */
  get bufferedAmount(): number {
    return this.#buffered;
  }

  /** The subprotocol selected with the `protocol` option, or `""`. */
  get protocol(): string {
    return this.#protocol;
  }

  /** `CONNECTING`, `OPEN`, `CLOSING` or `CLOSED` (0 to 3). */
  get readyState(): number {
    return this.#readyState;
  }

  /** Called with the `open` event. */
  get onopen(): ((this: WebSocket, event: Event) => unknown) | null {
    return this.#handler<Event>("open");
  }

  set onopen(handler: ((this: WebSocket, event: Event) => unknown) | null) {
    this.#setHandler("open", handler);
  }

  /** Called with each `message` event. */
  get onmessage():
    | ((this: WebSocket, event: MessageEvent) => unknown)
    | null {
    return this.#handler<MessageEvent>("message");
  }

  set onmessage(
    handler: ((this: WebSocket, event: MessageEvent) => unknown) | null,
  ) {
    this.#setHandler("message", handler);
  }

  /** Called with the `close` event. */
  get onclose(): ((this: WebSocket, event: CloseEvent) => unknown) | null {
    return this.#handler<CloseEvent>("close");
  }

  set onclose(
    handler: ((this: WebSocket, event: CloseEvent) => unknown) | null,
  ) {
    this.#setHandler("close", handler);
  }

  /** Called with the `error` event. */
  get onerror():
    | ((this: WebSocket, event: Event | ErrorEvent) => unknown)
    | null {
    return this.#handler<Event | ErrorEvent>("error");
  }

  set onerror(
    handler: ((this: WebSocket, event: Event | ErrorEvent) => unknown) | null,
  ) {
    this.#setHandler("error", handler);
  }

  /**
   * Sends a message: a string as text, bytes or a Blob as binary. Messages
   * leave in call order, also when a Blob has to be read first.
   *
   * Once the socket is closing or closed, a message is dropped, as the
   * WebSocket standard (and Deno) does: a handler broadcasting to a room
   * need not check each socket's state.
   *
   * @param data The message.
   * @throws {DOMException} `InvalidStateError` while the socket is still
   * connecting (as Deno's socket does).
   */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (arguments.length === 0) {
      throw new TypeError(
        "Cannot send on a WebSocket: 1 argument required, but only 0 present",
      );
    }
    if (this.#readyState === CONNECTING) {
      throw new DOMException(
        "Cannot send on a WebSocket that is still connecting: wait for the open event",
        "InvalidStateError",
      );
    }
    if (this.#readyState !== OPEN) return;
    if (data instanceof Blob) {
      const frame = data.bytes().then((bytes) =>
        encodeFrame(OPCODE.binary, bytes)
      );
      // Awaited by #pull; a rejection must not go unhandled meanwhile.
      frame.catch(() => {});
      this.#push({ frame, size: data.size });
    } else {
      this.#push(encodeDataFrame(data));
    }
  }

  /**
   * Starts the closing handshake: sends a close frame, then waits for the
   * client's (up to 5 s after the frame went out) before the connection
   * closes and `close` fires.
   *
   * @param code A code a server may send: 1000–1003, 1007–1014 or
   * 3000–4999; a reason without a code sends 1000. Like Deno's server
   * sockets (and unlike a browser's), other codes do not throw: RFC 6455
   * lets no endpoint send them (1005 and 1006, say, which a proxy may pass
   * on from its upstream's close event), so the close frame goes out
   * without a code or reason, which the client sees as 1005.
   * @param reason At most 123 bytes of UTF-8.
   * @throws {DOMException} `SyntaxError` for a longer reason.
   */
  close(code?: number, reason?: string): void {
    let text = reason === undefined ? "" : String(reason);
    if (code !== undefined) {
      code = clampCode(code);
      if (!isSendableCloseCode(code)) {
        code = undefined;
        text = "";
      }
    }
    const length = utf8.encode(text).byteLength;
    if (length > 123) {
      throw new DOMException(
        `Cannot close a WebSocket with a ${length}-byte reason: a close reason is at most 123 bytes of UTF-8`,
        "SyntaxError",
      );
    }
    if (this.#readyState === CLOSING || this.#readyState === CLOSED) return;
    if (text !== "" && code === undefined) code = 1000;
    const connecting = this.#readyState === CONNECTING;
    this.#readyState = CLOSING;
    if (connecting) {
      this.#pendingClose = { code, reason: text };
    } else {
      this.#startClose(code, text);
    }
  }

  #handler<E extends Event>(
    type: string,
  ): ((this: WebSocket, event: E) => unknown) | null {
    return (this.#handlers.get(type) ?? null) as
      | ((this: WebSocket, event: E) => unknown)
      | null;
  }

  #setHandler(type: string, handler: Handler): void {
    if (!this.#handlers.has(type)) {
      this.addEventListener(type, (event) => {
        const current = this.#handlers.get(type);
        if (typeof current === "function") {
          current.call(this, event as never);
        }
      });
    }
    this.#handlers.set(type, typeof handler === "function" ? handler : null);
  }

  #push(outgoing: Outgoing): void {
    this.#queue.push(outgoing);
    this.#buffered += outgoing.size;
    this.#wake?.();
  }

  #idleRoute(): SocketRoute | null {
    const idle = this.#readyState === OPEN && this.#queue.length === 0 &&
      this.#inFlight === null;
    return idle ? this.#route : null;
  }

  /** The writer wants the next frame: everything before it is handed over. */
  async #pull(
    controller: ReadableStreamDefaultController<Uint8Array>,
  ): Promise<void> {
    if (this.#inFlight !== null) {
      this.#buffered -= this.#inFlight.size;
      this.#inFlight = null;
    }
    if (!this.#headSent) {
      this.#headSent = true;
      this.#opened();
    }
    while (this.#queue.length === 0) {
      if (this.#ending !== null) {
        controller.close();
        this.#finish(this.#ending);
        return;
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = null;
      if (this.#readyState === CLOSED) return;
    }
    const next = this.#queue.shift();
    if (next === this.#queuedPong) this.#queuedPong = null;
    this.#inFlight = next;
    let frame: Uint8Array;
    try {
      frame = await next.frame;
    } catch (error) {
      this.#buffered -= next.size;
      this.#inFlight = null;
      this.#fail(1011, "Internal error", `Cannot send a Blob: ${error}`);
      return await this.#pull(controller);
    }
    if (this.#readyState === CLOSED) return;
    // Timed from here, not from close(): the frames queued before it may
    // take longer than the timeout to reach a slow client.
    if (next.closing && this.#ending === null) this.#armCloseTimer();
    controller.enqueue(frame);
  }

  /** The 101 has been handed to mongrel2. */
  #opened(): void {
    if (this.#readyState === CONNECTING) {
      this.#readyState = OPEN;
      this.#armIdleTimer();
      this.dispatchEvent(new Event("open"));
      const early = this.#early;
      this.#early = [];
      for (const [flags, payload] of early) this.#receive(flags, payload);
      if (this.#earlyOverflow) {
        const reason = `More than ${MAX_EARLY_FRAMES} frames before open`;
        this.#fail(1008, reason, reason);
      }
    } else if (this.#pendingClose !== null && !this.#closeQueued) {
      this.#startClose(this.#pendingClose.code, this.#pendingClose.reason);
    }
  }

  #startClose(code: number | undefined, reason: string): void {
    this.#queueClose(code, reason, true);
  }

  /** The client has 5 s to answer the close frame now going out. */
  #armCloseTimer(): void {
    this.#closeTimer = setTimeout(() => {
      this.#end({ code: 1006, reason: "", wasClean: false });
    }, this.#closeTimeoutMs);
  }

  #queueClose(code: number | undefined, reason: string, closing = false): void {
    clearTimeout(this.#idleTimer);
    this.#readyState = CLOSING;
    this.#closeQueued = true;
    this.#push({ frame: encodeCloseFrame(code, reason), size: 0, closing });
  }

  /** Ends the stream once the queue drains; `close` fires then. */
  #end(init: CloseEventInit): void {
    if (this.#ending !== null) return;
    clearTimeout(this.#closeTimer);
    clearTimeout(this.#idleTimer);
    this.#ending = init;
    this.#wake?.();
  }

  /** Closes with `code` at once, without waiting for the client. */
  #fail(code: number, reason: string, message?: string): void {
    if (this.#ending !== null || this.#readyState === CLOSED) return;
    if (!this.#closeQueued) this.#queueClose(code, reason);
    this.#end({ code, reason, wasClean: false });
    if (message !== undefined) {
      this.dispatchEvent(new ErrorEvent("error", { message }));
    }
  }

  #receive(flags: string, payload: Uint8Array): void {
    if (this.#readyState === CONNECTING) {
      // Sent with the handshake, before the 101 went out: Deno delivers
      // them after open, so they wait. A client that keeps sending before
      // it (RFC 6455 §4.1 says it must not) is failed once the socket
      // opens: dropping frames would corrupt its messages.
      if (this.#early.length < MAX_EARLY_FRAMES) {
        this.#early.push([flags, payload]);
      } else this.#earlyOverflow = true;
      return;
    }
    if (this.#ending !== null) return;
    // Closing, the close timer alone bounds the wait: no more idle pings.
    if (!this.#closeQueued) this.#armIdleTimer();
    let message;
    try {
      message = classifyMessage(flags, payload, this.#maxMessageSize);
    } catch (error) {
      if (!(error instanceof WebSocketProtocolError)) throw error;
      this.#fail(
        error.closeCode,
        FAILURE_REASONS[error.closeCode],
        error.message,
      );
      return;
    }
    switch (message.type) {
      case "text":
        this.#message(message.data);
        break;
      case "binary": {
        // A copy of its own: the payload is a view into mongrel2's whole
        // message, maybe a Node Buffer, whose slice() would not copy.
        const data = new Uint8Array(message.data);
        this.#message(
          this.#binaryType === "blob" ? new Blob([data]) : data.buffer,
        );
        break;
      }
      case "ping":
        if (this.#closeQueued) break;
        if (this.#queuedPong !== null) {
          // A client that pings faster than it reads would otherwise grow
          // the queue without bound; RFC 6455 lets a pong answer only the
          // latest ping.
          this.#queuedPong.frame = encodeFrame(OPCODE.pong, message.data);
        } else {
          this.#queuedPong = {
            frame: encodeFrame(OPCODE.pong, message.data),
            size: 0,
          };
          this.#push(this.#queuedPong);
        }
        break;
      case "pong":
        break;
      case "close": {
        const { code, reason } = message;
        if (!this.#closeQueued) {
          // Echo the client's close, as Deno does (no code: empty payload).
          this.#queueClose(code === 1005 ? undefined : code, reason);
        }
        this.#end({ code, reason, wasClean: true });
        break;
      }
    }
  }

  #message(data: string | ArrayBuffer | Blob): void {
    if (this.#readyState !== OPEN) return;
    this.dispatchEvent(new MessageEvent("message", { data }));
  }

  /**
   * Deno's idle check: after `idleTimeout / 2` without a message from the
   * client, ping; after as long again, give up with 1001.
   */
  #armIdleTimer(): void {
    if (this.#idleTimeoutMs === 0) return;
    clearTimeout(this.#idleTimer);
    const half = this.#idleTimeoutMs / 2;
    this.#idleTimer = setTimeout(() => {
      this.#push({ frame: encodeFrame(OPCODE.ping, EMPTY), size: 0 });
      this.#idleTimer = setTimeout(() => {
        const reason = "No response from ping frame";
        this.#fail(1001, reason, reason);
      }, half);
    }, half);
  }

  #finish(init: CloseEventInit): void {
    if (this.#readyState === CLOSED) return;
    this.#readyState = CLOSED;
    clearTimeout(this.#closeTimer);
    clearTimeout(this.#idleTimer);
    this.#route?.closing?.();
    this.dispatchEvent(new CloseEvent("close", init));
  }

  /** The connection is gone (disconnect, timeout, shutdown) or never came. */
  #lost(): void {
    // After the closing handshake the client may leave before the last
    // frame was written: the close was still clean.
    this.#finish(this.#ending ?? { code: 1006, reason: "", wasClean: false });
    this.#wake?.();
  }
}

// `socket instanceof WebSocket` holds, as for Deno's server sockets (a
// handler's type checks, Hono's `ws.raw`). Every member WebSocket defines
// is this class's own, so none of WebSocket's internal-slot getters runs on
// it; only the constructor and the events' EventTarget are not WebSocket's.
Object.setPrototypeOf(Mongrel2WebSocket.prototype, WebSocket.prototype);

/**
 * Most frames held from before the socket opened: more than the server
 * holds before the handshake is answered, since with workers more can come
 * during the hop to the worker's socket.
 */
const MAX_EARLY_FRAMES = 64;

/** Close codes RFC 6455 lets an endpoint put in a close frame. */
function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
    (code >= 3000 && code <= 4999);
}

/** WebIDL `[Clamp] unsigned short`: rounds half to even, clamps to 0–65535. */
function clampCode(value: number): number {
  const number = Number(value);
  if (Number.isNaN(number)) return 0;
  const clamped = Math.min(65535, Math.max(0, number));
  const floor = Math.floor(clamped);
  const fraction = clamped - floor;
  if (fraction > 0.5 || (fraction === 0.5 && floor % 2 === 1)) {
    return floor + 1;
  }
  return floor;
}
