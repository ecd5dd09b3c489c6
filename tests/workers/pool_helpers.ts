/**
 * For the tests that drive a {@linkcode WorkerPool} in this process, with
 * real handler workers: a pool over a handler module written to a temp dir
 * ({@linkcode withPool}), and requests built as the server builds them from
 * mongrel2 messages ({@linkcode send}).
 *
 * @module
 */

import { handlerCall } from "../../runtime/handler.ts";
import { createLogger } from "../../runtime/log.ts";
import { WorkerPool } from "../../runtime/workers/pool.ts";

/** Options for {@linkcode withPool}. */
export interface PoolTestOptions {
  /** How many workers (default 1). */
  workers?: number;
  /** Gets each log line; quiet when left out. */
  log?: (line: string) => void;
  /** The pool's ping limit (ms). */
  unresponsiveTimeout?: number;
}

/**
 * Runs `fn` with a pool whose handler module is `source`, written as
 * `app.ts` in a temp dir that `fn` may add modules to; closes the pool and
 * removes the dir afterwards.
 *
 * @param source The handler module's text.
 * @param fn What to do with the pool and the dir.
 * @param options Worker count, log and ping limit.
 */
export async function withPool(
  source: string,
  fn: (pool: WorkerPool, dir: string) => Promise<void>,
  options: PoolTestOptions = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "m2pb-" });
  await Deno.writeTextFile(`${dir}/app.ts`, source);
  try {
    const pool = await WorkerPool.start({
      module: `${dir}/app.ts`,
      workers: options.workers ?? 1,
      logger: options.log === undefined
        ? createLogger({ quiet: true })
        : createLogger({ write: options.log }),
      unresponsiveTimeout: options.unresponsiveTimeout,
    });
    try {
      await fn(pool, dir);
    } finally {
      await pool.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** What {@linkcode send} puts in a request besides its path. */
export interface SendInit {
  /** Default GET. */
  method?: string;
  /** Client headers, lower case, as mongrel2 passes them. */
  headers?: Record<string, string>;
  /** The body, as the server hands it over. */
  body?: ReadableStream<Uint8Array> | Uint8Array;
  /** The mongrel2 connection id (default a new one per request). */
  connectionId?: number;
}

let lastConnection = 0;

/**
 * A connection id no request has used yet: the pool picks a request's
 * worker by it (id % workers).
 *
 * @returns The id.
 */
export function nextConnectionId(): number {
  return ++lastConnection;
}

/**
 * Sends a request for `path` through the pool, built as the server builds
 * it from a mongrel2 message, and hands back its completion at once: the
 * test settles it as the server does once the response is out (or, for a
 * handler that timed out, once the server's 504 is).
 *
 * @param pool The pool.
 * @param path The request path.
 * @param init Method, headers, body and connection id.
 * @returns The response to come and the request's completion to settle.
 */
export function start(
  pool: WorkerPool,
  path: string,
  init: SendInit = {},
): { response: Promise<Response>; completed: PromiseWithResolvers<void> } {
  const completed = Promise.withResolvers<void>();
  const { request, info } = handlerCall({
    connectionId: String(init.connectionId ?? nextConnectionId()),
    sender: "pool-test",
    pattern: "/",
    path,
    headers: {
      METHOD: init.method ?? "GET",
      URI: path,
      PATH: path,
      VERSION: "HTTP/1.1",
      REMOTE_ADDR: "127.0.0.1",
      host: "localhost",
      ...init.headers,
    },
  }, {
    signal: new AbortController().signal,
    body: init.body ?? null,
    completed: completed.promise,
    acceptKey: undefined,
  });
  return { response: Promise.resolve(pool.fetch(request, info)), completed };
}

/**
 * Sends a request for `path` through the pool ({@linkcode start}) and
 * waits for its response. The test settles `completed` once it is done
 * with the response, as the server does once the response is out.
 *
 * @param pool The pool.
 * @param path The request path.
 * @param init Method, headers, body and connection id.
 * @returns The response and the request's completion to settle.
 */
export async function send(
  pool: WorkerPool,
  path: string,
  init: SendInit = {},
): Promise<
  { response: Response; completed: PromiseWithResolvers<void> }
> {
  const { response, completed } = start(pool, path, init);
  return { response: await response, completed };
}

/**
 * Sends a request for `path` and reads its response whole.
 *
 * @param pool The pool.
 * @param path The request path.
 * @param init Method, headers, body and connection id.
 * @returns The status and body text.
 */
export async function get(
  pool: WorkerPool,
  path: string,
  init: SendInit = {},
): Promise<{ status: number; text: string }> {
  const { response, completed } = await send(pool, path, init);
  const text = await response.text();
  completed.resolve();
  return { status: response.status, text };
}
