/**
 * Reads one handler's wiring out of a mongrel2 `config.sqlite` (the
 * database `m2sh load` writes), so that `--mongrel2-config` alone tells
 * m2fetch where to connect and where uploads land.
 *
 * The database is opened read-only and only read. The tables used are the
 * ones m2sh 1.12 creates: `server`, `host`, `route` (a route's
 * `target_type` is `handler`, `dir` or `proxy`), `handler` and `setting`
 * (settings are global to the database).
 *
 * Paths follow mongrel2's rules (docs/operations.md, "Paths"): mongrel2
 * resolves `ipc://` paths and `upload.temp_store` after it chroots, so
 *
 * - when it chroots (run as root with `chroot` set), a path `P` is really
 *   `chroot + P`, with the chroot itself relative to mongrel2's working
 *   directory (`chroot="./"`);
 * - when it does not (no chroot, or a non-root "test mode" run), relative
 *   paths are relative to its working directory.
 *
 * mongrel2's working directory cannot be read from the database; it is
 * taken to be the database's directory (`cd site && m2sh start`), unless
 * {@linkcode DiscoverOptions.cwd} says otherwise.
 *
 * @example Discover the only handler
 * ```ts
 * import { discoverHandler } from "./discover.ts";
 * const found = discoverHandler("/srv/site/config.sqlite");
 * console.log(found.sendSpec, found.recvSpec, found.uploads?.template);
 * ```
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { posix } from "node:path";
import { MAX_IPC_PATH_BYTES } from "./config.ts";
import { errorMessage } from "../error_message.ts";

/**
 * Which handler to pick and how mongrel2 runs.
 *
 * @example
 * ```ts
 * import type { DiscoverOptions } from "./discover.ts";
 * const options: DiscoverOptions = { route: "localhost:/" };
 * console.assert(options.route === "localhost:/");
 * ```
 */
export interface DiscoverOptions {
  /** The handler's `send_ident` (or its `send_spec` as written in the config). */
  handler?: string;
  /** A route, `HOST:PATTERN` (e.g. `localhost:/`), whose target is the handler. */
  route?: string;
  /**
   * mongrel2's working directory, against which a relative chroot and
   * relative paths are resolved. Default: the database's directory.
   */
  cwd?: string;
  /**
   * Whether mongrel2 chroots. Default: when its server has a `chroot`
   * (mongrel2 chroots when started as root, the way deployments run it).
   * Pass `false` for a non-root mongrel2 that ignores its chroot.
   */
  chrooted?: boolean;
}

/**
 * A route in the database.
 *
 * @example
 * ```ts
 * import type { DiscoveredRoute } from "./discover.ts";
 * const route: DiscoveredRoute = { host: "localhost", pattern: "/", server: "main", target: "handler" };
 * console.assert(route.pattern === "/");
 * ```
 */
export interface DiscoveredRoute {
  /** The host name (`Host(name=…)`). */
  host: string;
  /** The route pattern. */
  pattern: string;
  /** The name (or uuid, when unnamed) of the server the host belongs to. */
  server: string;
  /** What serves it: `handler`, `dir` or `proxy`. */
  target: string;
}

/**
 * The server a handler is reached through.
 *
 * @example
 * ```ts
 * import type { DiscoveredServer } from "./discover.ts";
 * const server: DiscoveredServer = { uuid: "u", name: "main", chroot: "./", root: "/srv/site", cwd: "/srv/site" };
 * console.assert(server.root === "/srv/site");
 * ```
 */
export interface DiscoveredServer {
  /** The server uuid (what `mongrel2 config.sqlite UUID` starts). */
  uuid: string;
  /** The server name. */
  name: string;
  /** `chroot` as written in the config ("" for none). */
  chroot: string;
  /** The chroot on the real filesystem, when mongrel2 chroots; else undefined. */
  root: string | undefined;
  /** mongrel2's assumed working directory. */
  cwd: string;
}

/**
 * Everything m2fetch needs about one handler.
 *
 * @example
 * ```ts
 * import { discoverHandler } from "./discover.ts";
 * const found = discoverHandler("config.sqlite", { route: "localhost:/" });
 * console.log(found.sendIdent, found.server.root);
 * ```
 */
