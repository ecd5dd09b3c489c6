/**
 * The server loop: messages from mongrel2 → parsed → connection state →
 * handler → encoded response → replies to mongrel2.
 *
 * @module
 */

import {
  type ResponseContext,
  ResponseEncoder,
} from "./http/response_encoder.ts";
import { STATUS_TEXT } from "./http/status_text.ts";
import { ActiveUpload } from "./upload/active_upload.ts";
import { uploadFailure, uploadPlaceHint } from "./upload/failure.ts";
import {
  readUploadMarker,
  realUploadPath,
  type UploadFacts,
  type UploadStore,
} from "./upload/policy.ts";
import {
  removeUploadFile,
  takeOverRefusal,
  verifyUploadFile,
} from "./upload/store.ts";
import { httpDate, requestKeepsAlive } from "./http/response.ts";
import { requestMethod } from "./http/request.ts";
import { ambiguity, isHandshake, refusalOf } from "./http/refusal.ts";
import { Connection, MAX_CREDITS } from "./connection/connection.ts";
import { Exchange } from "./connection/exchange.ts";
import { REQUEST_FINISHED, requestCancelled } from "./abort_reasons.ts";
import {
  firstHeader,
  type Mongrel2Message,
  parseMessage,
} from "./protocol/message.ts";
import { parseNotice, readCreditsNotice } from "./protocol/notice.ts";
import { encodeClose, encodeCtl, MAX_REPLY_IDS } from "./protocol/reply.ts";
import { createLogger, type Logger } from "./log.ts";
import type { Transport } from "./transport/transport.ts";
import {
  checkHandlerResult,
  factsHandlerOf,
  type FetchHandler,
  type HandlerCall,
  handlerCall,
  type HandlerCallInit,
  UnrepresentableRequestError,
} from "./handler.ts";
import type { Mongrel2RequestInfo } from "./info.ts";
import type { SocketControl } from "./websocket/socket.ts";
import {
  acceptedSocket,
  framesResponse,
  type Handshake,
  routeDenoUpgradeWebSocket,
} from "./websocket/upgrade.ts";

export type { FetchHandler } from "./handler.ts";

/** Options for {@linkcode serveMongrel2}. */
export interface ServeMongrel2Options {
  /** The handler called for every request. */
  handler: FetchHandler;
  /** Where messages come from and replies go. */
  transport: Transport;
  /** Turns a handler error into a response; default: 500 Internal Server Error. */
  onError?: (error: unknown) => Response | Promise<Response>;
  /** Log destination; default: text lines on stderr. */
  logger?: Logger;
  /**
   * Forget a connection that had no request and no traffic for this long
   * (ms, default 60 000). mongrel2 does not always say when clients leave.
   */
  idleTimeout?: number;
  /**
   * Give up on a client that accepted no response bytes for this long
   * (ms, default 60 000): its connection is cancelled and its request aborted.
   */
  writeTimeout?: number;
  /**
   * While a response is in progress, ask mongrel2 to keep the connection
   * alive this often (ms, default 30 000), so its idle reaper (120 s by
   * default) does not kill long polls and event streams.
   */
  keepAliveInterval?: number;
  /**
   * Accept mongrel2's async uploads from this temp store. Without it, upload
   * messages are refused with 400 and their files left alone.
   */
  uploads?: UploadOptions;
  /**
   * Longest a handler may take to return its response (ms); then
   * `request.signal` aborts with a `TimeoutError` and the client gets 504.
   * Default 0: no limit.
   */
  handlerTimeout?: number;
  /** Largest request body accepted, in bytes; larger gets 413. Default: no limit. */
  maxBodySize?: number;
  /**
   * Whether mongrel2 runs with `download.flow_control`. Default: learned
   * from the `DOWNLOAD_CREDITS` header, which only the first request of a
   * connection carries, or from a credits notice. Set it when it is known:
   * after a restart, a request on a keep-alive connection opened before it
   * cannot tell, and a reply sized for no flow control would make mongrel2
   * close that connection.
   */
  flowControl?: boolean;
}

/**
 * The settings a running server can take anew ({@linkcode Mongrel2Server.reconfigure}):
 * each applies to requests that start afterwards, and the timeouts to the
 * connections held too.
 */
export type ServerSettings =
  & Pick<
    ServeMongrel2Options,
    | "idleTimeout"
    | "writeTimeout"
    | "keepAliveInterval"
    | "handlerTimeout"
    | "maxBodySize"
  >
  & {
    /** When to call the handler for an upload; see {@linkcode UploadOptions.invokeAt}. */
    invokeAt?: "start" | "done";
  };

/** How m2fetch takes mongrel2's async uploads (`upload.temp_store`). */
export interface UploadOptions {
  /** The temp store template and mongrel2's chroot. */
  store: UploadStore;
  /**
   * When to call the handler: at upload-start, with a body that streams the
   * file as it arrives (default), or at upload-done, as wsgid did.
   */
  invokeAt?: "start" | "done";
}

/** A running server. */
export interface Mongrel2Server {
  /** Settles when the server has stopped. */
  readonly finished: Promise<void>;
  /** Connections with state held now. */
  readonly connections: number;
  /** Requests whose responses are not yet fully handed over. */
  readonly inFlight: number;
  /**
   * Stops taking messages, lets responses in flight finish (up to
   * `timeoutMs`), then closes the transport.
   */
  shutdown(timeoutMs?: number): Promise<void>;
  /**
   * Serves new requests with `handler`; requests already running finish on
   * the old one (used by reloads).
   */
  setHandler(handler: FetchHandler): void;
  /**
   * Takes new settings (used by reloads); a setting left out keeps its
   * value.
   */
  reconfigure(settings: ServerSettings): void;
}

const INTERNAL_SERVER_ERROR = new TextEncoder().encode("Internal Server Error");
/** Most WebSocket frames held while a handshake is being answered. */
const MAX_EARLY_FRAMES = 16;
/**
 * Most handlers running at once for one connection's pipelined requests:
 * the rest start, in order, as earlier responses go out. A handler runs
 * ahead of its response's turn to be written, so without a bound one
 * client pipelining hundreds of requests would hold hundreds of responses
 * in memory (`deno serve` runs them one at a time).
 */
