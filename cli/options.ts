/**
 * The one typed schema of m2fetch's options, shared by the command line and
 * the config file, so a value means the same thing everywhere: the serve
 * options, and those each subcommand adds.
 *
 * @module
 */

/**
 * The kinds of values an option takes.
 *
 * @example Usage
 * ```ts
 * import type { OptionType } from "./options.ts";
 * const type: OptionType = "duration";
 * console.assert(type === "duration");
 * ```
 */
export type OptionType =
  | "string"
  | "boolean"
  | "integer"
  | "duration"
  | "size";

/**
 * One option of the schema.
 *
 * @example Usage
 * ```ts
 * import type { OptionSpec } from "./options.ts";
 * const spec: OptionSpec = {
 *   type: "duration",
 *   value: "TIME",
 *   default: 5000,
 *   description: "how long to wait",
 * };
 * console.assert(spec.default === 5000);
 * ```
 */
export interface OptionSpec {
  /**
   * Value type; durations are milliseconds given as `500ms`, `30s`, `2m` or
   * a number of ms; sizes are bytes given as a number or with `K`, `M`, `G`
   * (binary multiples).
   */
  type: OptionType;
  /** Shown in `--help`. */
  description: string;
  /** Value when neither flag nor file sets it. */
  default?: string | number | boolean;
  /** Placeholder in `--help`. */
  value?: string;
  /** Allowed values for a string option. */
  choices?: readonly string[];
  /** Smallest allowed integer or duration. */
  min?: number;
  /** Largest allowed integer. */
  max?: number;
  /**
   * The option may be given several times (the flag repeated, or a JSON
   * array in m2fetch.json); its value is then always an array of strings,
   * `default` included. String options only.
   */
  multiple?: boolean;
  /**
   * A reload (SIGHUP) applies a new value of this option from m2fetch.json;
   * a change to any other option waits for a restart.
   */
  reloads?: boolean;
}

/**
 * Every option of the serve command, by flag name.
 *
 * @example Usage
 * ```ts
 * import { SERVE_OPTIONS } from "./options.ts";
 * console.assert(SERVE_OPTIONS.workers.default === 0);
 * ```
 */