export interface DiscoveredHandler {
  /** The database, as an absolute path. */
  database: string;
  /** The identity mongrel2 puts on requests (and expects on replies). */
  sendIdent: string;
  /** The reply prefix mongrel2 subscribes to. */
  recvIdent: string;
  /** The header encoding. */
  protocol: "tnetstring" | "json";
  /** `send_spec` as written in the config. */
  configSendSpec: string;
  /** `recv_spec` as written in the config. */
  configRecvSpec: string;
  /** Where m2fetch's PULL socket connects. */
  sendSpec: string;
  /** Where m2fetch's XPUB socket connects. */
  recvSpec: string;
  /** The routes that lead to this handler. */
  routes: DiscoveredRoute[];
  /** The server those routes belong to. */
  server: DiscoveredServer;
  /**
   * The upload temp store, when `upload.temp_store` is set: the template as
   * mongrel2 sees it and the chroot its paths are relative to.
   */
  uploads: { template: string; chroot?: string; mode: string } | undefined;
  /** `limits.content_length`: larger bodies take the upload path. */
  contentLength: number;
  /** Whether `download.flow_control` is on. */
  flowControl: boolean;
  /** Things that work but deserve a log line. */
  warnings: string[];
}

/**
 * The database is missing, is not a mongrel2 config, or the handler cannot
 * be picked (not found, or ambiguous). The message lists what is there.
 *
 * @example
 * ```ts
 * import { DiscoveryError } from "./discover.ts";
 * const error = new DiscoveryError("Cannot use x: no handler");
 * console.assert(error.name === "DiscoveryError");
 * ```
 */
export class DiscoveryError extends Error {
  /**
   * Creates the error.
   *
   * @param message What failed and why.
   */
  constructor(message: string) {
    super(message);
    this.name = "DiscoveryError";
  }
}

interface HandlerRow {
  id: number;
  send_spec: string;
  send_ident: string;
  recv_spec: string;
  recv_ident: string;
  raw_payload: number | null;
  protocol: string | null;
}

interface RouteRow {
  path: string;
  target_id: number;
  target_type: string;
  host_name: string | null;
  host_matching: string | null;
  server_id: number | null;
}

interface ServerRow {
  id: number;
  uuid: string;
  name: string | null;
  chroot: string | null;
}

/** mongrel2's code default for `limits.content_length`. */
const DEFAULT_CONTENT_LENGTH = 20480;
/** mongrel2's code default for `limits.buffer_size`. */
const DEFAULT_BUFFER_SIZE = 4096;

/**
 * Reads the handler's wiring from a mongrel2 config database.
 *
 * Without `handler` and `route` the database must hold exactly one handler
 * that a route leads to. With both, they must name the same handler.
 *
 * @param database Path to `config.sqlite`.
 * @param options Which handler, and how mongrel2 runs.
 * @returns The handler, its server, the upload settings.
 * @throws {DiscoveryError} When the database is missing or not a mongrel2
 * config, or no single handler matches.
 *
 * @example Pick the handler behind a route
 * ```ts
 * import { discoverHandler } from "./discover.ts";
 * const found = discoverHandler("/srv/site/config.sqlite", { route: "localhost:/" });
 * console.log(found.sendSpec); // e.g. ipc:///srv/site/run/app_send
 * ```
 */
export function discoverHandler(
  database: string,
  options: DiscoverOptions = {},
): DiscoveredHandler {
  const path = posix.resolve(database);
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    throw new DiscoveryError(
      error instanceof Deno.errors.NotFound
        ? `Cannot read mongrel2 config ${database}: the file does not exist (make it with m2sh load -config mongrel2.conf -db ${database})`
        : `Cannot read mongrel2 config ${database}: ${errorMessage(error)}`,
    );
  }
  if (!info.isFile) {
    throw new DiscoveryError(
      `Cannot read mongrel2 config ${database}: it is not a file (expected the config.sqlite made by m2sh load)`,
    );
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true });
  } catch (error) {
    // SQLite says only "unable to open database file"; the usual cause,
    // a file m2fetch's user may not read, deserves its own words.
    let cause = errorMessage(error);
    try {
      Deno.openSync(path).close();
    } catch (openError) {
      if (openError instanceof Deno.errors.PermissionDenied) {
        const mode = ((info.mode ?? 0) & 0o777).toString(8).padStart(4, "0");
        cause =
          `permission denied: m2fetch runs as uid ${Deno.uid()}, the file is owned by uid ${info.uid}, gid ${info.gid}, mode ${mode}; make it readable by m2fetch's user (and its directory searchable)`;
      }
    }
    throw new DiscoveryError(
      `Cannot open mongrel2 config ${database} read-only: ${cause}`,
    );
  }
  try {
    return discoverIn(db, path, options);
  } finally {
    db.close();
  }
}

