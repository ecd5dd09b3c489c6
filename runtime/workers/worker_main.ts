/**
 * The entry point of a handler worker: loads the handler module, then turns
 * request messages into `Request`s, calls the handler, and sends the
 * `Response` back with its body stream transferred.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import {
  checkHandlerResult,
  type FetchHandler,
  type HandlerCall,
  handlerCall,
  loadHandler,
  setHandlerArgs,
} from "../handler.ts";
import { REQUEST_FINISHED } from "../abort_reasons.ts";
import type { SocketControl } from "../websocket/socket.ts";
import {
  acceptedSocket,
  routeDenoUpgradeWebSocket,
} from "../websocket/upgrade.ts";
import { headerList } from "../http/header_list.ts";
import { DECODED_AWAY, decodedByFetch } from "../http/response.ts";
import { settleBody } from "../http/ready_body.ts";
import { asByteStream } from "../http/byte_stream.ts";
import { MessageBatcher } from "./batch.ts";
import { setImmediate } from "node:timers";
import {
  type Completions,
  FRAMES_TAKEN_REPORT,
  type FromWorker,
  SMALL_BODY_BYTES,
  type ToWorker,
  type WorkerRequest,
} from "./messages.ts";

let handler: FetchHandler | null = null;
/** What the worker holds for a request until the main thread says it ended. */
interface HeldRequest {
  /** Behind `request.signal`. */
  controller: AbortController;
  /** Settles `info.completed`. */
  settle: { resolve: () => void; reject: (reason: unknown) => void };
  /** The body, when it crossed as a stream. */
  body: ReadableStream<Uint8Array> | undefined;
  /** Whether the handler upgraded to a WebSocket. */
  upgraded: boolean;
}

const requests = new Map<number, HeldRequest>();

// Handlers (and frameworks) that call Deno.upgradeWebSocket() get
// mongrel2's sockets too.
routeDenoUpgradeWebSocket();

const outbox = new MessageBatcher<FromWorker>(
  (messages, transfer) => self.postMessage(messages, transfer),
  // What is said instead is made of strings, which always cross.
  (message, error) => {
    const { message: text, stack } = describe(error);
    post(
      message.type === "response"
        ? { type: "error", id: message.id, message: text, stack }
        : {
          type: "log",
          level: "error",
          message: `Cannot pass a ${message.type} message to the main thread: ${
            stack ?? text
          }`,
        },
    );
  },
);

function post(message: FromWorker, transfer: Transferable[] = []): void {
  outbox.add(message, transfer);
}

function describe(error: unknown): { message: string; stack?: string } {
  return error instanceof Error
    ? { message: `${error.name}: ${error.message}`, stack: error.stack }
    : { message: String(error) };
}

// Deno.exit() in a worker ends only the worker, silently: say so first,
// so that the pool replaces it at once instead of after --worker-timeout.
const exit = Deno.exit;
Object.defineProperty(Deno, "exit", {
  value: (code?: number): never => {
    post({ type: "exit", code: code ?? 0 });
    outbox.flush();
    return exit(code);
  },
  configurable: true,
  writable: true,
});

// An uncaught error ends the worker, as it ends deno serve. The main
// thread logs it in the log's format and replaces the worker; left to
// Deno, it would be printed in Deno's own format, colours and all.
self.addEventListener("error", (event) => {
  event.preventDefault();
  post({ type: "crash", ...describe(event.error) });
  outbox.flush();
  self.close();
});

// A handler's stray rejection must not kill the worker and every request
// it holds: log it and keep serving, as the main thread does.
self.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  const { message, stack } = describe(event.reason);
  post({
    type: "log",
    level: "error",
    message: `Unhandled rejection in handler code: ${stack ?? message}`,
  });
});

/**
 * Open sockets by request id, with the reader of their frames, until their
 * connection is lost. They outlive their request, which is complete once
 * the 101 is out.
 */
const sockets = new Map<
  number,
  {
    control: SocketControl;
    frames: ReadableStreamDefaultReader<Uint8Array>;
    /** Behind `request.signal`, which aborts when the socket ends. */
    request: AbortController;
  }
>();

/** A socket's connection is gone, or its frames ended. */
function socketEnded(id: number): void {
  const socket = sockets.get(id);
  if (socket === undefined) return;
  sockets.delete(id);
  socket.frames.cancel().catch(() => {});
  socket.request.abort(REQUEST_FINISHED);
}

/**
 * A socket's frames as they cross to the main thread. The main thread's
 * cancel (the client left) comes through the stream's own channel and may
 * overtake the client's last frames, still queued on this worker's port:
 * it only asks the main thread to confirm, and the answer, `ws-lost`,
 * queued behind those frames, ends the socket.
 */
