/**
 * End-to-end harness: a real mongrel2 in a temp dir plus an m2fetch server,
 * either in-process ({@linkcode startHarness}) or as a real `cli.ts`
 * subprocess ({@linkcode startCliHarness}), and a raw HTTP/1.1 client for
 * tests that need byte-level control ({@linkcode RawClient}).
 *
 * Every harness is an `AsyncDisposable`; `close()` (or leaving an
 * `await using` scope) shuts the server, stops mongrel2, removes the temp dir
 * and then fails if m2fetch leaked state: the in-process variant asserts that
 * the server's connection table is empty once every client has gone, the
 * subprocess variant that the process exited with 0 and is gone.
 *
 * The tests keep Deno's op and resource sanitizers on: `close()` shuts the
 * ZeroMQ sockets (through `server.shutdown()`), the harness's HTTP client
 * and every child process before a test ends, so nothing needs exempting.
 *
 * @example
 * ```ts ignore
 * import { startHarness } from "./harness.ts";
 * await using h = await startHarness(() => new Response("hi"));
 * const response = await h.fetch("/");
 * console.log(await response.text());
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { concatBytes, decodeByteString } from "../../runtime/protocol/bytes.ts";
import { loadHandler } from "../../runtime/handler.ts";
import { createLogger } from "../../runtime/log.ts";
import {
  type FetchHandler,
  type Mongrel2Server,
  serveMongrel2,
  type ServeMongrel2Options,
} from "../../runtime/server.ts";
import { ZmqTransport } from "../../runtime/transport/zmq.ts";
import type {
  HandlerProtocol,
  Mongrel2Process,
  Mongrel2SettingValue,
} from "../../runtime/mongrel2/mod.ts";

import { type Site, startSite } from "../site.ts";
import {
  delay,
  DENO,
  isRunning,
  ROOT,
  startM2fetch,
  type Subprocess,
  waitFor,
  within,
} from "../subprocess.ts";

export { delay, DENO, isRunning, ROOT, waitFor };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Options for {@linkcode startHarness} and {@linkcode startCliHarness}.
 *
 * @example
 * ```ts
 * import type { HarnessOptions } from "./harness.ts";
 * const options: HarnessOptions = { protocol: "json" };
 * console.assert(options.protocol === "json");
 * ```
 */
export interface HarnessOptions {
  /** mongrel2's handler protocol for the route. Default `"tnetstring"`. */
  protocol?: HandlerProtocol;
  /** The handler route. Default `"/"`. */
  route?: string;
  /** mongrel2 settings merged over the generated defaults. */
  settings?: Record<string, Mongrel2SettingValue>;
  /** Run mongrel2 chrooted into its dir (root only). */
  chroot?: boolean;
  /**
   * Extra `serveMongrel2` options (timeouts, `onError`, uploads), or a
   * function that makes them from the started mongrel2 (for options that
   * depend on its settings); in-process only.
   */
  serve?:
    | ServeOptions
    | ((mongrel2: Mongrel2Process) => ServeOptions);
  /**
   * Runs in `close()` once the clients left and before m2fetch and mongrel2
   * stop (the temp dir still exists); in-process only.
   */
  beforeShutdown?: () => Promise<void>;
  /** Echo m2fetch's log lines to stderr (also when `M2FETCH_E2E_LOG=1`). */
  echoLog?: boolean;
  /**
   * How long `close()` waits for the connection table to empty once the
   * harness's own HTTP client is closed (ms). Default 3000.
   */
  graceMs?: number;
}

/** `serveMongrel2` options a harness passes through. */
export type ServeOptions = Partial<
  Omit<ServeMongrel2Options, "handler" | "transport">
>;

/**
 * A real mongrel2 with an in-process m2fetch server in front of a handler.
 *
 * @example
 * ```ts ignore
 * import { startHarness } from "./harness.ts";
 * await using h = await startHarness("examples/hello.ts");
 * console.log(h.url, h.server.connections);
 * ```
 */