function discoverIn(
  db: DatabaseSync,
  path: string,
  options: DiscoverOptions,
): DiscoveredHandler {
  const query = <T>(sql: string): T[] => {
    try {
      return db.prepare(sql).all() as T[];
    } catch (error) {
      throw new DiscoveryError(
        `Cannot use ${path} as a mongrel2 config: ${
          errorMessage(error)
        } (expected the config.sqlite made by m2sh load)`,
      );
    }
  };
  const handlers = query<HandlerRow>(
    "SELECT id, send_spec, send_ident, recv_spec, recv_ident, raw_payload, protocol FROM handler ORDER BY id",
  );
  const servers = query<ServerRow>(
    "SELECT id, uuid, name, chroot FROM server ORDER BY id",
  );
  const routes = query<RouteRow>(
    `SELECT route.path, route.target_id, route.target_type,
            host.name AS host_name, host.matching AS host_matching,
            host.server_id
       FROM route LEFT JOIN host ON host.id = route.host_id
      ORDER BY route.id`,
  );
  const settings = new Map(
    query<{ key: string; value: string }>("SELECT key, value FROM setting")
      .map((row) => [row.key, String(row.value)]),
  );
  if (servers.length === 0) {
    throw new DiscoveryError(
      `Cannot use ${path} as a mongrel2 config: it has no servers (did m2sh load fail? it can leave an empty database)`,
    );
  }
  const serverById = new Map(servers.map((row) => [row.id, row]));
  const serverName = (id: number | null) => {
    const row = id === null ? undefined : serverById.get(id);
    return row === undefined ? "(no server)" : row.name || row.uuid;
  };
  const describeRoute = (row: RouteRow): DiscoveredRoute => ({
    host: row.host_name ?? "(no host)",
    pattern: row.path,
    server: serverName(row.server_id),
    target: row.target_type,
  });
  const routesOf = (handler: HandlerRow) =>
    routes.filter((row) =>
      row.target_type === "handler" && row.target_id === handler.id
    );
  const listHandlers = () =>
    handlers.length === 0 ? "none" : handlers.map((handler) => {
      const reached = routesOf(handler).map((row) =>
        `${row.host_name}:${row.path}`
      );
      return `${handler.send_ident} (send_spec ${handler.send_spec}${
        reached.length > 0 ? `, routes ${reached.join(" ")}` : ", no route"
      })`;
    }).join("; ");

  let chosen: HandlerRow | undefined;
  let chosenRoutes: RouteRow[] | undefined;
  if (options.route !== undefined) {
    const at = options.route.indexOf(":");
    if (at <= 0 || at === options.route.length - 1) {
      throw new DiscoveryError(
        `Invalid route "${options.route}": expected HOST:PATTERN, e.g. localhost:/`,
      );
    }
    const host = options.route.slice(0, at);
    const pattern = options.route.slice(at + 1);
    const matches = routes.filter((row) =>
      row.path === pattern &&
      (row.host_name === host || row.host_matching === host)
    );
    if (matches.length === 0) {
      throw new DiscoveryError(
        `Cannot find route ${options.route} in ${path}: the routes there are ${
          routes.map((row) =>
            `${row.host_name}:${row.path} (${row.target_type})`
          ).join(", ") || "none"
        }`,
      );
    }
    const handlerRoutes = matches.filter((row) =>
      row.target_type === "handler"
    );
    if (handlerRoutes.length === 0) {
      throw new DiscoveryError(
        `Cannot serve route ${options.route} of ${path}: mongrel2 serves it with a ${
          matches[0].target_type
        }, not a handler`,
      );
    }
    const targets = new Set(handlerRoutes.map((row) => row.target_id));
    const servedBy = new Set(handlerRoutes.map((row) => row.server_id));
    if (targets.size > 1 || servedBy.size > 1) {
      throw new DiscoveryError(
        `Cannot pick route ${options.route} in ${path}: ${handlerRoutes.length} routes match (${
          handlerRoutes.map((row) =>
            `server ${serverName(row.server_id)}, handler ${
              handlers.find((h) => h.id === row.target_id)?.send_ident
            }`
          ).join("; ")
        }); give the host name of one server`,
      );
    }
    chosen = handlers.find((h) => h.id === handlerRoutes[0].target_id);
    if (chosen === undefined) {
      throw new DiscoveryError(
        `Cannot use route ${options.route} of ${path}: its handler (id ${
          handlerRoutes[0].target_id
        }) is missing from the handler table`,
      );
    }
    chosenRoutes = handlerRoutes;
    if (
      options.handler !== undefined &&
      options.handler !== chosen.send_ident &&
      options.handler !== chosen.send_spec
    ) {
      throw new DiscoveryError(
        `Cannot use both handler "${options.handler}" and route ${options.route}: the route leads to handler ${chosen.send_ident}`,
      );
    }
  } else if (options.handler !== undefined) {
    const name = options.handler;
    const matches = handlers.filter((h) =>
      h.send_ident === name || h.send_spec === name
    );
    if (matches.length === 0) {
      throw new DiscoveryError(
        `Cannot find handler "${name}" in ${path}: expected a send_ident or send_spec; the handlers there are: ${listHandlers()}`,
      );
    }
    if (matches.length > 1) {
      throw new DiscoveryError(
        `Cannot pick handler "${name}" in ${path}: ${matches.length} handlers match (${
          matches.map((h) => `${h.send_ident} at ${h.send_spec}`).join("; ")
        }); pick one by route with --route HOST:PATTERN`,
      );
    }
    chosen = matches[0];
  } else {
    const reachable = handlers.filter((h) => routesOf(h).length > 0);
    if (reachable.length === 0) {
      throw new DiscoveryError(
        `Cannot find a handler in ${path}: no route leads to a Handler (the handlers there are: ${listHandlers()})`,
      );
    }
    if (reachable.length > 1) {
      throw new DiscoveryError(
        `Cannot pick a handler in ${path}: it has ${reachable.length}, so pass --handler SEND_IDENT or --route HOST:PATTERN; the handlers there are: ${listHandlers()}`,
      );
    }
    chosen = reachable[0];
  }

  chosenRoutes ??= routesOf(chosen);
  if (chosenRoutes.length === 0) {
    throw new DiscoveryError(
      `Cannot serve handler ${chosen.send_ident} of ${path}: no route leads to it, so mongrel2 never binds its sockets`,
    );
  }
  const cwd = posix.resolve(options.cwd ?? posix.dirname(path));
  const candidates = [...new Set(chosenRoutes.map((row) => row.server_id))]
    .map((id) => id === null ? undefined : serverById.get(id))
    .filter((row): row is ServerRow => row !== undefined);
  if (candidates.length === 0) {
    throw new DiscoveryError(
      `Cannot serve handler ${chosen.send_ident} of ${path}: its routes belong to no server`,
    );
  }
  const places = candidates.map((row) => serverPlace(row, cwd, options));
  const distinct = new Set(places.map((place) => place.root ?? ""));
  if (distinct.size > 1) {
    throw new DiscoveryError(
      `Cannot pick a server for handler ${chosen.send_ident} in ${path}: servers ${
        places.map((place) =>
          `${place.name || place.uuid} (chroot ${place.root})`
        ).join(", ")
      } each bind its sockets in their own chroot; pick one with --route HOST:PATTERN`,
    );
  }
  const server = places[0];

  const warnings: string[] = [];
  const protocol = chosen.protocol === "tnetstring" ? "tnetstring" : "json";
  if (chosen.protocol !== "tnetstring" && chosen.protocol !== "json") {
    warnings.push(
      `Handler ${chosen.send_ident} has protocol "${chosen.protocol}"; mongrel2 treats that as json`,
    );
  }
  if (chosen.raw_payload) {
    warnings.push(
      `Handler ${chosen.send_ident} has raw_payload=1, which only changes JSON socket messages; m2fetch serves HTTP`,
    );
  }
  if (chosen.recv_ident === "") {
    warnings.push(
      `Handler ${chosen.send_ident} has an empty recv_ident, so its mongrel2 takes every reply on its recv_spec; set recv_ident = send_ident before sharing one m2fetch between several mongrel2 servers`,
    );
  } else if (!chosen.send_ident.startsWith(chosen.recv_ident)) {
    warnings.push(
      `Handler ${chosen.send_ident} has recv_ident "${chosen.recv_ident}", which is not a prefix of its send_ident: mongrel2 will drop every reply (set recv_ident = send_ident)`,
    );
  }
  const flowControl = settings.get("download.flow_control") === "1";
  if (!flowControl) {
    warnings.push(
      "download.flow_control is off: m2fetch cannot see how much a slow client has read (set download.flow_control = 1)",
    );
  }
  const contentLength = Number(
    settings.get("limits.content_length") ?? DEFAULT_CONTENT_LENGTH,
  );
  const bufferSize = Number(
    settings.get("limits.buffer_size") ?? DEFAULT_BUFFER_SIZE,
  );
  if (contentLength < bufferSize) {
    warnings.push(
      `limits.content_length is ${contentLength}, below limits.buffer_size (${bufferSize}): mongrel2 1.12.2 then loses body bytes it has already read with the headers (set limits.content_length to ${bufferSize} or more)`,
    );
  }
  if (settings.get("upload.stream") === "1") {
    warnings.push(
      `upload.stream is 1: m2fetch does not take streamed uploads and answers 501 to bodies over ${contentLength} bytes and to chunked requests (set upload.stream = 0 and upload.temp_store)`,
    );
  }
  const template = settings.get("upload.temp_store");
  let uploads: DiscoveredHandler["uploads"];
  if (template !== undefined && template !== "") {
    const absoluteTemplate = template.startsWith("/")
      ? template
      : server.root !== undefined
      ? `/${template}`
      : posix.join(cwd, template);
    uploads = {
      template: absoluteTemplate,
      mode: settings.get("upload.temp_store_mode") ?? "0600",
      ...(server.root !== undefined ? { chroot: server.root } : {}),
    };
    if (
      !/^0?[0-7]{3}$/.test(uploads.mode) ||
      (Number.parseInt(uploads.mode, 8) & 0o044) === 0
    ) {
      warnings.push(
        `upload.temp_store_mode is ${uploads.mode}: an m2fetch running as another user than mongrel2 cannot read uploads (use "0644")`,
      );
    }
  } else if (settings.get("upload.stream") !== "1") {
    warnings.push(
      `upload.temp_store is not set: mongrel2 answers 413 to bodies over ${contentLength} bytes (limits.content_length) and to chunked requests`,
    );
  }

  const sendSpec = realSpec(chosen.send_spec, server);
  const recvSpec = realSpec(chosen.recv_spec, server);
  for (const spec of [sendSpec, recvSpec]) {
    const bytes = new TextEncoder().encode(spec.slice("ipc://".length)).length;
    if (spec.startsWith("ipc://") && bytes > MAX_IPC_PATH_BYTES) {
      warnings.push(
        `The socket path of ${spec} is ${bytes} bytes, over the ${MAX_IPC_PATH_BYTES}-byte unix socket limit: connecting will fail`,
      );
    }
  }
  return {
    database: path,
    sendIdent: chosen.send_ident,
    recvIdent: chosen.recv_ident,
    protocol,
    configSendSpec: chosen.send_spec,
    configRecvSpec: chosen.recv_spec,
    sendSpec,
    recvSpec,
    routes: chosenRoutes.map(describeRoute),
    server: {
      uuid: server.uuid,
      name: server.name,
      chroot: server.chroot,
      root: server.root,
      cwd,
    },
    uploads,
    contentLength,
    flowControl,
    warnings,
  };
}

