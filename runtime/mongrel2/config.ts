/**
 * Pure helpers that turn options into a mongrel2 `mongrel2.conf` text.
 *
 * Nothing here touches the filesystem or the network: {@link resolveMongrel2Config}
 * fills in every default (idents, paths, settings) and checks the options,
 * and {@link renderMongrel2Config} prints the m2sh config file. The I/O side
 * (writing the state dir, `m2sh load`, running mongrel2) lives in
 * `process.ts`.
 *
 * Paths follow mongrel2's rules (see docs/operations.md, "Paths"):
 *
 * - Without chroot mongrel2 resolves every path on the real filesystem, so
 *   logs, pid file, ipc sockets and the upload temp store are written as
 *   absolute paths under the state dir.
 * - With chroot (`chroot="./"`, root only) mongrel2 resolves them inside the
 *   state dir, so they are written chroot-relative ("/logs/error.log",
 *   "ipc://run/app_send").
 *
 * Either way {@link RunningHandler} specs are the real-filesystem `ipc://`
 * paths a handler must connect to.
 *
 * @example Render a config for one handler route
 * ```ts
 * import { renderMongrel2Config } from "./config.ts";
 * const text = renderMongrel2Config({
 *   dir: "/tmp/m2-site",
 *   port: 6767,
 *   handlers: [{ route: "/", sendIdent: "app-ident" }],
 * });
 * console.assert(text.includes("ipc:///tmp/m2-site/run/app0_send"));
 * ```
 *
 * @module
 */

/** The header encodings mongrel2 can use when it sends a request to a handler. */
export type HandlerProtocol = "tnetstring" | "json";

/**
 * A route served by a ZeroMQ handler (an m2fetch process).
 *
 * @example
 * ```ts
 * import type { HandlerRouteOptions } from "./config.ts";
 * const route: HandlerRouteOptions = { route: "/app/", protocol: "json" };
 * console.assert(route.route === "/app/");
 * ```
 */
export interface HandlerRouteOptions {
  /** The route pattern, e.g. `"/"` or `"/app/"`. */
  route: string;
  /** Header encoding mongrel2 uses for this handler. Default `"tnetstring"`. */
  protocol?: HandlerProtocol;
  /**
   * Used in the ipc socket file names (`run/<name>_send`, `run/<name>_recv`).
   * Letters, digits, `_`, `.` and `-` only. Default `"app"` + the index.
   */
  name?: string;
  /**
   * The identity mongrel2 puts at the front of every request it sends to
   * this handler. Letters, digits and `-` only, because mongrel2 rejects any
   * other character in a reply's sender. Default: a fresh UUID.
   */
  sendIdent?: string;
  /**
   * The prefix mongrel2 subscribes to for replies. Default: `sendIdent`.
   * `""` subscribes to every reply.
   */
  recvIdent?: string;
  /**
   * The `send_spec` as the handler connects to it (`tcp://HOST:PORT` or an
   * absolute `ipc://` path), instead of `ipc://<dir>/run/<name>_send`. With
   * `chroot`, an `ipc://` path must lie inside the state dir and is written
   * chroot-relative.
   */
  sendSpec?: string;
  /** The `recv_spec`, like {@linkcode HandlerRouteOptions.sendSpec}. */
  recvSpec?: string;
}

/**
 * A route served from files by mongrel2 itself (a `Dir(...)` backend).
 *
 * @example
 * ```ts
 * import type { DirRouteOptions } from "./config.ts";
 * const route: DirRouteOptions = { route: "/static/", base: "static/" };
 * console.assert(route.base === "static/");
 * ```
 */
export interface DirRouteOptions {
  /** The route pattern, e.g. `"/static/"`. */
  route: string;
  /** The directory to serve, relative to the state dir (a trailing `/` is added). */
  base: string;
  /** The file served for a directory request. Default `"index.html"`. */
  indexFile?: string;
  /** Content type for unknown extensions. Default `"text/plain"`. */
  defaultContentType?: string;
}