export interface Harness extends AsyncDisposable {
  /** mongrel2's base URL, like `http://127.0.0.1:PORT` (no trailing slash). */
  readonly url: string;
  /** mongrel2's HTTP port. */
  readonly port: number;
  /** The running mongrel2. */
  readonly mongrel2: Mongrel2Process;
  /** The m2fetch server. */
  readonly server: Mongrel2Server;
  /** m2fetch's log lines so far. */
  readonly logs: string[];
  /**
   * `fetch` through mongrel2 with the harness's own HTTP client, so that
   * `close()` can close its pooled connections before checking for leaks.
   * A path is resolved against {@linkcode Harness.url}.
   */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** Opens a raw TCP connection to mongrel2. */
  raw(): Promise<RawClient>;
  /**
   * Shuts everything down and removes the temp dir, then throws if the
   * connection table did not empty within the grace period.
   */
  close(): Promise<void>;
}

function wantsEcho(options: HarnessOptions): boolean {
  return options.echoLog === true ||
    Deno.env.get("M2FETCH_E2E_LOG") === "1";
}

function startSiteFor(prefix: string, options: HarnessOptions): Promise<Site> {
  return startSite({
    prefix,
    route: options.route,
    protocol: options.protocol,
    settings: options.settings,
    chroot: options.chroot,
  });
}

/**
 * Starts a real mongrel2 (in a fresh temp dir, one handler route, `"/"` by
 * default) and an in-process m2fetch server (`serveMongrel2` over a
 * `ZmqTransport` on mongrel2's specs) for `app`: a handler function, or a
 * module path (relative to the repository root) loaded like the CLI does.
 *
 * @param app The handler, or a module path.
 * @param options Protocol, settings, server options.
 * @returns The running harness; resolves once replies can reach mongrel2.
 *
 * @example
 * ```ts ignore
 * import { startHarness } from "./harness.ts";
 * await using h = await startHarness((req) => new Response(req.url), {
 *   protocol: "json",
 * });
 * console.log(await (await h.fetch("/x?y=1")).text());
 * ```
 */