function serverPlace(
  row: ServerRow,
  cwd: string,
  options: DiscoverOptions,
): DiscoveredServer {
  const chroot = row.chroot ?? "";
  // Without a chroot there is nothing to chroot into, whatever the options.
  const chrooted = options.chrooted !== false && chroot !== "";
  return {
    uuid: row.uuid,
    name: row.name ?? "",
    chroot,
    root: chrooted ? posix.resolve(cwd, chroot) : undefined,
    cwd,
  };
}

/**
 * Maps a spec as mongrel2 binds it to the one m2fetch connects to: `ipc://`
 * paths into the chroot or the working directory, and wildcard tcp
 * addresses (`*`, `0.0.0.0`, `::`) to loopback.
 */
function realSpec(spec: string, server: DiscoveredServer): string {
  if (spec.startsWith("ipc://")) {
    const file = spec.slice("ipc://".length);
    if (server.root !== undefined) {
      return `ipc://${posix.join(server.root, "/", file)}`;
    }
    return `ipc://${posix.resolve(server.cwd, file)}`;
  }
  const tcp = /^tcp:\/\/(\*|0\.0\.0\.0|\[::\]|::):(\d+)$/.exec(spec);
  if (tcp !== null) {
    return `tcp://${tcp[1].includes(":") ? "[::1]" : "127.0.0.1"}:${tcp[2]}`;
  }
  return spec;
}