/** A mongrel2 setting value; the config file only knows strings and integers. */
export type Mongrel2SettingValue = string | number;

/**
 * Everything needed to render a config. The port must already be chosen.
 *
 * @example
 * ```ts
 * import type { Mongrel2ConfigOptions } from "./config.ts";
 * const options: Mongrel2ConfigOptions = { dir: "/tmp/site", port: 8080 };
 * console.assert(options.port === 8080);
 * ```
 */
export interface Mongrel2ConfigOptions {
  /** The state directory, as an absolute path. */
  dir: string;
  /** The HTTP port mongrel2 listens on (1-65535). */
  port: number;
  /** The address mongrel2 binds. Default `"127.0.0.1"`. */
  bindAddress?: string;
  /** ZeroMQ handler routes. */
  handlers?: HandlerRouteOptions[];
  /** Static directory routes. */
  dirs?: DirRouteOptions[];
  /** Settings merged over {@link defaultMongrel2Settings}. */
  settings?: Record<string, Mongrel2SettingValue>;
  /** Run mongrel2 with `chroot="./"` (only effective as root). Default false. */
  chroot?: boolean;
  /** The server's uuid (what `mongrel2 config.sqlite <uuid>` selects). Default: a fresh UUID. */
  serverUuid?: string;
  /** The Host name and `default_host`. Default `"localhost"`. */
  hostName?: string;
  /**
   * Comment lines printed at the top instead of the default "generated,
   * edits are overwritten" line (without the leading `#`).
   */
  header?: string[];
}

/**
 * A handler route as a handler process must see it.
 *
 * @example
 * ```ts
 * import { resolveMongrel2Config } from "./config.ts";
 * const [handler] = resolveMongrel2Config({
 *   dir: "/tmp/site",
 *   port: 8080,
 *   handlers: [{ route: "/" }],
 * }).handlers;
 * console.assert(handler.sendSpec === "ipc:///tmp/site/run/app0_send");
 * ```
 */
export interface RunningHandler {
  /** The route pattern. */
  route: string;
  /** The header encoding, `"tnetstring"` or `"json"`. */
  protocol: HandlerProtocol;
  /** The name used in the socket file names. */
  name: string;
  /** Where the handler's PULL socket connects (an absolute `ipc://` path). */
  sendSpec: string;
  /** Where the handler's PUB socket connects (an absolute `ipc://` path). */
  recvSpec: string;
  /** The sender identity on requests; replies should use it too. */
  sendIdent: string;
  /** The reply prefix mongrel2 subscribes to. */
  recvIdent: string;
}

/**
 * A handler with the specs written into the config file as well.
 *
 * @example
 * ```ts
 * import { resolveMongrel2Config } from "./config.ts";
 * const [handler] = resolveMongrel2Config({
 *   dir: "/tmp/site",
 *   port: 8080,
 *   chroot: true,
 *   handlers: [{ route: "/" }],
 * }).handlers;
 * console.assert(handler.configSendSpec === "ipc://run/app0_send");
 * ```
 */
export interface ResolvedHandler extends RunningHandler {
  /** `send_spec` as written in the config (chroot-relative when chrooted). */
  configSendSpec: string;
  /** `recv_spec` as written in the config (chroot-relative when chrooted). */
  configRecvSpec: string;
}

/**
 * A file path as written in the config and where it really is.
 *
 * @example
 * ```ts
 * import { resolveMongrel2Config } from "./config.ts";
 * const { errorLog } = resolveMongrel2Config({
 *   dir: "/tmp/site",
 *   port: 8080,
 *   chroot: true,
 * }).paths;
 * console.assert(errorLog.config === "/logs/error.log");
 * console.assert(errorLog.real === "/tmp/site/logs/error.log");
 * ```
 */
export interface ConfigPath {
  /** The path as mongrel2 sees it. */
  config: string;
  /** The path on the real filesystem. */
  real: string;
}