export const SERVE_OPTIONS = {
  "send-spec": {
    type: "string",
    value: "SPEC",
    default: "tcp://127.0.0.1:9997",
    multiple: true,
    description:
      "mongrel2's send_spec; m2fetch connects a PULL socket there to receive requests (repeat for several mongrel2 servers)",
  },
  "recv-spec": {
    type: "string",
    value: "SPEC",
    default: "tcp://127.0.0.1:9996",
    multiple: true,
    description:
      "mongrel2's recv_spec; m2fetch connects an XPUB socket there to send replies (repeat for several mongrel2 servers)",
  },
  workers: {
    reloads: true,
    type: "integer",
    value: "N",
    default: 0,
    min: 0,
    // Each worker is a V8 isolate of its own (tens of MiB); more than this
    // is a typo, not a deployment.
    max: 256,
    description:
      "run the handler module in N Web Workers (0: on the main thread); the main thread keeps the sockets and connection state",
  },
  timeout: {
    reloads: true,
    type: "duration",
    value: "TIME",
    default: 0,
    min: 0,
    description:
      "abort request.signal and answer 504 when a handler takes longer than this to respond (0: no limit)",
  },
  "worker-timeout": {
    type: "duration",
    value: "TIME",
    default: 10_000,
    min: 100,
    description:
      "replace a worker that answers no ping for this long (its requests get 502)",
  },
  "idle-timeout": {
    reloads: true,
    type: "duration",
    value: "TIME",
    default: 60_000,
    min: 100,
    description:
      "forget a connection with no request and no traffic for this long (mongrel2 does not always report disconnects)",
  },
  "write-timeout": {
    reloads: true,
    type: "duration",
    value: "TIME",
    default: 60_000,
    min: 100,
    description:
      "cancel a connection whose client accepted no response bytes for this long",
  },
  "keep-alive-interval": {
    reloads: true,
    type: "duration",
    value: "TIME",
    default: 30_000,
    min: 100,
    description:
      "while a response is in progress, ping mongrel2's idle reaper this often",
  },
  "mongrel2-stall-timeout": {
    type: "duration",
    value: "TIME",
    default: 30_000,
    min: 100,
    description:
      "drop the connection to a mongrel2 that takes none of m2fetch's replies for this long (hung or stopped), cutting its clients' requests, so that what waits for it stays bounded",
  },
  "shutdown-timeout": {
    reloads: true,
    type: "duration",
    value: "TIME",
    default: 10_000,
    min: 0,
    description:
      "on SIGINT/SIGTERM, wait this long for responses in flight before closing",
  },
  "upload-temp-store": {
    type: "string",
    value: "TEMPLATE",
    description:
      "mongrel2's upload.temp_store (as mongrel2 sees it, e.g. /tmp/upload.XXXXXX); enables large uploads",
  },
  "mongrel2-chroot": {
    type: "string",
    value: "PATH",
    description:
      "mongrel2's chroot: upload paths it reports are taken relative to it (omit when mongrel2 runs unchrooted)",
  },
  "mongrel2-config": {
    type: "string",
    value: "PATH",
    description:
      "mongrel2's config.sqlite (opened read-only): take the send/recv specs, chroot and upload store of one handler from it; --send-spec and the others still win when given",
  },
  handler: {
    type: "string",
    value: "IDENT",
    description:
      "with --mongrel2-config: the handler to serve, by its send_ident (or send_spec); needed when the database has several",
  },
  route: {
    type: "string",
    value: "HOST:PATTERN",
    description:
      "with --mongrel2-config: serve the handler behind this route, e.g. localhost:/",
  },
  "max-body-size": {
    reloads: true,
    type: "size",
    value: "BYTES",
    description:
      "largest request body accepted (e.g. 10M); larger uploads get 413 before their bytes arrive",
  },
  "upload-invoke": {
    reloads: true,
    type: "string",
    value: "WHEN",
    default: "start",
    choices: ["start", "done"],
    description:
      "call the handler at upload-start with a streaming body, or at upload-done as wsgid did",
  },
  "sweep-uploads": {
    type: "boolean",
    default: false,
    description:
      "at start-up, delete temp files a crash left in the upload store (unmodified for the write timeout)",
  },
  "flow-control": {
    type: "string",
    value: "MODE",
    default: "auto",
    choices: ["auto", "on", "off"],
    description:
      "whether mongrel2 runs with download.flow_control = 1: on, off, or auto (learned from DOWNLOAD_CREDITS, which only a connection's first request carries; --mongrel2-config reads it from the config)",
  },
  "log-format": {
    reloads: true,
    type: "string",
    value: "FORMAT",
    default: "text",
    choices: ["text", "json"],
    description: "log line format: text or json",
  },
  quiet: {
    reloads: true,
    type: "boolean",
    default: false,
    description: "log only warnings and errors (no access lines)",
  },
} as const satisfies Record<string, OptionSpec>;

/**
 * Options of the `dev` subcommand, on top of the serve options.
 *
 * @example Usage
 * ```ts
 * import { DEV_OPTIONS } from "./options.ts";
 * console.assert(DEV_OPTIONS.port.default === 6767);
 * ```
 */
export const DEV_OPTIONS = {
  port: {
    type: "integer",
    value: "PORT",
    default: 6767,
    min: 0,
    max: 65535,
    description: "HTTP port for the private mongrel2 (0 picks a free one)",
  },
  host: {
    type: "string",
    value: "ADDR",
    default: "127.0.0.1",
    description: "address the private mongrel2 listens on",
  },
  "state-dir": {
    type: "string",
    value: "DIR",
    default: ".state/dev",
    description:
      "where the private mongrel2 keeps its config, sockets, logs and uploads",
  },
  watch: {
    type: "boolean",
    default: false,
    description:
      "reload APP when files in its directory change, without restarting mongrel2 (in a worker unless --workers is given, so that its imports reload too); if APP fails to load at start-up, requests get 503 until an edit lets it load",
  },
} as const satisfies Record<string, OptionSpec>;

/** Options of `mongrel2-conf` and `init` for the mongrel2 server they describe. */
const SITE_OPTIONS = {
  port: {
    type: "integer",
    value: "PORT",
    default: 6767,
    min: 1,
    max: 65535,
    description: "HTTP port mongrel2 listens on",
  },
  host: {
    type: "string",
    value: "ADDR",
    default: "127.0.0.1",
    description: "address mongrel2 listens on",
  },
} as const satisfies Record<string, OptionSpec>;