export async function startHarness(
  app: FetchHandler | string,
  options: HarnessOptions = {},
): Promise<Harness> {
  const handler = typeof app === "string"
    ? (await loadHandler(
      app.startsWith("/") ? app : `${ROOT}/${app}`,
    )).fetch
    : app;
  const site = await startSiteFor("m2e-", options);
  const { mongrel2 } = site;
  const logs: string[] = [];
  const echo = wantsEcho(options);
  const logger = createLogger({
    write: (line) => {
      logs.push(line);
      if (echo) console.error(line);
    },
  });
  const transport = new ZmqTransport({
    sendSpec: site.sendSpec,
    recvSpec: site.recvSpec,
    onError: (error) => logger.error("ZeroMQ transport error", error),
  });
  const server = serveMongrel2({
    logger,
    ...(typeof options.serve === "function"
      ? options.serve(mongrel2)
      : options.serve),
    handler,
    transport,
  });
  const client = Deno.createHttpClient({});
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    // Our clients leave first: mongrel2 then reports their disconnects, and
    // every connection m2fetch tracked must be forgotten.
    client.close();
    const drained = await waitFor(
      () => server.connections === 0 && server.inFlight === 0,
      options.graceMs ?? 3000,
    );
    const left = { connections: server.connections, inFlight: server.inFlight };
    try {
      await options.beforeShutdown?.();
      await server.shutdown(2000);
    } finally {
      await site.close();
    }
    assert.ok(
      drained,
      `m2fetch leaked state: ${left.connections} connection(s) and ${left.inFlight} request(s) in flight after every client left\n${
        logs.slice(-20).join("\n")
      }`,
    );
  };
  try {
    const ready = await waitFor(() => transport.ready, 10_000);
    assert.ok(ready, "mongrel2 never subscribed to m2fetch's replies");
  } catch (error) {
    await close().catch(() => {});
    throw error;
  }
  return {
    url: mongrel2.url,
    port: mongrel2.port,
    mongrel2,
    server,
    logs,
    fetch: (path, init) =>
      fetch(new URL(path, mongrel2.url), { ...init, client }),
    raw: () => RawClient.connect(mongrel2.port),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * A real mongrel2 with m2fetch running as a `deno run -A cli.ts` subprocess.
 *
 * @example
 * ```ts ignore
 * import { startCliHarness } from "./harness.ts";
 * await using h = await startCliHarness("examples/hello.ts");
 * console.log(h.process.pid, h.output());
 * ```
 */
export interface CliHarness extends AsyncDisposable {
  /** mongrel2's base URL. */
  readonly url: string;
  /** mongrel2's HTTP port. */
  readonly port: number;
  /** The running mongrel2. */
  readonly mongrel2: Mongrel2Process;
  /** The m2fetch process. */
  readonly process: Deno.ChildProcess;
  /** m2fetch's stdout and stderr so far. */
  output(): string;
  /** Opens a raw TCP connection to mongrel2. */
  raw(): Promise<RawClient>;
  /**
   * Sends `signal` to m2fetch and resolves with its exit status; mongrel2
   * keeps running until `close()`.
   */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  /**
   * Stops m2fetch (SIGTERM) and mongrel2, removes the temp dir, then throws
   * unless m2fetch exited with 0.
   */
  close(): Promise<void>;
}

/**
 * Starts a real mongrel2 and `deno run -A cli.ts --send-spec … --recv-spec …
 * APP` as a subprocess; resolves once m2fetch logged that it is serving
 * (so `args` must not hold `--quiet`, which drops that line).
 *
 * @param app The module path, relative to the repository root or absolute.
 * @param options Protocol, settings; `args` are extra CLI flags.
 * @returns The running harness.
 *
 * @example
 * ```ts ignore
 * import { startCliHarness } from "./harness.ts";
 * await using h = await startCliHarness("examples/hello.ts");
 * const status = await h.stop("SIGTERM");
 * console.log(status.code);
 * ```
 */
export async function startCliHarness(
  app: string,
  options: HarnessOptions & { args?: string[] } = {},
): Promise<CliHarness> {
  const site = await startSiteFor("m2c-", options);
  let m2fetch: Subprocess;
  try {
    m2fetch = await startM2fetch(site, app, {
      args: options.args,
      echo: wantsEcho(options) || undefined,
    });
  } catch (error) {
    await site.close();
    throw error;
  }
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    const alreadyExited = m2fetch.exited();
    let result: Deno.CommandStatus;
    try {
      result = await m2fetch.stop();
    } finally {
      await site.close();
    }
    if (!alreadyExited) {
      assert.equal(
        result.code,
        0,
        `m2fetch exited with ${result.code} (signal ${result.signal})\n${m2fetch.output()}`,
      );
    }
    assert.ok(
      !isRunning(m2fetch.process.pid),
      `m2fetch (pid ${m2fetch.process.pid}) is still running`,
    );
  };
  return {
    url: site.url,
    port: site.port,
    mongrel2: site.mongrel2,
    process: m2fetch.process,
    output: m2fetch.output,
    raw: () => RawClient.connect(site.port),
    stop: m2fetch.stop,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * A `deno serve` subprocess started by {@linkcode startDenoServe}.
 *
 * @example
 * ```ts ignore
 * import { startDenoServe } from "./harness.ts";
 * await using direct = await startDenoServe("examples/hello.ts");
 * console.log(direct.url, direct.output());
 * ```
 */
export interface DenoServe extends AsyncDisposable {
  /** The base URL, like `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** The port. */
  readonly port: number;
  /** Resolves with the exit status once `deno serve` has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Its stderr so far. */
  output(): string;
}

/**
 * Starts `deno serve --port PORT APP` from the repository root and resolves
 * once the port answers.
 *
 * @param app The module path, relative to the repository root or absolute.
 * @returns The running `deno serve`; disposing it stops it.
 *
 * @example
 * ```ts ignore
 * import { startDenoServe } from "./harness.ts";
 * await using direct = await startDenoServe("examples/hello.ts");
 * console.log(direct.url);
 * ```
 */
export async function startDenoServe(
  app: string,
): Promise<DenoServe> {
  const port = freePort();
  const child = new Deno.Command(DENO, {
    args: [
      "serve",
      "--quiet",
      "-A",
      "--port",
      String(port),
      "--host",
      "127.0.0.1",
      app,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const chunks: string[] = [];
  const pumped = (async () => {
    for await (const chunk of child.stderr) chunks.push(decoder.decode(chunk));
  })();
  const dispose = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Exited.
    }
    await child.status;
    await pumped;
  };
  const deadline = performance.now() + 30_000;
  while (true) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      break;
    } catch {
      if (performance.now() > deadline) {
        await dispose();
        throw new Error(`deno serve ${app} did not start:\n${chunks.join("")}`);
      }
      await delay(50);
    }
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    status: child.status,
    output: () => chunks.join(""),
    [Symbol.asyncDispose]: dispose,
  };
}

/**
 * A TCP port that is free right now.
 *
 * @returns The port.
 *
 * @example
 * ```ts
 * import { freePort } from "./harness.ts";
 * console.assert(freePort() > 0);
 * ```
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * One HTTP response as read off the wire by {@linkcode RawClient}.
 *
 * @example
 * ```ts
 * import type { RawResponse } from "./harness.ts";
 * const r: RawResponse = {
 *   statusLine: "HTTP/1.1 200 OK", version: "HTTP/1.1", status: 200,
 *   headers: [["content-length", "0"]], body: new Uint8Array(), head: "",
 * };
 * console.assert(r.status === 200);
 * ```
 */
export interface RawResponse {
  /** The status line, e.g. `HTTP/1.1 200 OK`. */
  statusLine: string;
  /** The HTTP version of the status line. */
  version: string;
  /** The status code. */
  status: number;
  /** Header lines in wire order, names lower-cased, values as sent. */
  headers: [string, string][];
  /** The de-framed body (de-chunked for chunked responses). */
  body: Uint8Array;
  /** The head exactly as received (status line and headers, without the blank line). */
  head: string;
}

/**
 * Returns every value of a header in a {@linkcode RawResponse}.
 *
 * @param response The response.
 * @param name The lower-case header name.
 * @returns The values in wire order.
 *
 * @example
 * ```ts
 * import { headerValues } from "./harness.ts";
 * const values = headerValues({
 *   statusLine: "", version: "", status: 200, body: new Uint8Array(), head: "",
 *   headers: [["set-cookie", "a=1"], ["set-cookie", "b=2"]],
 * }, "set-cookie");
 * console.assert(values.length === 2);
 * ```
 */
export function headerValues(response: RawResponse, name: string): string[] {
  return response.headers.filter(([key]) => key === name).map(([, v]) => v);
}

/** Options for {@linkcode RawClient.readResponse}. */
export interface ReadResponseOptions {
  /** The request was HEAD: no body follows whatever the headers say. */
  head?: boolean;
  /** Give up after this long (ms). Default 10 000. */
  timeoutMs?: number;
}

/**
 * A raw HTTP/1.x client over one TCP connection: writes bytes as given,
 * reads responses with their exact framing, and notices when the server
 * closes.
 *
 * @example
 * ```ts ignore
 * import { RawClient } from "./harness.ts";
 * await using client = await RawClient.connect(8080);
 * await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
 * const response = await client.readResponse();
 * console.log(response.status);
 * ```
 */
export class RawClient implements AsyncDisposable {
  /** The TCP connection. */
  readonly conn: Deno.TcpConn;
  #buffer: Uint8Array = new Uint8Array(0);
  #eof = false;
  #closed = false;

  /**
   * Wraps an open connection.
   *
   * @param conn The connection.
   */
  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /**
   * Connects to 127.0.0.1.
   *
   * @param port The port.
   * @returns The client.
   */
  static async connect(port: number): Promise<RawClient> {
    return new RawClient(
      await Deno.connect({ hostname: "127.0.0.1", port }),
    );
  }

  /**
   * Writes all bytes (a string is UTF-8 encoded).
   *
   * @param data The bytes.
   */
  async write(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    let written = 0;
    while (written < bytes.length) {
      written += await this.conn.write(bytes.subarray(written));
    }
  }

  /**
   * Reads once from the socket into the buffer.
   *
   * @param size Most bytes to read.
   * @returns The number of bytes read, or `null` at EOF.
   */
  async fill(size = 65536): Promise<number | null> {
    if (this.#eof) return null;
    const chunk = new Uint8Array(size);
    const n = await this.conn.read(chunk);
    if (n === null) {
      this.#eof = true;
      return null;
    }
    const next = new Uint8Array(this.#buffer.length + n);
    next.set(this.#buffer);
    next.set(chunk.subarray(0, n), this.#buffer.length);
    this.#buffer = next;
    return n;
  }

  /**
   * Takes up to `max` buffered bytes, reading once when none are buffered.
   *
   * @param max Most bytes to return.
   * @returns The bytes, or `null` at EOF with nothing buffered.
   */
  async readSome(max = 65536): Promise<Uint8Array | null> {
    if (this.#buffer.length === 0 && (await this.fill(max)) === null) {
      return null;
    }
    const take = Math.min(max, this.#buffer.length);
    const out = this.#buffer.slice(0, take);
    this.#buffer = this.#buffer.subarray(take);
    return out;
  }

  /** Bytes read but not yet consumed. */
  get buffered(): number {
    return this.#buffer.length;
  }

  async #readUntil(marker: Uint8Array): Promise<Uint8Array> {
    let from = 0;
    while (true) {
      const at = indexOf(this.#buffer, marker, from);
      if (at >= 0) {
        const out = this.#buffer.slice(0, at);
        this.#buffer = this.#buffer.subarray(at + marker.length);
        return out;
      }
      from = Math.max(0, this.#buffer.length - marker.length + 1);
      if ((await this.fill()) === null) {
        throw new Error(
          `Connection closed before ${JSON.stringify(decoder.decode(marker))}`,
        );
      }
    }
  }

  async #readExactly(length: number): Promise<Uint8Array> {
    while (this.#buffer.length < length) {
      if ((await this.fill(Math.max(65536, length))) === null) {
        throw new Error(
          `Connection closed after ${this.#buffer.length} of ${length} body bytes`,
        );
      }
    }
    const out = this.#buffer.slice(0, length);
    this.#buffer = this.#buffer.subarray(length);
    return out;
  }

  /**
   * Reads the status line and headers of the next response.
   *
   * @param timeoutMs The longest wait: a missing response fails the test
   *   instead of hanging it.
   * @returns The head, without a body.
   */
  async readHead(timeoutMs = 10_000): Promise<RawResponse> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`No response head within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.#readHead(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #readHead(): Promise<RawResponse> {
    const head = latin1(await this.#readUntil(encoder.encode("\r\n\r\n")));
    const [statusLine, ...lines] = head.split("\r\n");
    const match = /^(HTTP\/1\.[01]) (\d{3})/.exec(statusLine);
    if (match === null) throw new Error(`Bad status line: ${statusLine}`);
    const headers = lines.map((line): [string, string] => {
      const colon = line.indexOf(":");
      return [
        line.slice(0, colon).toLowerCase(),
        line.slice(colon + 1).trim(),
      ];
    });
    return {
      statusLine,
      version: match[1],
      status: Number(match[2]),
      headers,
      body: new Uint8Array(0),
      head,
    };
  }

  /**
   * Reads one whole response, honouring content-length, chunked and
   * close-delimited framing, and the no-body rules (HEAD, 1xx, 204, 304).
   *
   * @param options HEAD or not, and a timeout.
   * @returns The response.
   */
  async readResponse(options: ReadResponseOptions = {}): Promise<RawResponse> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`No response within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.#readResponse(options), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #readResponse(options: ReadResponseOptions): Promise<RawResponse> {
    const response = await this.#readHead();
    const status = response.status;
    if (
      options.head || status < 200 || status === 204 || status === 304
    ) {
      return response;
    }
    // The same de-framing as streamed bodies, collected.
    response.body = concat(await Array.fromAsync(this.readBody(response)));
    return response;
  }

  /**
   * Yields the body of a response whose head was read with
   * {@linkcode RawClient.readHead}, piece by piece as it arrives (never
   * more than `maxPiece` bytes at once), de-chunking chunked bodies: for
   * bodies too large to hold in memory.
   *
   * @param response The head.
   * @param maxPiece Most bytes per piece, or a function asked before each read.
   * @returns The body pieces.
   */
  async *readBody(
    response: RawResponse,
    maxPiece: number | (() => number) = 65536,
  ): AsyncGenerator<Uint8Array> {
    const limit = typeof maxPiece === "number" ? () => maxPiece : maxPiece;
    const [length] = headerValues(response, "content-length");
    const [coding] = headerValues(response, "transfer-encoding");
    if (coding?.toLowerCase() === "chunked") {
      while (true) {
        const line = latin1(await this.#readUntil(encoder.encode("\r\n")));
        const size = parseInt(line.split(";")[0], 16);
        if (!Number.isFinite(size)) throw new Error(`Bad chunk size ${line}`);
        if (size === 0) {
          await this.#readUntil(encoder.encode("\r\n"));
          return;
        }
        yield* this.#take(size, limit);
        const crlf = await this.#readExactly(2);
        if (crlf[0] !== 0x0d || crlf[1] !== 0x0a) {
          throw new Error("Chunk data not followed by CRLF");
        }
      }
    } else if (length !== undefined) {
      yield* this.#take(Number(length), limit);
    } else {
      let piece: Uint8Array | null;
      while ((piece = await this.readSome(limit())) !== null) yield piece;
    }
  }

  async *#take(count: number, limit: () => number) {
    let remaining = count;
    while (remaining > 0) {
      const piece = await this.readSome(Math.min(limit(), remaining));
      if (piece === null) {
        throw new Error(`Connection closed with ${remaining} bytes to go`);
      }
      remaining -= piece.length;
      yield piece;
    }
  }

  /**
   * Waits until the server closes the connection, discarding bytes.
   *
   * @param timeoutMs The longest wait.
   * @returns The bytes that came before EOF, or `null` when still open.
   */
  async waitForClose(timeoutMs = 5000): Promise<Uint8Array | null> {
    const extra: Uint8Array[] = [];
    const deadline = performance.now() + timeoutMs;
    if (this.#buffer.length > 0) extra.push(this.#buffer.slice());
    this.#buffer = new Uint8Array(0);
    while (!this.#eof) {
      const left = deadline - performance.now();
      if (left <= 0) return null;
      const chunk = new Uint8Array(65536);
      const n = await within(
        this.conn.read(chunk).catch(() => null),
        left,
        "timeout" as const,
      );
      if (n === "timeout") {
        // The read stays pending; closing the connection cancels it.
        return null;
      }
      if (n === null) this.#eof = true;
      else extra.push(chunk.slice(0, n));
    }
    return concat(extra);
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Same as {@linkcode RawClient.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number) {
  outer: for (let i = from; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

function latin1(bytes: Uint8Array): string {
  return decodeByteString(bytes, 0, bytes.length);
}

/** Concatenates byte arrays (the runtime's own helper). */
export const concat: (parts: readonly Uint8Array[]) => Uint8Array = concatBytes;

/**
 * Runs `curl` and returns its status, stdout bytes and stderr text.
 *
 * @param args curl's arguments.
 * @returns The result.
 *
 * @example
 * ```ts ignore
 * import { curl } from "./harness.ts";
 * const { code, stdout } = await curl(["-s", "http://127.0.0.1:8080/"]);
 * ```
 */
export async function curl(
  args: string[],
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const output = await new Deno.Command("curl", {
    args: ["--max-time", "20", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: output.stdout,
    stderr: decoder.decode(output.stderr),
  };
}