/**
 * Options with every default filled in; what {@link renderMongrel2Config} prints.
 *
 * @example
 * ```ts
 * import { resolveMongrel2Config } from "./config.ts";
 * const resolved = resolveMongrel2Config({ dir: "/tmp/site", port: 8080 });
 * console.assert(resolved.settings["server.daemonize"] === 0);
 * ```
 */
export interface ResolvedMongrel2Config {
  /** Marks an already resolved config. */
  readonly resolved: true;
  /** The absolute state directory. */
  dir: string;
  /** The HTTP port. */
  port: number;
  /** The bind address. */
  bindAddress: string;
  /** Whether the config asks mongrel2 to chroot into `dir`. */
  chroot: boolean;
  /** The server uuid. */
  serverUuid: string;
  /** The Host name, also the `default_host`. */
  hostName: string;
  /** Handler routes with idents and specs. */
  handlers: ResolvedHandler[];
  /** Dir routes with defaults applied. */
  dirs: Required<DirRouteOptions>[];
  /** The merged settings. */
  settings: Record<string, Mongrel2SettingValue>;
  /** Comment lines for the top of the file (without `#`). */
  header: string[];
  /** Log, pid and control socket locations. */
  paths: {
    accessLog: ConfigPath;
    errorLog: ConfigPath;
    pidFile: ConfigPath;
    control: ConfigPath;
  };
}

/**
 * The longest unix socket path libzmq accepts: `sun_path` is 108 bytes on
 * Linux including the terminating NUL.
 *
 * @example
 * ```ts
 * import { MAX_IPC_PATH_BYTES } from "./config.ts";
 * console.assert(MAX_IPC_PATH_BYTES === 107);
 * ```
 */
export const MAX_IPC_PATH_BYTES = 107;

const IDENT = /^[A-Za-z0-9-]+$/;
const NAME = /^[A-Za-z0-9_.-]+$/;
const SETTING_KEY = /^[A-Za-z0-9_.-]+$/;

/**
 * The settings every managed mongrel2 starts from (before `options.settings`).
 *
 * - `zeromq.threads: 1` (more "can cause lockups").
 * - `server.daemonize: 0`, so the started pid is mongrel2 itself.
 * - `download.flow_control: 1`, so handlers get credits notices.
 * - `upload.temp_store` in the state dir's `tmp/`, mode `0644` so a handler
 *   running as another user can read uploads.
 * - `limits.content_length: 20480` (mongrel2's own default, made explicit).
 *
 * @param dir The absolute state directory.
 * @param chroot Whether mongrel2 chroots into `dir`.
 * @returns A fresh settings object.
 *
 * @example
 * ```ts
 * import { defaultMongrel2Settings } from "./config.ts";
 * const settings = defaultMongrel2Settings("/srv/site", false);
 * console.assert(settings["upload.temp_store"] === "/srv/site/tmp/upload.XXXXXX");
 * ```
 */
export function defaultMongrel2Settings(
  dir: string,
  chroot: boolean,
): Record<string, Mongrel2SettingValue> {
  return {
    "zeromq.threads": 1,
    "server.daemonize": 0,
    "download.flow_control": 1,
    "upload.temp_store": chroot
      ? "/tmp/upload.XXXXXX"
      : `${stripSlash(dir)}/tmp/upload.XXXXXX`,
    "upload.temp_store_mode": "0644",
    "limits.content_length": 20480,
  };
}

/**
 * Fills in every default and validates the options.
 *
 * @param options The config options; `dir` must be absolute.
 * @returns The resolved config. Passing a resolved config returns it as is.
 * @throws {TypeError} When an option has the wrong shape or a bad character.
 * @throws {RangeError} When the port is out of range or an ipc path is too long.
 *
 * @example
 * ```ts
 * import { resolveMongrel2Config } from "./config.ts";
 * const resolved = resolveMongrel2Config({
 *   dir: "/tmp/site",
 *   port: 8080,
 *   handlers: [{ route: "/", sendIdent: "abc" }],
 * });
 * console.assert(resolved.handlers[0].recvIdent === "abc");
 * ```
 */
