/**
 * Temp dirs for tests ({@linkcode tempDir}) and a private mongrel2 for one
 * test: a fresh temp dir with one handler route, started by
 * `runtime/mongrel2` ({@linkcode startSite}). Every test rig (the e2e
 * harness, the upload rig, the process-model and reliability tests) starts
 * its mongrel2 through here.
 *
 * @example
 * ```ts ignore
 * import { startSite } from "./site.ts";
 * await using site = await startSite({ protocol: "json" });
 * console.log(site.url, site.sendSpec, site.recvSpec);
 * ```
 *
 * @module
 */

import {
  type HandlerProtocol,
  type Mongrel2Process,
  type Mongrel2SettingValue,
  startMongrel2,
} from "../runtime/mongrel2/mod.ts";
import { findFreePort } from "../runtime/mongrel2/process.ts";
import { delay } from "./subprocess.ts";

/**
 * A fresh temp dir, removed (with everything in it) on dispose.
 *
 * @example
 * ```ts ignore
 * import { tempDir } from "./site.ts";
 * await using tmp = await tempDir("m2t-");
 * console.log(tmp.path);
 * ```
 */
export interface TempDir extends AsyncDisposable {
  /** The directory, symlinks resolved. */
  readonly path: string;
}

/**
 * Makes a fresh temp dir. Keep `prefix` short where mongrel2's ipc sockets
 * go inside: their paths must fit in 107 bytes.
 *
 * @param prefix The name prefix.
 * @param parent Where to make it. Default: the system temp dir.
 * @returns The directory and its disposer.
 *
 * @example
 * ```ts ignore
 * import { tempDir } from "./site.ts";
 * await using tmp = await tempDir("m2t-");
 * await Deno.writeTextFile(`${tmp.path}/app.ts`, "export default {}");
 * ```
 */
export async function tempDir(
  prefix: string,
  parent?: string,
): Promise<TempDir> {
  const path = await Deno.realPath(
    await Deno.makeTempDir({ prefix, dir: parent }),
  );
  return {
    path,
    [Symbol.asyncDispose]: () =>
      Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

/**
 * Options for {@linkcode startSite}.
 *
 * @example
 * ```ts
 * import type { SiteOptions } from "./site.ts";
 * const options: SiteOptions = { route: "/api/", protocol: "json" };
 * console.assert(options.protocol === "json");
 * ```
 */
export interface SiteOptions {
  /**
   * The temp dir's name prefix. Keep it short: ipc socket paths must fit
   * in 107 bytes. Default `"m2s-"`.
   */
  prefix?: string;
  /** Where to make the temp dir. Default: the system temp dir. */
  parent?: string;
  /** The handler route. Default `"/"`. */
  route?: string;
  /** mongrel2's handler protocol for the route. Default `"tnetstring"`. */
  protocol?: HandlerProtocol;
  /** mongrel2 settings merged over the generated defaults. */
  settings?: Record<string, Mongrel2SettingValue>;
  /** Run mongrel2 chrooted into its dir (root only). */
  chroot?: boolean;
  /** Handler endpoints on `tcp://127.0.0.1` (free ports) instead of `ipc://`. */
  tcp?: boolean;
}

/**
 * A running mongrel2 in its own temp dir.
 *
 * @example
 * ```ts ignore
 * import { startSite } from "./site.ts";
 * await using site = await startSite();
 * await site.restart({ downMs: 100 });
 * console.log(site.mongrel2.pid);
 * ```
 */
export interface Site extends AsyncDisposable {
  /** The base URL, like `http://127.0.0.1:PORT` (kept across restarts). */
  readonly url: string;
  /** The HTTP port (kept across restarts). */
  readonly port: number;
  /** The state dir, symlinks resolved (tests may put modules here). */
  readonly dir: string;
  /** The handler's send_spec (kept across restarts). */
  readonly sendSpec: string;
  /** The handler's recv_spec (kept across restarts). */
  readonly recvSpec: string;
  /** The running mongrel2 (a new one after each restart). */
  readonly mongrel2: Mongrel2Process;
  /**
   * Stops mongrel2 and starts a new one on the same dir, port, server uuid
   * and handler ident, after `downMs` (default 0) of downtime. With
   * `crash`, mongrel2 is killed (SIGKILL) instead: it sends no disconnect
   * notices for its clients.
   */
  restart(options?: { downMs?: number; crash?: boolean }): Promise<void>;
  /** Stops mongrel2 and removes the temp dir (idempotent). */
  close(): Promise<void>;
}

/**
 * Starts mongrel2 with one handler route in a fresh temp dir; the dir is
 * removed again if mongrel2 does not start.
 *
 * @param options Prefix, route, protocol, settings, chroot.
 * @returns The running site.
 *
 * @example
 * ```ts ignore
 * import { startSite } from "./site.ts";
 * await using site = await startSite({
 *   settings: { "limits.content_length": 1024 },
 * });
 * console.log(site.mongrel2.settings["upload.temp_store"]);
 * ```
 */
export async function startSite(options: SiteOptions = {}): Promise<Site> {
  const tmp = await tempDir(options.prefix ?? "m2s-", options.parent);
  const removeDir = () => tmp[Symbol.asyncDispose]();
  // Fixed ids let a restarted mongrel2 take over from the old one.
  const serverUuid = crypto.randomUUID();
  const sendIdent = crypto.randomUUID();
  const specs = options.tcp
    ? {
      sendSpec: `tcp://127.0.0.1:${await findFreePort()}`,
      recvSpec: `tcp://127.0.0.1:${await findFreePort()}`,
    }
    : {};
  const start = (port?: number) =>
    startMongrel2({
      dir: tmp.path,
      port,
      serverUuid,
      chroot: options.chroot ?? false,
      handlers: [{
        route: options.route ?? "/",
        protocol: options.protocol ?? "tnetstring",
        sendIdent,
        ...specs,
      }],
      settings: options.settings,
    });
  let mongrel2: Mongrel2Process;
  try {
    mongrel2 = await start();
  } catch (error) {
    await removeDir();
    throw error;
  }
  const [handler] = mongrel2.handlers;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      await mongrel2.stop();
    } finally {
      await removeDir();
    }
  };
  return {
    url: mongrel2.url,
    port: mongrel2.port,
    dir: mongrel2.dir,
    sendSpec: handler.sendSpec,
    recvSpec: handler.recvSpec,
    get mongrel2() {
      return mongrel2;
    },
    async restart({ downMs = 0, crash = false } = {}) {
      if (crash) Deno.kill(mongrel2.pid, "SIGKILL");
      await mongrel2.stop();
      await delay(downMs);
      mongrel2 = await start(mongrel2.port);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