/**
 * Options of the `mongrel2-conf` subcommand, on top of the serve options.
 *
 * @example Usage
 * ```ts
 * import { CONF_OPTIONS } from "./options.ts";
 * console.assert(CONF_OPTIONS["send-ident"].value === "IDENT");
 * ```
 */
export const CONF_OPTIONS = {
  ...SITE_OPTIONS,
  "mongrel2-dir": {
    type: "string",
    value: "DIR",
    description:
      "the directory mongrel2 runs in, holding its run/ logs/ tmp/ (default: --mongrel2-chroot, else the current directory)",
  },
  "send-ident": {
    type: "string",
    value: "IDENT",
    description:
      "the Handler's send_ident, also its recv_ident (default: a fresh UUID; give each mongrel2 server its own)",
  },
} as const satisfies Record<string, OptionSpec>;

/**
 * Options of the `init` subcommand.
 *
 * @example Usage
 * ```ts
 * import { INIT_OPTIONS } from "./options.ts";
 * console.assert(INIT_OPTIONS.host.default === "127.0.0.1");
 * ```
 */
export const INIT_OPTIONS = {
  ...SITE_OPTIONS,
  "send-spec": {
    type: "string",
    value: "SPEC",
    description: "mongrel2's send_spec (default: ipc://DIR/run/m2fetch_send)",
  },
  "recv-spec": {
    type: "string",
    value: "SPEC",
    description: "mongrel2's recv_spec (default: ipc://DIR/run/m2fetch_recv)",
  },
} as const satisfies Record<string, OptionSpec>;

/**
 * One option's typed value; an array for options with `multiple`.
 *
 * @example Usage
 * ```ts
 * import type { OptionValue } from "./options.ts";
 * const specs: OptionValue = ["tcp://127.0.0.1:9997"];
 * console.assert(Array.isArray(specs));
 * ```
 */
export type OptionValue = string | number | boolean | string[];

/**
 * Option values by flag name.
 *
 * @example Usage
 * ```ts
 * import type { OptionValues } from "./options.ts";
 * const values: OptionValues = { workers: 2, quiet: true };
 * console.assert(values.workers === 2);
 * ```
 */
export type OptionValues = Record<string, OptionValue>;

/**
 * Layers option values over the schema's defaults: later layers win (the
 * config file's values, then the command line's).
 *
 * @param schema The options, with their defaults.
 * @param layers Values to apply over the defaults, in order.
 * @returns Every option with a value.
 *
 * @example Usage
 * ```ts
 * import { SERVE_OPTIONS, withDefaults } from "./options.ts";
 * const values = withDefaults(SERVE_OPTIONS, { workers: 2 }, { quiet: true });
 * console.assert(values.workers === 2 && values.quiet === true);
 * console.assert(values["log-format"] === "text");
 * ```
 */
export function withDefaults(
  schema: Record<string, OptionSpec>,
  ...layers: OptionValues[]
): OptionValues {
  const values: OptionValues = {};
  for (const [name, spec] of Object.entries(schema)) {
    if (spec.default === undefined) continue;
    values[name] = spec.multiple ? [String(spec.default)] : spec.default;
  }
  return Object.assign(values, ...layers);
}

/** The longest duration a timer can wait (2^31 - 1 ms, about 24.8 days). */
const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * Parses a duration: a number with `ms`, `s`, `m` or `h`, or `0`. A bare
 * number is refused: `--timeout 30` meant as seconds (as other servers
 * take it) would otherwise be 30 ms, and time out nearly every request.
 *
 * @param text The text.
 * @returns Milliseconds, or `NaN` when the text is not a duration.
 *
 * @example Usage
 * ```ts
 * import { parseDuration } from "./options.ts";
 * console.assert(parseDuration("30s") === 30_000 && parseDuration("250ms") === 250);
 * console.assert(parseDuration("0.3ms") === 1 && parseDuration("0") === 0);
 * console.assert(Number.isNaN(parseDuration("30")));
 * ```
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (/^0+(\.0*)?$/.test(trimmed)) return 0;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(trimmed);
  if (match === null) return NaN;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2]]!;
  const ms = Number(match[1]) * unit;
  // Rounded to 0, a timeout of 0.3ms would mean no timeout at all.
  return ms > 0 && ms < 1 ? 1 : Math.round(ms);
}