function framesToMainThread(
  id: number,
  control: SocketControl,
  held: HeldRequest,
): ReadableStream<Uint8Array> {
  const reader = control.frames.getReader();
  sockets.set(id, { control, frames: reader, request: held.controller });
  let opened = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!opened) {
        // The 101 is out: as under deno serve, info.completed resolves
        // before the socket's open event (the main thread's completion
        // comes later, on another channel).
        opened = true;
        held.settle.resolve();
        await undefined; // Its callbacks run before open's.
      }
      const { done, value } = await reader.read();
      if (done) {
        socketEnded(id);
        controller.close();
      } else {
        controller.enqueue(value);
      }
    },
    cancel() {
      post({ type: "ws-cancelled", id });
    },
  }, { highWaterMark: 0 });
}

function complete(completed: Completions): void {
  for (const completion of completed) {
    const id = Math.abs(completion);
    const held = requests.get(id);
    if (held === undefined) continue;
    requests.delete(id);
    if (completion > 0) {
      held.settle.resolve();
      // As on the main thread (and under deno serve): the request is over,
      // or, for a WebSocket, over when the socket ends.
      if (!held.upgraded) held.controller.abort(REQUEST_FINISHED);
    } else {
      held.settle.reject(
        new Deno.errors.Interrupted("HTTP response was not sent successfully"),
      );
    }
    // A body the handler left unread (an upload it refused) would keep its
    // channel to the main thread, and the chunk queued in it, for good:
    // erroring the main thread's side does not free a transferred stream,
    // cancelling this side does.
    const { body } = held;
    if (body !== undefined && !body.locked) body.cancel().catch(() => {});
  }
}

async function handle(message: WorkerRequest): Promise<void> {
  const controller = new AbortController();
  const settled = Promise.withResolvers<void>();
  const completed = settled.promise;
  completed.catch(() => {});
  // A transferred stream is a plain one; the handler gets a byte stream,
  // as on the main thread and under deno serve. Bytes are left to
  // handlerCall(), which makes them one for the methods that have a body.
  let transferred: ReadableStream<Uint8Array> | undefined;
  let requestBody: ReadableStream<Uint8Array> | Uint8Array | null =
    message.body;
  if (message.body instanceof ReadableStream) {
    requestBody = transferred = asByteStream(message.body);
  }
  const held: HeldRequest = {
    controller,
    settle: settled,
    body: transferred,
    upgraded: false,
  };
  requests.set(message.id, held);
  let call: HandlerCall;
  try {
    call = handlerCall(message.source, {
      signal: controller.signal,
      body: requestBody,
      completed,
      acceptKey: message.handshake,
    });
  } catch (error) {
    // The main thread answers 400, as it does for a Request it cannot
    // build itself.
    post({
      type: "error",
      id: message.id,
      message: (error as Error).message,
      stack: undefined,
      unrepresentable: true,
    });
    return;
  }
  const { request, info, handshake } = call;
  try {
    const response = await handler!(request, info);
    checkHandlerResult(response);
    const socket = acceptedSocket(response, handshake);
    held.upgraded = socket !== undefined;
    // A WebSocket's frames must stay a stream; other bodies that are
    // complete already cross as bytes.
    let body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null =
      socket === undefined
        ? response.body
        : framesToMainThread(message.id, socket, held);
    let bodyError: { message: string; stack?: string } | undefined;
    if (body !== null && socket === undefined) {
      try {
        body = await settleBody(body, SMALL_BODY_BYTES);
      } catch (error) {
        body = null;
        bodyError = describe(error);
      }
    }
    post({
      type: "response",
      id: message.id,
      bodyError,
      status: response.status,
      statusText: response.statusText,
      headers: decodedByFetch(response)
        ? headerList(response.headers).filter(([name]) =>
          !DECODED_AWAY.has(name)
        )
        : headerList(response.headers),
      body,
      upgrade: socket !== undefined,
    }, body instanceof ReadableStream ? [body] : []);
  } catch (error) {
    const { message: text, stack } = describe(error);
    post({ type: "error", id: message.id, message: text, stack });
  }
}

/** When this worker last showed the main thread it is alive. */
let lastPong = 0;

/**
 * Pongs count as progress only this often: a worker busy with a backlog
 * (a fast client's frames) sees its pings late, after everything queued
 * before them, yet it is handling messages all along.
 */
const PONG_EVERY_MS = 100;

/** Frames handed to sockets since the last `ws-taken`, and their bytes. */
let framesTaken = 0;
let frameBytesTaken = 0;
/** `ws-frame` messages in the inbox, not yet handed to their sockets. */
let framesQueued = 0;

/**
 * Tells the main thread, now and then and whenever no other frame waits
 * in the inbox, how many of its frames this worker has handed on: it
 * takes no more from mongrel2 while a worker is too far behind, so the
 * last frame it sent is always reported, whatever else (a health ping)
 * waits behind it.
 */
