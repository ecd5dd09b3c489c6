/**
 * The two servers the WebSocket tests run a handler module on: m2fetch
 * in-process behind a real mongrel2, and `deno serve` as a subprocess.
 *
 * @module
 */

import {
  findFreePort,
  type Mongrel2SettingValue,
  startMongrel2,
} from "../../runtime/mongrel2/mod.ts";
import { createLogger } from "../../runtime/log.ts";
import {
  type FetchHandler,
  type Mongrel2Server,
  serveMongrel2,
  type ServeMongrel2Options,
} from "../../runtime/server.ts";
import type { Transport } from "../../runtime/transport/transport.ts";
import { ZmqTransport } from "../../runtime/transport/zmq.ts";

export type {
  FetchHandler,
  Mongrel2Server,
  ServeMongrel2Options,
} from "../../runtime/server.ts";
export type { Mongrel2SettingValue } from "../../runtime/mongrel2/mod.ts";

/** A running server on 127.0.0.1. */
export interface TestServer extends AsyncDisposable {
  /** Its HTTP port. */
  readonly port: number;
  /** GETs `path` with the server's own HTTP client and parses JSON. */
  get(path: string): Promise<unknown>;
  /** Closes the HTTP client (its keep-alive connections go away). */
  closeClient(): void;
}

/** m2fetch behind mongrel2, with what the tests inspect. */
export interface M2fetchServer extends TestServer {
  /** The m2fetch server. */
  readonly server: Mongrel2Server;
  /** m2fetch's log lines. */
  readonly logs: string[];
  /** The id counts of the plain replies sent to more than one connection. */
  readonly multiIdReplies: number[];
}

/** Tuning for {@linkcode startM2fetch}. */
export interface M2fetchOptions {
  /** mongrel2 settings over the generated defaults. */
  settings?: Record<string, Mongrel2SettingValue>;
  /** `serveMongrel2` options (timeouts, intervals). */
  serve?: Partial<Omit<ServeMongrel2Options, "handler" | "transport">>;
}

/** Records the id count of every plain reply with more than one id. */
function countingTransport(
  inner: Transport,
  multiIdReplies: number[],
): Transport {
  const decoder = new TextDecoder();
  return {
    messages: () => inner.messages(),
    send(message) {
      const head = decoder.decode(message.subarray(0, 1500));
      const ids = /^\S+ \d+:([\d ]+), /.exec(head)?.[1].trim().split(" ");
      if (ids !== undefined && ids.length > 1) multiIdReplies.push(ids.length);
      inner.send(message);
    },
    stopReceiving: () => inner.stopReceiving(),
    close: () => inner.close(),
  };
}

async function getJson(client: Deno.HttpClient, url: string) {
  return await (await fetch(url, { client })).json();
}

/**
 * Starts mongrel2 in a temp dir and serves `handler` in-process over
 * ZeroMQ.
 *
 * @example
 * ```ts ignore
 * import { startM2fetch } from "./servers.ts";
 * await using server = await startM2fetch(() => new Response("[]"));
 * console.log(await server.get("/"));
 * ```
 */
export async function startM2fetch(
  handler: FetchHandler,
  options: M2fetchOptions = {},
): Promise<M2fetchServer> {
  const dir = await Deno.makeTempDir({ prefix: "m2ws-" });
  const mongrel2 = await startMongrel2({
    dir,
    handlers: [{ route: "/" }],
    settings: options.settings,
  });
  const [route] = mongrel2.handlers;
  const multiIdReplies: number[] = [];
  const logs: string[] = [];
  const server = serveMongrel2({
    handler,
    transport: countingTransport(
      new ZmqTransport({ sendSpec: route.sendSpec, recvSpec: route.recvSpec }),
      multiIdReplies,
    ),
    logger: createLogger({ quiet: true, write: (line) => logs.push(line) }),
    ...options.serve,
  });
  const client = Deno.createHttpClient({});
  let clientOpen = true;
  const closeClient = () => {
    if (clientOpen) client.close();
    clientOpen = false;
  };
  return {
    port: mongrel2.port,
    server,
    logs,
    multiIdReplies,
    get: (path) => getJson(client, `${mongrel2.url}${path}`),
    closeClient,
    async [Symbol.asyncDispose]() {
      closeClient();
      await server.shutdown();
      await mongrel2.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Runs `deno serve` on `module` with `flags`; resolves once `readyPath`
 * answers.
 *
 * @example
 * ```ts ignore
 * import { startDenoServe } from "./servers.ts";
 * await using server = await startDenoServe("./app.ts", ["-A"], "/");
 * ```
 */
export async function startDenoServe(
  module: string,
  flags: string[],
  readyPath: string,
): Promise<TestServer> {
  const port = await findFreePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "serve",
      ...flags,
      "--host",
      "127.0.0.1",
      "--port",
      `${port}`,
      module,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const client = Deno.createHttpClient({});
  let clientOpen = true;
  const closeClient = () => {
    if (clientOpen) client.close();
    clientOpen = false;
  };
  const get = (path: string) =>
    getJson(client, `http://127.0.0.1:${port}${path}`);
  const stop = async () => {
    closeClient();
    // SIGTERM would make deno serve wait for its connections to drain.
    child.kill("SIGKILL");
    await child.status;
  };
  const end = performance.now() + 15_000;
  while (true) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}${readyPath}`, {
        client,
      });
      await response.body?.cancel();
      break;
    } catch (error) {
      if (performance.now() > end) {
        await stop();
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return { port, get, closeClient, [Symbol.asyncDispose]: stop };
}

/**
 * Opens a WebSocket and waits until it is open.
 *
 * @param url The `ws://` URL.
 * @param describe Text for a close before the first message (a server log).
 * @returns The socket and its first message; the message rejects if the
 * socket closes first.
 */
export async function openSocket(
  url: string,
  describe: () => string = () => "",
): Promise<{ socket: WebSocket; firstMessage: Promise<string> }> {
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  const firstMessage = new Promise<string>((resolve, reject) => {
    socket.onmessage = (event) => resolve(event.data);
    socket.onclose = (event) =>
      reject(new Error(`closed ${event.code}: ${describe()}`));
  });
  return { socket, firstMessage };
}