/**
 * Parses a size: a number of bytes, or a number with `K`, `M` or `G`
 * (powers of 1024, an optional trailing `B` or `iB` allowed).
 *
 * @param text The text.
 * @returns Bytes, or `NaN` when the text is not a size.
 *
 * @example Usage
 * ```ts
 * import { parseSize } from "./options.ts";
 * console.assert(parseSize("10M") === 10 * 1024 * 1024 && parseSize("512") === 512);
 * ```
 */
export function parseSize(text: string): number {
  const match = /^(\d+)\s*([KMG])?(?:i?B)?$/i.exec(text.trim());
  if (match === null) return NaN;
  const unit = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[
    (match[2] ?? "").toUpperCase() as "" | "K" | "M" | "G"
  ];
  return Number(match[1]) * unit;
}

/**
 * Checks and converts one option value from text (command line) or JSON
 * (config file).
 *
 * @param name The flag name.
 * @param spec The option's spec.
 * @param raw The value as given.
 * @param source Where it came from, for the message (e.g. `--workers`).
 * @returns The typed value; for an option with `multiple`, an array (a
 * single value is wrapped).
 * @throws {TypeError} When the value has the wrong type or is out of range.
 *
 * @example Usage
 * ```ts
 * import { coerceOption, SERVE_OPTIONS } from "./options.ts";
 * const value = coerceOption("idle-timeout", SERVE_OPTIONS["idle-timeout"], "5s", "--idle-timeout");
 * console.assert(value === 5000);
 * ```
 */
export function coerceOption(
  name: string,
  spec: OptionSpec,
  raw: unknown,
  source: string,
): OptionValue {
  const fail = (expected: string): never => {
    throw new TypeError(
      `Invalid value for ${source}: expected ${expected}, got ${
        JSON.stringify(raw)
      }`,
    );
  };
  if (spec.multiple) {
    const items = Array.isArray(raw) ? raw : [raw];
    if (items.length === 0) return fail("at least one value");
    const single = { ...spec, multiple: false };
    return items.map((item) =>
      coerceOption(name, single, item, source) as string
    );
  }
  switch (spec.type) {
    case "boolean":
      if (typeof raw === "boolean") return raw;
      return fail("true or false");
    case "string": {
      if (typeof raw !== "string" || raw === "") {
        return fail("a non-empty string");
      }
      if (spec.choices && !spec.choices.includes(raw)) {
        return fail(`one of ${spec.choices.join(", ")}`);
      }
      return raw;
    }
    case "integer": {
      const value = typeof raw === "number"
        ? raw
        : typeof raw === "string" && /^\d+$/.test(raw)
        ? Number(raw)
        : NaN;
      if (!Number.isSafeInteger(value)) return fail("a whole number");
      if (spec.min !== undefined && value < spec.min) {
        return fail(`a whole number of at least ${spec.min}`);
      }
      if (spec.max !== undefined && value > spec.max) {
        return fail(`a whole number of at most ${spec.max}`);
      }
      return value;
    }
    case "size": {
      const value = typeof raw === "number"
        ? raw
        : typeof raw === "string"
        ? parseSize(raw)
        : NaN;
      if (!Number.isSafeInteger(value) || value < 0) {
        return fail("a size in bytes such as 1048576, 512K or 10M");
      }
      return value;
    }
    case "duration": {
      const value = typeof raw === "number"
        ? raw
        : typeof raw === "string"
        ? parseDuration(raw)
        : NaN;
      if (!Number.isFinite(value) || value < 0) {
        return fail(
          "a duration with its unit (ms, s, m or h) such as 500ms, 30s or 2m",
        );
      }
      if (spec.min !== undefined && value < spec.min) {
        return fail(`a duration of at least ${spec.min} ms`);
      }
      // Timers fire at once beyond 2^31 - 1 ms.
      if (value > MAX_DURATION_MS) {
        return fail(`a duration of at most ${MAX_DURATION_MS} ms (24 days)`);
      }
      return value;
    }
  }
  return fail(name);
}