export function resolveMongrel2Config(
  options: Mongrel2ConfigOptions | ResolvedMongrel2Config,
): ResolvedMongrel2Config {
  if ("resolved" in options && options.resolved === true) return options;
  const dir = stripSlash(options.dir);
  if (!dir.startsWith("/")) {
    throw new TypeError(
      `Cannot configure mongrel2: the state dir "${options.dir}" must be an absolute path`,
    );
  }
  checkConfigString("state dir", dir);
  const port = options.port;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(
      `Cannot configure mongrel2: port ${port} is not an integer between 1 and 65535`,
    );
  }
  const chroot = options.chroot ?? false;
  const bindAddress = options.bindAddress ?? "127.0.0.1";
  checkConfigString("bind address", bindAddress);
  const serverUuid = options.serverUuid ?? crypto.randomUUID();
  checkConfigString("server uuid", serverUuid);
  const hostName = options.hostName ?? "localhost";
  checkConfigString("host name", hostName);

  // Where a chroot-relative path really is, or the absolute real path.
  const place = (relative: string): ConfigPath => ({
    config: chroot ? `/${relative}` : `${dir}/${relative}`,
    real: `${dir}/${relative}`,
  });
  const ipc = (relative: string, what: string): ConfigPath => {
    const real = `${dir}/${relative}`;
    const bytes = new TextEncoder().encode(real).length;
    if (bytes > MAX_IPC_PATH_BYTES) {
      throw new RangeError(
        `Cannot configure mongrel2: the ${what} socket path "${real}" is ${bytes} bytes, ` +
          `longer than the ${MAX_IPC_PATH_BYTES}-byte unix socket limit; use a shorter state dir`,
      );
    }
    return {
      config: chroot ? `ipc://${relative}` : `ipc://${real}`,
      real: `ipc://${real}`,
    };
  };

  // A spec the handler connects to, as mongrel2 must bind it.
  const givenSpec = (spec: string, what: string): ConfigPath => {
    checkConfigString(what, spec);
    if (spec.startsWith("tcp://")) return { config: spec, real: spec };
    if (!spec.startsWith("ipc:///")) {
      throw new TypeError(
        `Cannot configure mongrel2: ${what} "${spec}" must be tcp://HOST:PORT or an absolute ipc:// path`,
      );
    }
    const real = spec.slice("ipc://".length);
    const bytes = new TextEncoder().encode(real).length;
    if (bytes > MAX_IPC_PATH_BYTES) {
      throw new RangeError(
        `Cannot configure mongrel2: the ${what} socket path "${real}" is ${bytes} bytes, ` +
          `longer than the ${MAX_IPC_PATH_BYTES}-byte unix socket limit; use a shorter path or tcp://`,
      );
    }
    if (!chroot) return { config: spec, real: spec };
    if (!real.startsWith(`${dir}/`)) {
      throw new TypeError(
        `Cannot configure mongrel2: ${what} "${spec}" lies outside the chroot ${dir}, where mongrel2 cannot bind it`,
      );
    }
    return { config: `ipc://${real.slice(dir.length + 1)}`, real: spec };
  };

  const routes = new Set<string>();
  const claimRoute = (route: unknown, kind: string): string => {
    if (typeof route !== "string" || route === "") {
      throw new TypeError(
        `Cannot configure mongrel2: a ${kind} route must be a non-empty string`,
      );
    }
    checkConfigString(`${kind} route`, route);
    if (routes.has(route)) {
      throw new TypeError(
        `Cannot configure mongrel2: the route "${route}" is used twice`,
      );
    }
    routes.add(route);
    return route;
  };

  const names = new Set<string>();
  const handlers = (options.handlers ?? []).map(
    (handler, index): ResolvedHandler => {
      const route = claimRoute(handler.route, "handler");
      const protocol = handler.protocol ?? "tnetstring";
      if (protocol !== "tnetstring" && protocol !== "json") {
        throw new TypeError(
          `Cannot configure mongrel2: handler protocol "${protocol}" for route "${route}" is not "tnetstring" or "json"`,
        );
      }
      const name = handler.name ?? `app${index}`;
      if (!NAME.test(name)) {
        throw new TypeError(
          `Cannot configure mongrel2: handler name "${name}" may only contain letters, digits, "_", "." and "-"`,
        );
      }
      if (names.has(name)) {
        throw new TypeError(
          `Cannot configure mongrel2: the handler name "${name}" is used twice`,
        );
      }
      names.add(name);
      const sendIdent = handler.sendIdent ?? crypto.randomUUID();
      if (!IDENT.test(sendIdent)) {
        throw new TypeError(
          `Cannot configure mongrel2: sendIdent "${sendIdent}" may only contain letters, digits and "-" (mongrel2 rejects replies from other senders)`,
        );
      }
      const recvIdent = handler.recvIdent ?? sendIdent;
      if (recvIdent !== "" && !IDENT.test(recvIdent)) {
        throw new TypeError(
          `Cannot configure mongrel2: recvIdent "${recvIdent}" may only contain letters, digits and "-", or be empty`,
        );
      }
      const send = handler.sendSpec !== undefined
        ? givenSpec(handler.sendSpec, "the send spec (--send-spec)")
        : ipc(`run/${name}_send`, `"${name}" send`);
      const recv = handler.recvSpec !== undefined
        ? givenSpec(handler.recvSpec, "the recv spec (--recv-spec)")
        : ipc(`run/${name}_recv`, `"${name}" recv`);
      return {
        route,
        protocol,
        name,
        sendSpec: send.real,
        recvSpec: recv.real,
        sendIdent,
        recvIdent,
        configSendSpec: send.config,
        configRecvSpec: recv.config,
      };
    },
  );

  const dirs = (options.dirs ?? []).map((entry): Required<DirRouteOptions> => {
    const route = claimRoute(entry.route, "dir");
    if (typeof entry.base !== "string" || entry.base === "") {
      throw new TypeError(
        `Cannot configure mongrel2: the dir route "${route}" needs a non-empty base`,
      );
    }
    if (entry.base.startsWith("/")) {
      throw new TypeError(
        `Cannot configure mongrel2: dir base "${entry.base}" must be relative to the state dir`,
      );
    }
    const base = entry.base.endsWith("/") ? entry.base : `${entry.base}/`;
    const indexFile = entry.indexFile ?? "index.html";
    const defaultContentType = entry.defaultContentType ?? "text/plain";
    checkConfigString("dir base", base);
    checkConfigString("dir index file", indexFile);
    checkConfigString("dir content type", defaultContentType);
    return { route, base, indexFile, defaultContentType };
  });

  const settings = {
    ...defaultMongrel2Settings(dir, chroot),
    ...(options.settings ?? {}),
  };
  for (const [key, value] of Object.entries(settings)) {
    if (!SETTING_KEY.test(key)) {
      throw new TypeError(
        `Cannot configure mongrel2: setting name "${key}" may only contain letters, digits, "_", "." and "-"`,
      );
    }
    if (typeof value === "number") {
      if (!Number.isSafeInteger(value)) {
        throw new TypeError(
          `Cannot configure mongrel2: setting "${key}" is ${value}, but the config file only accepts integers (pass a string for other values)`,
        );
      }
    } else if (typeof value === "string") {
      checkConfigString(`setting "${key}"`, value);
    } else {
      throw new TypeError(
        `Cannot configure mongrel2: setting "${key}" is a ${
          typeOf(value)
        }, but only strings and integers are allowed`,
      );
    }
  }

  return {
    resolved: true,
    dir,
    port,
    bindAddress,
    chroot,
    serverUuid,
    hostName,
    handlers,
    dirs,
    settings,
    header: options.header ??
      ["Generated by m2fetch runtime/mongrel2/config.ts; edits are overwritten."],
    paths: {
      accessLog: place("logs/access.log"),
      errorLog: place("logs/error.log"),
      pidFile: place("run/mongrel2.pid"),
      control: ipc("run/control", "control"),
    },
  };
}