export const MAX_PIPELINED_HANDLERS = 8;
/**
 * Most requests one connection may have waiting for their responses.
 * mongrel2 forwards pipelined requests as fast as a client sends them, and
 * each held here costs m2fetch a few KiB: without a bound, one client
 * pipelining behind a slow response makes m2fetch hold as many as it
 * likes (`deno serve` reads the next request only after a response, and
 * TCP holds the client back). A connection over it is cancelled.
 */
export const MAX_QUEUED_REQUESTS = 128;
/** How long a request pipelined behind a closing one is still recognised. */
const PIPELINED_AFTER_LAST_MS = 2000;

function internalServerError(): Response {
  // Same as deno serve: status, body, no content-type.
  return new Response(INTERNAL_SERVER_ERROR, { status: 500 });
}

/**
 * Serves `handler` behind mongrel2 over `transport`.
 *
 * @param options Handler, transport and tuning.
 * @returns The running server.
 *
 * @example Usage
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
 */
export function serveMongrel2(options: ServeMongrel2Options): Mongrel2Server {
  routeDenoUpgradeWebSocket();
  return new Server(options);
}

class Server implements Mongrel2Server {
  readonly finished: Promise<void>;
  #handler: FetchHandler;
  #handlerTimeout: number;
  readonly #transport: Transport;
  /** The transport's send, one function for every socket's route. */
  readonly #sendReply = (reply: Uint8Array) => this.#transport.send(reply);
  /** The embedder's error handler, if any (else the default 500, logged). */
  readonly #onError:
    | ((error: unknown) => Response | Promise<Response>)
    | undefined;
  readonly #logger: Logger;
  #idleTimeout: number;
  #writeTimeout: number;
  #keepAliveInterval: number;
  #flowControl: boolean | undefined;
  #warnedUnflowedSocket = false;
  #warnedMissingUpload = false;
  #uploads: UploadOptions | undefined;
  #maxBodySize: number;
  /** When the server started (ms since the epoch), to date upload files. */
  readonly #startedAt = Date.now();
  /** The async upload in progress on a connection. */
  readonly #uploadsOf = new WeakMap<Connection, ActiveUpload>();
  /** Upload paths whose requests ended lately: a late upload-done is expected. */
  readonly #recentUploads = new Map<string, number>();
  /** Those of them whose file was not there when m2fetch opened it. */
  readonly #missingUploads = new Set<string>();
  /**
   * Connections m2fetch closed after their last request, by key: a request
   * pipelined behind it may still be on its way.
   */
  readonly #closedAfterLast = new Map<string, number>();
  /**
   * Why requests on a connection are being ignored, by key, once one has
   * been (pipelined after its last request, or past the pipelining bound):
   * the next ones are logged at info, like access lines, so a client
   * cannot make one warning per request it sends.
   */
  readonly #ignoring = new Map<string, string>();
  readonly #connections = new Map<string, Connection>();
  readonly #sockets = new WeakMap<Connection, SocketControl>();
  /** Pipelined requests whose handlers wait for earlier ones to end. */
  readonly #waitingHandlers = new WeakMap<
    Connection,
    { exchange: Exchange; start: () => void }[]
  >();
  /** Frames that came before the handshake was answered. */
  readonly #earlyFrames = new WeakMap<Connection, [string, Uint8Array][]>();
  #inFlight = 0;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #lastKeepAlive = performance.now();
  #lastMessage = performance.now();
  #stopping = false;
  /**
   * While stopping and still receiving: requests that arrived, each to be
   * served once receiving stopped. `null` otherwise.
   */
  #held: (() => void)[] | null = null;
  #drained: (() => void) | null = null;
  #resolveFinished!: () => void;
  /** Upload files being deleted, which shutdown waits for. */
  readonly #uploadRemovals = new Set<Promise<unknown>>();

  constructor(options: ServeMongrel2Options) {
    this.#handler = options.handler;
    this.#handlerTimeout = options.handlerTimeout ?? 0;
    this.#transport = options.transport;
    this.#logger = options.logger ?? createLogger();
    this.#onError = options.onError;
    this.#idleTimeout = options.idleTimeout ?? 60_000;
    this.#writeTimeout = options.writeTimeout ?? 60_000;
    this.#keepAliveInterval = options.keepAliveInterval ?? 30_000;
    this.#flowControl = options.flowControl;
    this.#uploads = options.uploads;
    this.#maxBodySize = options.maxBodySize ?? Infinity;
    this.#startSweeping();
    this.#transport.onPeerLeft?.((idents) => this.#forgetClients(idents));
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.#receive();
  }

