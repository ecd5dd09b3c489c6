/**
 * Messages between the main thread (which owns the ZeroMQ sockets and every
 * connection's state) and the Web Workers that run the handler module.
 * Bodies cross as transferred `ReadableStream`s, so they stream both ways
 * with back-pressure and are never copied whole; a body that is complete
 * when it is sent crosses as bytes instead, which costs far less than a
 * stream's MessageChannel. A WebSocket lives in the
 * worker whose handler upgraded it: its outgoing frames are the transferred
 * body of the upgrade response, and its incoming frames are forwarded as
 * `ws-frame` messages.
 *
 * @module
 */

import type { Mongrel2RequestInfo } from "../info.ts";

/** A request for the worker's handler. */
export interface WorkerRequest {
  /** Message kind. */
  type: "request";
  /** Unique per worker. */
  id: number;
  /**
   * What the worker builds the `Request` from: mongrel2's facts, which hold
   * every header once (the worker rebuilds the request as the main thread
   * did).
   */
  source: Mongrel2RequestInfo;
  /** The body: transferred, or small and complete as bytes. */
  body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null;
  /** For a WebSocket handshake: the accept key mongrel2 computed. */
  handshake: string | undefined;
  /** Earlier requests whose responses ended ({@linkcode Completions}). */
  completed: Completions;
}

/**
 * Requests whose responses ended, told to the worker in batches: the id
 * when the response was sent, its negation when it failed. Riding on the
 * next request spares each request a message of its own; a timer sends
 * them when no request comes.
 */
export type Completions = number[];

/** Messages the main thread sends a worker. */
export type ToWorker =
  /** Load the handler module, with its own `Deno.args`. */
  | { type: "load"; module: string; args: readonly string[] }
  | WorkerRequest
  | { type: "abort"; id: number; reason: string; name?: string }
  | { type: "completed"; completed: Completions }
  | { type: "ping" }
  | { type: "ws-attach"; id: number }
  | { type: "ws-frame"; id: number; flags: string; payload: Uint8Array }
  /** The socket's connection is gone (queued behind its last frames). */
  | { type: "ws-lost"; id: number }
  /** Close a socket (every socket of the worker without `id`) with 1001. */
  | { type: "ws-go-away"; id?: number };

/** Messages a worker sends the main thread. */
export type FromWorker =
  | { type: "ready"; source: string }
  | { type: "load-error"; message: string }
  | {
    type: "response";
    id: number;
    status: number;
    statusText: string;
    headers: [string, string][];
    /** The body: transferred, or small and complete as bytes. */
    body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null;
    /**
     * Set when the body failed before any of it could be sent: the main
     * thread answers as it does for such a body of its own (500).
     */
    bodyError?: { message: string; stack?: string };
    /**
     * Whether the response is a 101 that upgrades to a WebSocket (its body
     * is then the socket's outgoing frames).
     */
    upgrade: boolean;
  }
  | {
    type: "error";
    id: number;
    message: string;
    stack: string | undefined;
    /**
     * Set when the `Request` could not be built from mongrel2's facts (a
     * bad request, answered 400) rather than the handler failing.
     */
    unrepresentable?: boolean;
  }
  /**
   * A sign of life: the answer to a ping, and, while the worker works
   * through a backlog that holds its pings back, sent unasked.
   */
  | { type: "pong" }
  /**
   * The main thread cancelled a socket's frames (its client left): it
   * answers with `ws-lost` behind the frames it sent before.
   */
  | { type: "ws-cancelled"; id: number }
  /**
   * The worker has handed this many `ws-frame` messages (holding `bytes`
   * of payload) to its sockets since it last said so: the main thread
   * bounds how far a worker may fall behind.
   */
  | { type: "ws-taken"; frames: number; bytes: number }
  /** The handler called `Deno.exit()`: the worker is ending. */
  | { type: "exit"; code: number }
  /** Handler code threw outside any request: the worker is ending. */
  | { type: "crash"; message: string; stack?: string }
  | { type: "log"; level: "error" | "warn"; message: string };

/**
 * How many bytes of a body are read ahead to find it complete, so that it
 * crosses between threads as bytes rather than as a stream (a body made of
 * one chunk, from bytes or a string, crosses as bytes at any size).
 */
export const SMALL_BODY_BYTES = 64 * 1024;

/**
 * Most client frames a worker may have been sent and not yet handed to
 * its sockets. mongrel2 has no flow control for what clients send, so
 * beyond this (or {@linkcode MAX_FRAME_BYTES_BEHIND}) the main thread
 * takes no more messages from mongrel2 until the worker is half-way back,
 * as a handler busy on the main thread holds them; the worker says what
 * it took every {@linkcode FRAMES_TAKEN_REPORT} frames, and whenever no
 * more of them wait in its inbox.
 */
export const MAX_FRAMES_BEHIND = 1024;

/** Most payload bytes of the frames a worker may be behind on. */
export const MAX_FRAME_BYTES_BEHIND = 16 * 1024 * 1024;

/** How many frames a worker takes between its `ws-taken` reports at most. */
export const FRAMES_TAKEN_REPORT = 128;