/**
 * Renders the m2sh config file (`mongrel2.conf`) for the given options.
 *
 * One server named `main` with one Host (`hostName`, also the default host,
 * so requests with any Host header are routed to it), one `Handler(...)` per
 * handler route and one `Dir(...)` per dir route.
 *
 * @param options Options (resolved first) or an already resolved config.
 * @returns The config file text.
 * @throws {TypeError | RangeError} Like {@link resolveMongrel2Config}.
 *
 * @example
 * ```ts
 * import { renderMongrel2Config } from "./config.ts";
 * const text = renderMongrel2Config({
 *   dir: "/tmp/site",
 *   port: 8080,
 *   dirs: [{ route: "/static/", base: "static" }],
 * });
 * console.assert(text.includes(`Dir(base="static/"`));
 * ```
 */
export function renderMongrel2Config(
  options: Mongrel2ConfigOptions | ResolvedMongrel2Config,
): string {
  const config = resolveMongrel2Config(options);
  const lines: string[] = [
    ...config.header.map((line) => line === "" ? "#" : `# ${line}`),
    "",
  ];
  config.handlers.forEach((handler, index) => {
    if (handler.recvIdent === handler.sendIdent) {
      lines.push(
        "# recv_ident = send_ident: this mongrel2 subscribes only to replies to",
        "# its own requests, so several mongrel2 servers (each Handler with its own",
        "# send_ident) can share one m2fetch without getting each other's replies.",
      );
    }
    lines.push(
      `handler_${index} = Handler(`,
      `    send_spec=${quote(handler.configSendSpec)},`,
      `    send_ident=${quote(handler.sendIdent)},`,
      `    recv_spec=${quote(handler.configRecvSpec)},`,
      `    recv_ident=${quote(handler.recvIdent)},`,
      `    protocol=${quote(handler.protocol)})`,
      "",
    );
  });
  config.dirs.forEach((dir, index) => {
    lines.push(
      `dir_${index} = Dir(base=${quote(dir.base)}, index_file=${
        quote(dir.indexFile)
      }, default_ctype=${quote(dir.defaultContentType)})`,
      "",
    );
  });
  const routes = [
    ...config.handlers.map((h, i) => `${quote(h.route)}: handler_${i}`),
    ...config.dirs.map((d, i) => `${quote(d.route)}: dir_${i}`),
  ];
  lines.push(
    `main = Server(`,
    `    uuid=${quote(config.serverUuid)},`,
    `    name="main",`,
    `    chroot=${quote(config.chroot ? "./" : "")},`,
    `    access_log=${quote(config.paths.accessLog.config)},`,
    `    error_log=${quote(config.paths.errorLog.config)},`,
    `    pid_file=${quote(config.paths.pidFile.config)},`,
    `    control_port=${quote(config.paths.control.config)},`,
    `    default_host=${quote(config.hostName)},`,
    `    bind_addr=${quote(config.bindAddress)},`,
    `    port=${config.port},`,
    `    hosts=[Host(name=${quote(config.hostName)}, routes={`,
    routes.map((route) => `        ${route}`).join(",\n"),
    `    })])`,
    "",
    "settings = {",
    Object.entries(config.settings).map(([key, value]) =>
      `    ${quote(key)}: ${
        typeof value === "number" ? String(value) : quote(value)
      }`
    ).join(",\n"),
    "}",
    "",
    "servers = [main]",
    "",
  );
  return lines.join("\n");
}

function quote(value: string): string {
  return `"${value}"`;
}

// m2sh's lexer has no escapes: a string is anything up to the next quote.
function checkConfigString(what: string, value: string): void {
  // deno-lint-ignore no-control-regex
  if (/["\\\x00-\x1f\x7f]/.test(value)) {
    throw new TypeError(
      `Cannot configure mongrel2: the ${what} ${
        JSON.stringify(value)
      } contains a quote, backslash or control character, which m2sh config files cannot express`,
    );
  }
}

function stripSlash(path: string): string {
  return path.length > 1 && path.endsWith("/")
    ? path.replace(/\/+$/, "")
    : path;
}

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}