  /**
   * A mongrel2 went away: its clients' connections are gone, and the ids of
   * the next one's start at 1 again, so no state of theirs may outlive it
   * (a new client would get what was meant for an old one).
   */
  #forgetClients(idents: readonly string[]): void {
    const theirs = (sender: string) =>
      idents.some((ident) => sender.startsWith(ident));
    let forgotten = 0;
    for (const connection of [...this.#connections.values()]) {
      if (!theirs(connection.sender)) continue;
      forgotten++;
      connection.lost(
        new DOMException("mongrel2 went away", "AbortError"),
      );
    }
    for (const key of this.#closedAfterLast.keys()) {
      if (theirs(key.slice(0, key.indexOf(" ")))) {
        this.#closedAfterLast.delete(key);
      }
    }
    if (forgotten > 0) {
      this.#logger.warn(
        `mongrel2 went away: dropped ${forgotten} connection(s) of its clients and their requests in flight`,
      );
    }
  }

  setHandler(handler: FetchHandler): void {
    this.#handler = handler;
  }

  reconfigure(settings: ServerSettings): void {
    this.#handlerTimeout = settings.handlerTimeout ?? this.#handlerTimeout;
    this.#idleTimeout = settings.idleTimeout ?? this.#idleTimeout;
    this.#writeTimeout = settings.writeTimeout ?? this.#writeTimeout;
    this.#keepAliveInterval = settings.keepAliveInterval ??
      this.#keepAliveInterval;
    if ("maxBodySize" in settings) {
      this.#maxBodySize = settings.maxBodySize ?? Infinity;
    }
    if (this.#uploads !== undefined && settings.invokeAt !== undefined) {
      this.#uploads = { ...this.#uploads, invokeAt: settings.invokeAt };
    }
    if (!this.#stopping) this.#startSweeping();
  }

  /** Checks timeouts often enough for the shortest of them. */
  #startSweeping(): void {
    clearInterval(this.#sweepTimer);
    const sweepEvery = Math.max(
      50,
      Math.min(1000, this.#idleTimeout / 4, this.#writeTimeout / 4),
    );
    this.#sweepTimer = setInterval(() => this.#sweep(), sweepEvery);
    Deno.unrefTimer(this.#sweepTimer as unknown as number);
  }

  get connections(): number {
    return this.#connections.size;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  async #receive(): Promise<void> {
    try {
      for await (const bytes of this.#transport.messages()) {
        this.#lastMessage = performance.now();
        let behind: Promise<void> | void = undefined;
        try {
          behind = this.#dispatch(bytes);
        } catch (error) {
          // One message m2fetch cannot handle must not stop the loop that
          // serves every other connection.
          this.#logger.error(
            `Dropped a message from mongrel2 that m2fetch failed to handle (${bytes.length} bytes)`,
            error,
          );
        }
        // A worker far behind on its sockets' messages: mongrel2 has no
        // flow control for them, so only taking no more bounds memory.
        if (behind !== undefined) await behind;
      }
    } catch (error) {
      this.#logger.error("Receiving from mongrel2 failed", error);
    }
    if (!this.#stopping) await this.shutdown();
  }

  /**
   * Handles one message from mongrel2.
   *
   * @returns A promise to wait for before the next message, when a
   * WebSocket's handler is too far behind.
   */
  #dispatch(bytes: Uint8Array): Promise<void> | void {
    const credits = readCreditsNotice(bytes);
    if (credits !== null) {
      this.#credit(
        `${credits.sender} ${credits.connectionId}`,
        credits.credits,
      );
      return;
    }
    let message: Mongrel2Message;
    try {
      message = parseMessage(bytes);
    } catch (error) {
      this.#logger.warn(
        `Dropped a malformed message from mongrel2 (${bytes.length} bytes): ${
          (error as Error).message
        }`,
      );
      return;
    }
    const key = `${message.sender} ${message.connectionId}`;
    try {
      const notice = parseNotice(message);
      if (notice !== null) {
        if (notice.type === "credits") {
          this.#credit(key, notice.credits);
        } else {
          const connection = this.#connections.get(key);
          const socket = connection && this.#sockets.get(connection);
          const upload = connection && this.#uploadsOf.get(connection);
          if (upload !== undefined && !upload.done) {
            // mongrel2 gives up an upload the same way whether the client
            // left or its own write to the temp file failed: only its
            // error log tells them apart.
            this.#logger.info(
              `mongrel2 closed connection ${message.connectionId} before the upload of ${upload.exchange.method} ${upload.exchange.path} was complete (the handler had read ${upload.bytesRead} bytes of it): the client left, or mongrel2 could not write its upload.temp_store (full or not writable: its error log says "Failed to write requested amount to tempfile")`,
            );
          }
          // deno serve's reason when the client leaves.
          connection?.lost(
            requestCancelled(),
            socket?.closedCleanly() ?? false,
          );
        }
        return;
      }
    } catch (error) {
      this.#logger.warn(
        `Dropped a malformed notice for connection ${message.connectionId}: ${
          (error as Error).message
        }`,
      );
      return;
    }
    const method = firstHeader(message.headers, "METHOD");
    if (method === undefined) {
      // mongrel2 leaves METHOD out only of upload.stream continuations
      // (alt headers, §1.11), which m2fetch does not take: not a request.
      this.#logger.warn(
        `Dropped a message without METHOD on connection ${message.connectionId} (an upload.stream piece? m2fetch takes uploads through upload.temp_store)`,
      );
      return;
    }
    // mongrel2's own socket messages and WebSocket frames carry these
    // methods, and so may a client's HTTP request (`JSON / HTTP/1.1`),
    // which is served as deno serve serves it: only mongrel2 can set
    // VERSION (an HTTP request's) and FLAGS (a frame's), being upper case.
    if (
      (method === "JSON" || method === "XML") &&
      message.headers.VERSION === undefined
    ) {
      this.#logger.warn(
        `Ignored a ${method} socket message on connection ${message.connectionId}: m2fetch serves HTTP`,
      );
      return;
    }
    if (method === "WEBSOCKET" && message.headers.FLAGS !== undefined) {
      return this.#frame(key, message);
    }
    this.#request(key, message);
  }

  #credit(key: string, credits: number): void {
    // Credits notices exist only with download.flow_control.
    this.#flowControl ??= true;
    this.#connections.get(key)?.addCredits(credits);
  }

  /**
   * A WebSocket message from a client: to the socket of its connection.
   *
   * @returns What the socket returns: a promise while its handler is too
   * far behind.
   */
  #frame(key: string, message: Mongrel2Message): Promise<void> | void {
    const connection = this.#connections.get(key);
    // Frames can still arrive after m2fetch closed the connection (the
    // client's answer to a close frame, say); they have nowhere to go.
    if (connection === undefined) return;
    const socket = this.#sockets.get(connection);
    const flags = firstHeader(message.headers, "FLAGS") ?? "";
    if (socket === undefined) {
      // Sent with the handshake while the handler (or its worker) is still
      // answering it: held for the socket, as Deno does, a few at most.
      if (connection.pending > 0) {
        const early = this.#earlyFrames.get(connection) ?? [];
        if (early.length < MAX_EARLY_FRAMES) {
          early.push([flags, message.body]);
          this.#earlyFrames.set(connection, early);
          return;
        }
        // Dropping some would corrupt the message stream: end it instead.
        this.#logger.warn(
          `Closed connection ${message.connectionId}: more than ${MAX_EARLY_FRAMES} WebSocket frames came before its handshake was answered`,
        );
        this.#earlyFrames.delete(connection);
        connection.close();
        return;
      }
      this.#logger.warn(
        `Ignored a WebSocket frame on connection ${message.connectionId}: no socket is open there`,
      );
      return;
    }
    return socket.receive(flags, message.body);
  }

  #connection(key: string, message: Mongrel2Message): Connection {
    const offered = firstHeader(message.headers, "DOWNLOAD_CREDITS");
    let connection = this.#connections.get(key);
    if (offered !== undefined) this.#flowControl ??= true;
    if (
      offered !== undefined && connection !== undefined && !connection.finished
    ) {
      // Only a TCP connection's first request carries DOWNLOAD_CREDITS: the
      // state held for this id is an old client's (mongrel2 restarted and
      // numbers from 1 again).
      connection.lost(
        new DOMException("The connection id was reused", "AbortError"),
      );
    }
    if (connection === undefined || connection.finished) {
      // Only a connection's first request carries DOWNLOAD_CREDITS; state
      // dropped while idle had its whole window back, so MAX_CREDITS holds.
      const credits = offered !== undefined && /^\d+$/.test(offered)
        ? Number(offered)
        : this.#flowControl
        ? MAX_CREDITS
        : null;
      connection = new Connection(
        message.sender,
        message.connectionId,
        credits,
        {
          send: (reply) => this.#transport.send(reply),
          closed: (closed) => {
            if (this.#connections.get(key) === closed) {
              this.#connections.delete(key);
            }
            if (closed.lastRequestTaken) {
              this.#closedAfterLast.set(key, performance.now());
            }
          },
          exchangeEnded: (conn, exchange, encoder, error) =>
            this.#exchangeEnded(conn, exchange, encoder, error),
        },
      );
      this.#connections.set(key, connection);
      this.#ignoring.delete(key);
    }
    return connection;
  }

  #request(key: string, message: Mongrel2Message): void {
    const marker = readUploadMarker(
      message.headers,
      message.body,
      this.#uploads?.store,
    );
    if (
      (marker.kind === "unconfigured" || marker.kind === "mismatched") &&
      this.#recentUploads.has(marker.path)
    ) {
      // The upload-done of an upload refused at its start.
      return;
    }
    if (marker.kind === "done") {
      const connection = this.#connections.get(key);
      const upload = connection && this.#uploadsOf.get(connection);
      if (upload !== undefined && upload.path === marker.path) {
        upload.markDone();
        return;
      }
      if (this.#recentUploads.has(marker.path)) {
        // Its request already ended and the file is gone; mongrel2 finished
        // receiving before it saw our close. The connection is closing, so
        // no state is created for it.
        if (this.#missingUploads.delete(marker.path)) {
          // Not a client that left, then: mongrel2 wrote it elsewhere.
          this.#logger.warn(
            `mongrel2 finished the upload "${marker.path}" that m2fetch did not find at ${
              realUploadPath(marker.path, this.#uploads!.store)
            }: ${
              uploadPlaceHint(this.#uploads!.store)
            }; the file is left where mongrel2 wrote it`,
          );
        }
        return;
      }
    }
    if (this.#held !== null) {
      // Stopping: mongrel2 still needs m2fetch to take the credits notices
      // of the responses in flight, so new requests keep arriving. Each
      // waits here and is served once receiving has stopped (shutdown()).
      this.#held.push(() => this.#request(key, message));
      return;
    }
    const behind = this.#pipelinedAfterLast(key, message);
    if (behind !== "no") {
      this.#ignorePipelined(message, marker, behind);
      return;
    }
    const connection = this.#connection(key, message);
    if (connection.pending >= MAX_QUEUED_REQUESTS) {
      this.#logger.warn(
        `Cancelled connection ${message.connectionId}: its client pipelined more than ${MAX_QUEUED_REQUESTS} requests ahead of their responses`,
      );
      // What mongrel2 still passes for it is ignored as pipelined after
      // the last request.
      connection.lastRequestTaken = true;
      this.#ignoring.set(
        key,
        `m2fetch cut connection ${message.connectionId} off for pipelining more than ${MAX_QUEUED_REQUESTS} requests`,
      );
      connection.cancel(
        new DOMException(
          "The client pipelined too many requests",
          "AbortError",
        ),
      );
      this.#ignorePipelined(message, marker, "closed");
      return;
    }
    const method = requestMethod(message);
    const version = firstHeader(message.headers, "VERSION") ?? "HTTP/1.1";
    const exchange = new Exchange(method, message.path);
    this.#inFlight++;
    connection.enqueue(exchange);
    const context = {
      method,
      version,
      // mongrel2 puts a handshake's connection in WebSocket mode at once, so
      // anything but a 101 must close it (or the next request is read as a
      // frame).
      keepAlive: !isHandshake(message) &&
        requestKeepsAlive(version, message.headers.connection),
      date: httpDate(),
    };
    if (!context.keepAlive && !isHandshake(message)) {
      connection.lastRequestTaken = true;
    }
    if (marker.kind === "unconfigured" || marker.kind === "mismatched") {
      // mongrel2's own upload, which m2fetch's settings cannot take: the
      // deployment is wrong. Answering at once makes mongrel2 stop
      // receiving and delete the file; one it has already completed stays
      // (m2fetch cannot check it against a store it was not told about).
      this.#recentUploads.set(marker.path, performance.now());
      this.#reject(
        exchange,
        context,
        500,
        marker.kind === "unconfigured"
          ? `mongrel2 spooled a request body to "${marker.path}" (its upload.temp_store), but m2fetch was started without --upload-temp-store: pass mongrel2's upload.temp_store with --upload-temp-store (or use --mongrel2-config; embedded or under runHandler, the uploads.store option), and delete the file if it is still there`
          : `mongrel2 spooled a request body to "${marker.path}", but ${marker.reason}: --upload-temp-store must be mongrel2's upload.temp_store (--mongrel2-config reads it); the file is left alone`,
        "error",
      );
      return;
    }
    if (marker.kind === "done" && !this.#uploadsOf.has(connection)) {
      this.#takeOver(connection, exchange, message, context, marker);
      return;
    }
    if (marker.kind === "forged" || marker.kind === "done") {
      const reason = marker.kind === "forged"
        ? marker.reason
        : `a second upload-done for "${marker.path}" on a connection with an upload in progress`;
      // A file mongrel2 really wrote is deleted when this request ends.
      const genuine = marker.kind === "done" ? marker.path : marker.upload;
      if (genuine !== undefined && !this.#uploadsOf.has(connection)) {
        this.#uploadsOf.set(
          connection,
          new ActiveUpload(genuine, exchange, this.#uploads!.store),
        );
      }
      this.#reject(
        exchange,
        context,
        400,
        `Rejected upload headers: ${reason}`,
      );
      return;
    }
    if (marker.kind === "start") {
      if (this.#uploadsOf.has(connection)) {
        this.#reject(
          exchange,
          context,
          400,
          "Rejected upload headers: a second upload-start on a connection with an upload in progress",
        );
        return;
      }
      this.#startUpload(connection, exchange, message, context, marker);
      return;
    }
    const refusal = refusalOf(message, {
      maxBodySize: this.#maxBodySize,
      stopping: this.#stopping,
    });
    if (refusal !== null) {
      const { status, why, level } = refusal;
      this.#reject(exchange, context, status, why, level);
      return;
    }
    this.#handle(exchange, message, context);
  }

  /**
   * Whether a request came on a connection after one that closes it (the
   * client pipelined it; HTTP says it is not to be served): `"open"` while
   * that connection's last response is still going out, `"closed"` when
   * m2fetch closed it moments ago (mongrel2 may pass such a request after
   * that), else `"no"`. With flow control, a new TCP connection's first
   * request carries DOWNLOAD_CREDITS: after a mongrel2 restart, whose ids
   * start again at 1, that tells a new client from a pipelined request.
   */
  #pipelinedAfterLast(
    key: string,
    message: Mongrel2Message,
  ): "no" | "open" | "closed" {
    if (message.headers.DOWNLOAD_CREDITS !== undefined) {
      // A new TCP connection's first request, whatever the id held before.
      this.#closedAfterLast.delete(key);
      return "no";
    }
    const current = this.#connections.get(key);
    if (current !== undefined && !current.finished) {
      return current.closing ? "open" : "no";
    }
    const closedAt = this.#closedAfterLast.get(key);
    if (closedAt === undefined) return "no";
    if (performance.now() - closedAt > PIPELINED_AFTER_LAST_MS) {
      this.#closedAfterLast.delete(key);
      return "no";
    }
    return "closed";
  }

  /**
   * Drops a request pipelined after the last one of its connection, with
   * the upload file mongrel2 may have spooled for it (it deletes only
   * unfinished ones). On a connection already closed, mongrel2 is told to
   * close the id again: were it a new client's after all, that client sees
   * the connection end instead of waiting.
   */
  #ignorePipelined(
    message: Mongrel2Message,
    marker: ReturnType<typeof readUploadMarker>,
    behind: "open" | "closed",
  ): void {
    const key = `${message.sender} ${message.connectionId}`;
    const cause = this.#ignoring.get(key);
    const why = cause ??
      `the client pipelined it after a request that closes connection ${message.connectionId}`;
    this.#logger[cause === undefined ? "warn" : "info"](
      `Ignored ${
        requestMethod(message)
      } ${message.path}: ${why}, so it must send it again`,
    );
    this.#ignoring.set(key, why);
    const store = this.#uploads?.store;
    if (
      store !== undefined &&
      (marker.kind === "start" || marker.kind === "done") &&
      !this.#recentUploads.has(marker.path)
    ) {
      const path = marker.path;
      this.#recentUploads.set(path, performance.now());
      verifyUploadFile(path, store).then(removeUploadFile).catch((error) =>
        this.#logger.error(
          `Cannot delete the upload file ${path} of an ignored request`,
          error,
        )
      );
    }
    if (behind === "closed") {
      this.#transport.send(encodeClose(message.sender, [message.connectionId]));
    }
  }

  /** Answers with a status of its own and closes the connection afterwards. */
  #reject(
    exchange: Exchange,
    context: ResponseContext,
    status: number,
    why: string,
    level: "info" | "warn" | "error" = "warn",
  ): void {
    // Nothing pipelined behind a refused request is served.
    exchange.closeAfterResponse = true;
    this.#logger[level](
      `${why}; answered ${status} (${exchange.method} ${exchange.path})`,
    );
    exchange.respond(
      new ResponseEncoder(
        new Response(new TextEncoder().encode(STATUS_TEXT[status]), { status }),
        { ...context, keepAlive: false },
      ),
    );
  }

  /**
   * An upload whose upload-start went to an m2fetch that has stopped since
   * (killed, or restarted mid-upload). readUploadMarker let only what
   * mongrel2 itself sends pass: one upload path in both headers, no inline
   * body, a length or coding mongrel2 spools (it replaces a client's own
   * upload headers on a spooled request, and passes a small request's
   * inline). The file must also predate this server and be complete; it is
   * then served as with --upload-invoke done.
   */
  async #takeOver(
    connection: Connection,
    exchange: Exchange,
    message: Mongrel2Message,
    context: ResponseContext,
    marker: UploadFacts,
  ): Promise<void> {
    const refusal = await takeOverRefusal(
      marker,
      this.#uploads!.store,
      this.#startedAt,
    );
    if (exchange.settled) return;
    if (refusal !== null) {
      this.#reject(
        exchange,
        context,
        400,
        `Rejected upload headers: an upload-done without an upload-start on this connection, for "${marker.path}", which ${refusal}`,
      );
      return;
    }
    this.#logger.info(
      `Took over the upload "${marker.path}" that mongrel2 finished for ${exchange.method} ${message.path}: its upload-start went to an earlier m2fetch`,
    );
    await this.#startUpload(connection, exchange, message, context, marker, {
      complete: true,
    });
  }

  async #startUpload(
    connection: Connection,
    exchange: Exchange,
    message: Mongrel2Message,
    context: ResponseContext,
    { path, chunked, length: declared }: UploadFacts,
    { complete = false }: { complete?: boolean } = {},
  ): Promise<void> {
    const uploads = this.#uploads!;
    const upload = new ActiveUpload(path, exchange, uploads.store, {
      chunked,
    });
    this.#uploadsOf.set(connection, upload);
    if (complete) upload.markDone();
    if (declared !== undefined && declared > this.#maxBodySize) {
      this.#reject(
        exchange,
        context,
        413,
        `Refused a ${declared}-byte upload over the ${this.#maxBodySize}-byte limit before receiving it`,
      );
      return;
    }
    const ambiguous = ambiguity(message.headers, chunked);
    if (ambiguous !== null) {
      this.#reject(
        exchange,
        context,
        400,
        `Refused an ambiguous upload: ${ambiguous}`,
      );
      return;
    }
    let body: ReadableStream<Uint8Array>;
    try {
      body = await upload.open({
        maxBytes: this.#maxBodySize,
        onLimit: () =>
          this.#reject(
            exchange,
            context,
            413,
            `Refused an upload that grew past the ${this.#maxBodySize}-byte limit`,
          ),
        length: declared,
        onOverrun: (extra) => {
          // mongrel2 wrote what followed the body (a pipelined request)
          // into the file and will not parse it: the client waits for an
          // answer that cannot come, so the connection closes instead.
          exchange.closeAfterResponse = true;
          this.#logger.warn(
            `mongrel2 wrote ${extra} bytes past the ${declared}-byte Content-Length of ${exchange.method} ${exchange.path} into its upload file (a request pipelined behind the upload?); the body ends at its Content-Length and the connection closes after the response`,
          );
        },
      });
    } catch (error) {
      if (exchange.settled) return;
      const failure = uploadFailure(error, {
        path,
        store: uploads.store,
        done: upload.done,
        firstMissing: !this.#warnedMissingUpload,
      });
      if (failure.missingUnfinished) {
        this.#missingUploads.add(path);
        this.#warnedMissingUpload = true;
      }
      this.#reject(
        exchange,
        context,
        failure.status,
        failure.why,
        failure.level,
      );
      return;
    }
    if (uploads.invokeAt === "done" && !await upload.whenDone()) return;
    if (!exchange.settled) this.#handle(exchange, message, context, body);
  }

  #handle(
    exchange: Exchange,
    message: Mongrel2Message,
    context: ResponseContext,
    body?: ReadableStream<Uint8Array>,
  ): void {
    const key = `${message.sender} ${message.connectionId}`;
    const connection = this.#connections.get(key);
    if (
      connection !== undefined &&
      connection.queuedBefore(exchange) >= MAX_PIPELINED_HANDLERS
    ) {
      const waiting = this.#waitingHandlers.get(connection) ?? [];
      this.#waitingHandlers.set(connection, waiting);
      waiting.push({
        exchange,
        start: () => this.#handle(exchange, message, context, body),
      });
      return;
    }
    const source: Mongrel2RequestInfo = {
      connectionId: message.connectionId,
      sender: message.sender,
      pattern: firstHeader(message.headers, "PATTERN"),
      path: message.path,
      headers: message.headers,
    };
    const init: HandlerCallInit = {
      signal: exchange.signal,
      body: body ?? message.body,
      completed: exchange.completed,
      acceptKey: isHandshake(message)
        ? new TextDecoder().decode(message.body)
        : undefined,
    };
    const handler = this.#handler;
    const facts = factsHandlerOf(handler);
    if (facts !== undefined) {
      // The workers build the Request; building one here too would be
      // thrown away.
      const handshake = init.acceptKey === undefined
        ? undefined
        : { acceptKey: init.acceptKey };
      this.#run(
        exchange,
        () => facts(source, init, handshake),
        context,
        handshake,
        key,
      );
      return;
    }
    let call: HandlerCall;
    try {
      call = handlerCall(source, init);
    } catch (error) {
      this.#refuseUnrepresentable(exchange, context, error);
      return;
    }
    this.#run(
      exchange,
      () => handler(call.request, call.info),
      context,
      call.handshake,
      key,
    );
  }

  #refuseUnrepresentable(
    exchange: Exchange,
    context: ResponseContext,
    error: unknown,
  ): void {
    this.#reject(
      exchange,
      context,
      400,
      `Refused a request mongrel2 passed but Request rejects (${
        (error as Error).message
      })`,
    );
  }

  /**
   * Calls the handler. A handler that answers synchronously is answered
   * without an async step (no promise, no extra turn per request).
   */
  #run(
    exchange: Exchange,
    invoke: () => unknown,
    context: ResponseContext,
    handshake: Handshake | undefined,
    key: string,
  ): void {
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (this.#handlerTimeout > 0) {
      timer = setTimeout(() => {
        if (exchange.responded || exchange.settled) return;
        exchange.abortHandler(
          new DOMException("The handler took too long", "TimeoutError"),
        );
        this.#reject(
          exchange,
          context,
          504,
          `Handler gave no response within ${this.#handlerTimeout} ms`,
        );
      }, this.#handlerTimeout);
    }
    let response: Response;
    try {
      const result = invoke();
      if (!(result instanceof Response)) {
        this.#await(exchange, result, context, handshake, key, timer);
        return;
      }
      response = this.#sendable(result, handshake, key, exchange);
    } catch (error) {
      clearTimeout(timer);
      this.#answerError(exchange, error, context);
      return;
    }
    clearTimeout(timer);
    exchange.respond(new ResponseEncoder(response, context));
  }

  /** The rest of {@linkcode #run} for a handler that returned a promise. */
  async #await(
    exchange: Exchange,
    pending: unknown,
    context: ResponseContext,
    handshake: Handshake | undefined,
    key: string,
    timer: ReturnType<typeof setTimeout> | undefined,
  ): Promise<void> {
    let response: Response;
    try {
      response = this.#sendable(await pending, handshake, key, exchange);
    } catch (error) {
      return await this.#answerError(exchange, error, context);
    } finally {
      clearTimeout(timer);
    }
    exchange.respond(new ResponseEncoder(response, context));
  }

  async #answerError(
    exchange: Exchange,
    error: unknown,
    context: ResponseContext,
  ): Promise<void> {
    if (exchange.settled || exchange.responded) return;
    if (error instanceof UnrepresentableRequestError) {
      this.#refuseUnrepresentable(exchange, context, error);
      return;
    }
    const response = await this.#errorResponse(error, exchange);
    exchange.respond(new ResponseEncoder(response, context));
  }

  /**
   * What the handler returned, checked: a fresh Response, or a 101 for the
   * socket this request opened, which is sent with the socket's frames.
   */
  #sendable(
    result: unknown,
    handshake: Handshake | undefined,
    key: string,
    exchange: Exchange,
  ): Response {
    checkHandlerResult(result);
    const control = acceptedSocket(result, handshake);
    if (control === undefined) return result;
    if (this.#accept(control, key, exchange)) exchange.upgraded();
    return framesResponse(result, control);
  }

  /**
   * Attaches the socket of an accepted upgrade to its connection.
   *
   * @returns False when the connection is gone already (the socket's
   * stream is cancelled when answered).
   */
  #accept(control: SocketControl, key: string, exchange: Exchange): boolean {
    const connection = this.#connections.get(key);
    if (connection === undefined) return false;
    this.#sockets.set(connection, control);
    if (connection.credits === null && !this.#warnedUnflowedSocket) {
      this.#warnedUnflowedSocket = true;
      this.#logger.warn(
        "A WebSocket opened without download.flow_control: mongrel2 then closes a client with more than 16 frames queued, so a burst of sends cuts it off; set download.flow_control = 1 in mongrel2's settings (and --flow-control on)",
      );
    }
    control.attach({
      sender: connection.sender,
      id: connection.id,
      send: this.#sendReply,
      takeCredits: (bytes) => connection.takeCredits(bytes),
      closing: () => exchange.abortHandler(REQUEST_FINISHED),
    });
    for (const [flags, payload] of this.#earlyFrames.get(connection) ?? []) {
      control.receive(flags, payload);
    }
    this.#earlyFrames.delete(connection);
    return true;
  }

  /** Starts the handlers of pipelined requests that have come within bounds. */
  #startWaitingHandlers(connection: Connection): void {
    const waiting = this.#waitingHandlers.get(connection);
    if (waiting === undefined) return;
    if (connection.finished) {
      // Their exchanges were aborted with the connection.
      this.#waitingHandlers.delete(connection);
      return;
    }
    while (
      waiting.length > 0 &&
      connection.queuedBefore(waiting[0].exchange) < MAX_PIPELINED_HANDLERS
    ) {
      const { exchange, start } = waiting.shift()!;
      if (!exchange.settled) start();
    }
    if (waiting.length === 0) this.#waitingHandlers.delete(connection);
  }

  async #errorResponse(error: unknown, exchange: Exchange): Promise<Response> {
    if (this.#onError === undefined) {
      // Named like the access line, which may be far from this one when
      // requests overlap.
      this.#logger.error(
        `Handler failed; answering 500 (${exchange.method} ${exchange.path})`,
        error,
      );
      return internalServerError();
    }
    try {
      const response = await this.#onError(error);
      if (response instanceof Response) return response;
      this.#logger.error(
        "The error handler returned something other than a Response",
      );
    } catch (inner) {
      this.#logger.error("The error handler failed", inner);
    }
    return internalServerError();
  }

  #exchangeEnded(
    connection: Connection,
    exchange: Exchange,
    encoder: ResponseEncoder | null,
    error?: unknown,
  ): void {
    this.#inFlight--;
    this.#startWaitingHandlers(connection);
    const early = this.#earlyFrames.get(connection);
    if (early !== undefined && !this.#sockets.has(connection)) {
      this.#earlyFrames.delete(connection);
      this.#logger.warn(
        `Ignored ${early.length} WebSocket frame(s) on connection ${connection.id}: the handshake they followed was not accepted`,
      );
    }
    const upload = this.#uploadsOf.get(connection);
    if (upload !== undefined && upload.exchange === exchange) {
      this.#uploadsOf.delete(connection);
      this.#recentUploads.set(upload.path, performance.now());
      const removal = upload.end().catch((failure) =>
        this.#logger.error(
          `Cannot delete the upload file of ${exchange.method} ${exchange.path} (${upload.path})`,
          failure,
        )
      );
      this.#uploadRemovals.add(removal);
      removal.finally(() => this.#uploadRemovals.delete(removal));
    }
    if (encoder?.bodyFailure) {
      this.#logger.error(
        `Response to ${exchange.method} ${exchange.path} failed before its first byte (its head could not be written, or its body failed); answered 500`,
        encoder.bodyFailure.error,
      );
    } else if (error !== undefined && encoder !== null) {
      this.#logger.error(
        `Response body for ${exchange.method} ${exchange.path} failed after the head was sent; closed connection ${connection.id}`,
        error,
      );
    } else if (encoder?.failureAtEnd) {
      this.#logger.error(
        `Response body for ${exchange.method} ${exchange.path} failed after its declared length was sent`,
        encoder.failureAtEnd.error,
      );
    }
    this.#logger.access({
      method: exchange.method,
      path: exchange.path,
      status: encoder === null ? 0 : encoder.status,
      // What went out: a response cut short may have produced more (its
      // body made in one piece) than mongrel2's credits let through; a
      // WebSocket's broadcast frames went out beside its own writer.
      bytes: Math.max(
        0,
        (encoder?.bodyBytes ?? 0) -
          (encoder?.started ? connection.unsentBytes : 0),
      ) + (encoder?.status === 101 ? connection.sharedBytes : 0),
      durationMs: performance.now() - exchange.startedAt,
      connectionId: connection.id,
      sender: connection.sender,
    });
    if (this.#stopping && this.#inFlight === 0) this.#drained?.();
  }

  #sweep(): void {
    const now = performance.now();
    const keepAlive = now - this.#lastKeepAlive >= this.#keepAliveInterval;
    if (keepAlive) this.#lastKeepAlive = now;
    for (const [path, ended] of this.#recentUploads) {
      if (now - ended > 60_000) {
        this.#recentUploads.delete(path);
        this.#missingUploads.delete(path);
      }
    }
    for (const [key, closed] of this.#closedAfterLast) {
      if (now - closed > PIPELINED_AFTER_LAST_MS) {
        this.#closedAfterLast.delete(key);
      }
    }
    for (const key of this.#ignoring.keys()) {
      if (!this.#connections.has(key) && !this.#closedAfterLast.has(key)) {
        this.#ignoring.delete(key);
      }
    }
    const pings = new Map<string, string[]>();
    for (const connection of this.#connections.values()) {
      const waiting = connection.waitingSince;
      if (waiting !== null && now - waiting > this.#writeTimeout) {
        this.#logger.warn(
          `Connection ${connection.id} took no response bytes for ${this.#writeTimeout} ms; cancelled it`,
        );
        connection.cancel(
          new DOMException("The client stopped reading", "TimeoutError"),
        );
      } else if (connection.pending === 0) {
        const idle = now - connection.lastActivity;
        // Forget a connection only once the client has read everything
        // (full credit window), or it would be re-created with credits it
        // does not have.
        const settled = connection.credits === null ||
          connection.credits === MAX_CREDITS || idle > this.#writeTimeout;
        if (idle > this.#idleTimeout && settled) {
          connection.lost(new DOMException("Idle", "AbortError"));
        }
      } else if (keepAlive && !this.#uploadStalled(connection)) {
        const ids = pings.get(connection.sender) ?? [];
        ids.push(connection.id);
        pings.set(connection.sender, ids);
      }
    }
    for (const [sender, ids] of pings) {
      for (let i = 0; i < ids.length; i += MAX_REPLY_IDS) {
        this.#transport.send(
          encodeCtl(sender, ids.slice(i, i + MAX_REPLY_IDS), {
            "keep-alive": true,
          }),
        );
      }
    }
  }

  /**
   * Whether the connection's request is an upload still arriving that has
   * not grown since the last keep-alive round. Its client, not a response,
   * is what the connection waits for: it gets no keep-alive, so mongrel2's
   * reaper judges it as it would any client (a stalled upload would
   * otherwise hold its connection, and a descriptor in both processes, for
   * good).
   */
  #uploadStalled(connection: Connection): boolean {
    const upload = this.#uploadsOf.get(connection);
    return upload !== undefined && !upload.done && !upload.grew();
  }

  /** Waits (up to `timeoutMs`) until no request is in flight. */
  async #drain(timeoutMs: number): Promise<void> {
    if (this.#inFlight === 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.#drained = resolve),
      new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs)),
    ]);
    clearTimeout(timer);
  }

  /**
   * Once the shutdown timeout has run out: cancels every connection with a
   * request in flight (its client gets no more bytes, its handler's signal
   * aborts), with a warning that counts them.
   */
  #cutInFlight(timeoutMs: number): void {
    if (this.#inFlight === 0) return;
    this.#logger.warn(
      `Shutdown timeout of ${timeoutMs} ms reached: cutting off ${this.#inFlight} request(s) still in flight`,
    );
    for (const connection of [...this.#connections.values()]) {
      if (connection.pending > 0) {
        connection.cancel(
          new DOMException("The server is shutting down", "AbortError"),
        );
      }
    }
  }

  async shutdown(timeoutMs = 10_000): Promise<void> {
    if (this.#stopping) return await this.finished;
    this.#stopping = true;
    this.#held = [];
    const started = performance.now();
    for (const connection of this.#connections.values()) {
      this.#sockets.get(connection)?.goAway();
    }
    await this.#drain(timeoutMs);
    // Only now: with download.flow_control, mongrel2 sends a credits notice
    // after every write and stalls that client while no handler takes it,
    // so receiving must go on (new requests are held) until mongrel2 has
    // written what it was handed: every credit window full again, and no
    // notice for a moment (closed connections are no longer tracked).
    const deadline = started + timeoutMs;
    const writing = () =>
      [...this.#connections.values()].some((connection) =>
        connection.credits !== null && connection.credits < MAX_CREDITS
      ) || performance.now() - this.#lastMessage < 100;
    while (writing() && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // The time is up: cut what is still in flight before the final read. A
    // response still streaming would keep mongrel2 sending a credits notice
    // per write, and the read, which ends only on a quiet link, would go on
    // for a thousand of them (seconds past the timeout).
    this.#cutInFlight(timeoutMs);
    await this.#transport.stopReceiving();
    // Requests that arrived meanwhile are served now rather than refused:
    // in a keep-alive client's loop none follows them, and any request
    // mongrel2 gets from now on waits in mongrel2 for the next m2fetch.
    const held = this.#held;
    this.#held = null;
    if (held.length > 0) {
      this.#logger.info(
        `Serving ${held.length} request(s) that arrived during the drain`,
      );
      for (const serve of held) serve();
      await this.#drain(
        Math.max(started + timeoutMs - performance.now(), 1000),
      );
    }
    this.#cutInFlight(timeoutMs);
    for (const connection of [...this.#connections.values()]) {
      connection.lost(new DOMException("Shutdown", "AbortError"));
    }
    clearInterval(this.#sweepTimer);
    await this.#transport.close();
    // The CLI exits once stopped: an upload file still being deleted
    // would stay in the store.
    await Promise.all(this.#uploadRemovals);
    this.#logger.info("Stopped");
    this.#resolveFinished();
  }
}
