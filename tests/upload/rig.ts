/**
 * Test rig for uploads through a real mongrel2: a private mongrel2 (in a
 * fresh temp dir, optionally chrooted) with a small `limits.content_length`
 * and its temp store in the test dir, an in-process m2fetch server wired to
 * the store the way `cli.ts dev` wires it, and a raw TCP client.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mongrel2Info } from "../../runtime/info.ts";
import type { FetchHandler } from "../../runtime/server.ts";
import type { Mongrel2SettingValue } from "../../runtime/mongrel2/mod.ts";
import { type Harness, startHarness, waitFor } from "../e2e/harness.ts";

export { delay, ROOT, waitFor } from "../e2e/harness.ts";

const encoder = new TextEncoder();

/**
 * Options for {@linkcode startRig}.
 *
 * @example
 * ```ts
 * import type { RigOptions } from "./rig.ts";
 * const options: RigOptions = {
 *   handler: () => new Response("ok"),
 *   contentLength: 0,
 * };
 * console.assert(options.contentLength === 0);
 * ```
 */
export interface RigOptions {
  /** The handler. */
  handler: FetchHandler;
  /** Run mongrel2 chrooted into its dir (root only) and tell m2fetch. */
  chroot?: boolean;
  /**
   * Give m2fetch mongrel2's chroot when it is chrooted (default true); false
   * for set-ups that make the reported paths valid outside the chroot.
   */
  passChroot?: boolean;
  /** m2fetch's `--upload-temp-store`. Default: mongrel2's `upload.temp_store`. */
  template?: string;
  /** mongrel2's `limits.content_length`. Default 1024. */
  contentLength?: number;
  /** m2fetch's `upload-invoke`. Default `"start"`. */
  invokeAt?: "start" | "done";
  /** m2fetch's `max-body-size`. */
  maxBodySize?: number;
  /** m2fetch's `keep-alive-interval` (ms). */
  keepAliveInterval?: number;
  /** More mongrel2 settings. */
  settings?: Record<string, Mongrel2SettingValue>;
  /** Echo m2fetch's log to stderr (also with `M2FETCH_E2E_LOG=1`). */
  echoLog?: boolean;
}

/**
 * The e2e {@linkcode Harness} with its m2fetch taking uploads into
 * mongrel2's temp store.
 *
 * @example
 * ```ts ignore
 * import { startRig } from "./rig.ts";
 * await using rig = await startRig({ handler: () => new Response("ok") });
 * console.log(rig.template, await rig.listStore());
 * ```
 */
export interface Rig extends Harness {
  /** The temp store template as mongrel2 sees it. */
  readonly template: string;
  /** The temp store directory on the real file system. */
  readonly storeDir: string;
  /** Names of the files in the temp store directory now. */
  listStore(): Promise<string[]>;
  /** Waits until the temp store is empty; returns what is left. */
  waitStoreEmpty(timeoutMs?: number): Promise<string[]>;
  /**
   * Stops everything, then fails if m2fetch still held a connection or a
   * request, or the temp store was not empty.
   */
  close(): Promise<void>;
}

/**
 * Lists a directory's entry names, sorted.
 *
 * @param dir The directory.
 * @returns The names.
 *
 * @example
 * ```ts ignore
 * import { listDir } from "./rig.ts";
 * console.log(await listDir("/tmp"));
 * ```
 */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/**
 * Waits until a directory is empty (an upload store, after its uploads are
 * gone).
 *
 * @param dir The directory.
 * @param timeoutMs The longest wait. Default 5000.
 * @returns The names still there (empty when it emptied in time).
 *
 * @example
 * ```ts ignore
 * import { waitDirEmpty } from "./rig.ts";
 * assert.deepEqual(await waitDirEmpty("/srv/site/tmp"), []);
 * ```
 */
export async function waitDirEmpty(
  dir: string,
  timeoutMs = 5000,
): Promise<string[]> {
  let left: string[] = [];
  await waitFor(
    async () => (left = await listDir(dir)).length === 0,
    timeoutMs,
  );
  return left;
}

/**
 * Starts mongrel2 (with a small `limits.content_length`) and an in-process
 * m2fetch server for `options.handler`, wired to mongrel2's temp store the
 * way `cli.ts dev` wires it.
 *
 * @param options See {@linkcode RigOptions}.
 * @returns The rig; close it (or `await using`).
 *
 * @example
 * ```ts ignore
 * import { startRig } from "./rig.ts";
 * await using rig = await startRig({ handler: () => new Response("ok") });
 * await rig.fetch("/", { method: "POST", body: new Uint8Array(4096) });
 * ```
 */