function frameTaken(bytes: number): void {
  framesQueued--;
  framesTaken++;
  frameBytesTaken += bytes;
  if (framesTaken < FRAMES_TAKEN_REPORT && framesQueued > 0) return;
  post({ type: "ws-taken", frames: framesTaken, bytes: frameBytesTaken });
  framesTaken = 0;
  frameBytesTaken = 0;
}

/** Messages received and not yet handled, in order. */
const inbox: ToWorker[] = [];
let handling = false;

self.onmessage = (event: MessageEvent<ToWorker[]>) => {
  // Responses made so far go before this batch is worked on: a handler
  // that keeps the thread busy must not hold the previous ones back.
  outbox.flush();
  for (const message of event.data) {
    if (message.type === "ws-frame") framesQueued++;
  }
  inbox.push(...event.data);
  if (!handling) handleInbox();
};

/**
 * A handler that keeps the thread this long in one go (ms), its callbacks
 * after an `await` included, makes the worker post each response before
 * it takes the next request, for a while ({@linkcode SLOW_HANDLER_MEMORY_MS}).
 * Above the young-generation collections (1–3 ms) that quick handlers meet
 * now and then.
 */
const SLOW_HANDLER_MS = 5;
const SLOW_HANDLER_MEMORY_MS = 1000;
/** When a handler last kept the thread for SLOW_HANDLER_MS or more. */
let lastSlowHandler = -Infinity;

/** Resolves once the event loop turns (shared by whoever waits meanwhile). */
let turnEnded: Promise<void> | undefined;
function nextTurn(): Promise<void> {
  return turnEnded ??= new Promise((resolve) =>
    setImmediate(() => {
      turnEnded = undefined;
      resolve();
    })
  );
}

/**
 * Handles the inbox in order. A request is taken once the one before it
 * has answered or waits for something else (the event loop turned), a
 * socket's frame once the event loop turned after the one before it: the
 * work a handler does after an `await` runs before the next request, as
 * when each request was a message of its own, so its response is not
 * held behind the next handlers' work, and the worker sees its messages
 * (pings among them) as it goes. While handlers are slow to give the
 * thread back, each response is posted before the next request is taken;
 * quick handlers' responses go out together, when the batch is done.
 */
async function handleInbox(): Promise<void> {
  handling = true;
  let next: ToWorker | undefined;
  while ((next = inbox.shift()) !== undefined) {
    const started = performance.now();
    const received = receive(next);
    if (inbox.length === 0) continue;
    if (next.type === "ws-frame") {
      // A socket's listener may work after an await too: its callbacks
      // run before the next frame, as when each frame was a message.
      await nextTurn();
      continue;
    }
    if (next.type !== "request") continue;
    // handle() answers a handler's failure itself: nothing to report here.
    await Promise.race([received, nextTurn()]).catch(() => {});
    const now = performance.now();
    if (now - started >= SLOW_HANDLER_MS) lastSlowHandler = now;
    if (now - lastSlowHandler < SLOW_HANDLER_MEMORY_MS) outbox.flush();
  }
  handling = false;
}

async function receive(message: ToWorker): Promise<void> {
  const now = performance.now();
  if (message.type === "ping" || now - lastPong >= PONG_EVERY_MS) {
    lastPong = now;
    post({ type: "pong" });
    // Not held for the rest of a backlog this turn is working through.
    outbox.flush();
  }
  switch (message.type) {
    case "load":
      try {
        setHandlerArgs(message.args);
        const loaded = await loadHandler(message.module);
        handler = loaded.fetch;
        post({ type: "ready", source: loaded.source });
      } catch (error) {
        post({ type: "load-error", message: (error as Error).message });
      }
      break;
    case "request":
      complete(message.completed);
      await handle(message);
      break;
    case "abort":
      requests.get(message.id)?.controller.abort(
        new DOMException(message.reason, message.name ?? "AbortError"),
      );
      break;
    case "completed":
      complete(message.completed);
      break;
    case "ws-attach": {
      // Frames reach mongrel2 through the main thread's connection writer,
      // so broadcast() from a worker queues per socket: no route offers
      // credits for a shared multi-id reply.
      const socket = sockets.get(message.id);
      socket?.control.attach({
        sender: "",
        id: "",
        send: () => {},
        takeCredits: () => false,
        closing: () => socket.request.abort(REQUEST_FINISHED),
      });
      break;
    }
    case "ws-frame":
      sockets.get(message.id)?.control.receive(message.flags, message.payload);
      frameTaken(message.payload.byteLength);
      break;
    case "ws-go-away":
      if (message.id === undefined) {
        for (const { control } of sockets.values()) control.goAway();
      } else {
        sockets.get(message.id)?.control.goAway();
      }
      break;
    case "ping":
      break; // Answered for every message, above.
    case "ws-lost": {
      socketEnded(message.id);
      break;
    }
  }
}