export async function startRig(options: RigOptions): Promise<Rig> {
  let template = "";
  let storeDir = "";
  let left: string[] = [];
  const harness = await startHarness(options.handler, {
    chroot: options.chroot ?? false,
    settings: {
      "limits.content_length": options.contentLength ?? 1024,
      ...options.settings,
    },
    echoLog: options.echoLog,
    graceMs: 5000,
    serve: (mongrel2) => {
      template = String(mongrel2.settings["upload.temp_store"]);
      storeDir = mongrel2.resolvePath(
        template.slice(0, template.lastIndexOf("/")),
      );
      return {
        maxBodySize: options.maxBodySize,
        keepAliveInterval: options.keepAliveInterval,
        uploads: {
          store: {
            template: options.template ?? template,
            chroot: mongrel2.chroot && options.passChroot !== false
              ? mongrel2.dir
              : undefined,
          },
          invokeAt: options.invokeAt ?? "start",
        },
      };
    },
    // The store is inside the temp dir: check it before that is removed.
    beforeShutdown: async () =>
      void (left = await waitDirEmpty(storeDir, 3000)),
  });
  const close = async () => {
    await harness.close();
    assert.deepEqual(
      left,
      [],
      `files left in the temp store\n${harness.logs.slice(-15).join("\n")}`,
    );
  };
  return {
    ...harness,
    template,
    storeDir,
    listStore: () => listDir(storeDir),
    waitStoreEmpty: (timeoutMs) => waitDirEmpty(storeDir, timeoutMs),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** What {@linkcode hashRequestBody} saw. */
export interface BodyDigest {
  /** Hex SHA-256 of the body. */
  sha256: string;
  /** Body length. */
  bytes: number;
  /** Number of chunks read. */
  chunks: number;
}

/**
 * Hashes a request body chunk by chunk with `node:crypto` (WebCrypto has no
 * streaming digest), never holding more than one chunk.
 *
 * @param request The request.
 * @returns The digest.
 */
export async function hashRequestBody(request: Request): Promise<BodyDigest> {
  const hash = createHash("sha256");
  let bytes = 0;
  let chunks = 0;
  if (request.body !== null) {
    for await (const chunk of request.body) {
      hash.update(chunk);
      bytes += chunk.length;
      chunks++;
    }
  }
  return { sha256: hash.digest("hex"), bytes, chunks };
}

/**
 * The upload path mongrel2 reported for a request, from the raw message
 * headers (`request.headers` never shows it).
 *
 * @param request The request.
 * @returns The path as mongrel2 sees it, if any.
 */
export function uploadPathOf(request: Request): string | undefined {
  const value = mongrel2Info(request)?.headers["x-mongrel2-upload-start"];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * A deterministic byte stream generated on the fly and hashed as it is
 * produced: `total` bytes in pieces of at most `chunkBytes`, from a 1 MiB
 * pseudo-random block with each piece's index stamped in, so the content
 * does not repeat with a short period.
 */
export class PatternSource {
  /** Total bytes. */
  readonly total: number;
  readonly #chunkBytes: number;
  readonly #block: Uint8Array;
  readonly #hash = createHash("sha256");
  #produced = 0;
  #index = 0;

  /**
   * @param total Total bytes to produce.
   * @param chunkBytes Largest piece.
   * @param seed PRNG seed.
   */
  constructor(total: number, chunkBytes = 64 * 1024, seed = 0x9e3779b9) {
    this.total = total;
    this.#chunkBytes = chunkBytes;
    this.#block = new Uint8Array(1024 * 1024);
    const words = new Uint32Array(this.#block.buffer);
    let x = seed >>> 0 || 1;
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      words[i] = x;
    }
  }

  /** Bytes produced so far. */
  get produced(): number {
    return this.#produced;
  }

  /**
   * The next piece (a fresh buffer), or `null` at the end.
   *
   * @param max Largest piece wanted.
   * @returns The piece.
   */
  next(max = this.#chunkBytes): Uint8Array<ArrayBuffer> | null {
    const size = Math.min(max, this.#chunkBytes, this.total - this.#produced);
    if (size <= 0) return null;
    const offset = this.#produced % this.#block.length;
    const piece = new Uint8Array(size);
    const first = Math.min(size, this.#block.length - offset);
    piece.set(this.#block.subarray(offset, offset + first));
    if (first < size) piece.set(this.#block.subarray(0, size - first), first);
    if (size >= 4) new DataView(piece.buffer).setUint32(0, this.#index >>> 0);
    this.#index++;
    this.#hash.update(piece);
    this.#produced += size;
    return piece;
  }

  /** Hex SHA-256 of everything produced (call once, at the end). */
  digest(): string {
    return this.#hash.digest("hex");
  }

  /**
   * A `ReadableStream` over the remaining pieces (for `fetch` bodies).
   *
   * @returns The stream.
   */
  stream(): ReadableStream<Uint8Array<ArrayBuffer>> {
    return new ReadableStream({
      pull: (controller) => {
        const piece = this.next();
        if (piece === null) controller.close();
        else controller.enqueue(piece);
      },
    }, { highWaterMark: 0 });
  }
}

/**
 * A raw TCP client to mongrel2 that keeps reading in the background, so a
 * response that arrives while the client is still sending is never lost.
 */
export class RawConn implements AsyncDisposable {
  /** The connection. */
  readonly conn: Deno.TcpConn;
  #received: Uint8Array[] = [];
  #receivedBytes = 0;
  #text = "";
  #eof = false;
  #readError: unknown = null;
  #closed = false;
  readonly #pumping: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#pumping = this.#pump();
  }

  /**
   * Connects to 127.0.0.1.
   *
   * @param port The port.
   * @returns The client.
   */
  static async open(port: number): Promise<RawConn> {
    return new RawConn(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async #pump(): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    const decoder = new TextDecoder("latin1");
    try {
      while (true) {
        const n = await this.conn.read(buffer);
        if (n === null) break;
        const chunk = buffer.slice(0, n);
        this.#received.push(chunk);
        this.#receivedBytes += n;
        this.#text += decoder.decode(chunk, { stream: true });
      }
    } catch (error) {
      this.#readError = error;
    }
    this.#eof = true;
  }

  /** Everything received so far, as latin1 text. */
  get text(): string {
    return this.#text;
  }

  /** Bytes received so far. */
  get receivedBytes(): number {
    return this.#receivedBytes;
  }

  /** Whether the server closed (or reset) the connection. */
  get closedByPeer(): boolean {
    return this.#eof;
  }

  /** The read error that ended the connection, if any (e.g. a reset). */
  get readError(): unknown {
    return this.#readError;
  }

  /**
   * Writes all bytes; returns false when the connection broke instead.
   *
   * @param data Bytes or text.
   * @returns Whether everything was written.
   */
  async write(data: string | Uint8Array): Promise<boolean> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    try {
      let written = 0;
      while (written < bytes.length) {
        written += await this.conn.write(bytes.subarray(written));
      }
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Waits until the received text satisfies `test`.
   *
   * @param test The condition.
   * @param timeoutMs The longest wait.
   * @returns Whether it held in time.
   */
  async until(
    test: (text: string) => boolean,
    timeoutMs = 10_000,
  ): Promise<boolean> {
    return await waitFor(() => test(this.#text) || this.#eof, timeoutMs) &&
      test(this.#text);
  }

  /**
   * Waits until one whole response with a Content-Length body is in (after
   * any 100 Continue) and returns its status and body text.
   *
   * @param timeoutMs The longest wait.
   * @returns Status and body, or `null` when none arrived in time.
   */
  async response(
    timeoutMs = 10_000,
  ): Promise<{ status: number; head: string; body: string } | null> {
    let parsed: { status: number; head: string; body: string } | null = null;
    await waitFor(() => {
      parsed = parseResponse(this.#text);
      return parsed !== null || this.#eof;
    }, timeoutMs);
    return parsed ?? parseResponse(this.#text);
  }

  /**
   * Waits until the server closes the connection.
   *
   * @param timeoutMs The longest wait.
   * @returns Whether it closed in time.
   */
  async closed(timeoutMs = 5000): Promise<boolean> {
    return await waitFor(() => this.#eof, timeoutMs);
  }

  /** Closes our side (idempotent) and waits for the reader to stop. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.conn.close();
      } catch {
        // already closed
      }
    }
    await this.#pumping;
  }

  /** Same as {@linkcode RawConn.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Finds the first final (non-1xx) response with a complete Content-Length
 * body in `text`.
 *
 * @param text Bytes received, as latin1.
 * @returns Status, head and body, or `null` when incomplete.
 */
export function parseResponse(
  text: string,
): { status: number; head: string; body: string } | null {
  let at = 0;
  while (true) {
    const end = text.indexOf("\r\n\r\n", at);
    if (end < 0) return null;
    const head = text.slice(at, end);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? NaN);
    if (Number.isNaN(status)) return null;
    if (status < 200) {
      at = end + 4;
      continue;
    }
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (text.length < end + 4 + length) return null;
    return { status, head, body: text.slice(end + 4, end + 4 + length) };
  }
}
