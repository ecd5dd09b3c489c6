/**
 * Logging: errors with stacks, warnings, and one access line per request.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** One finished request, for the access log. */
export interface AccessEntry {
  /** Request method. */
  method: string;
  /** Raw request path. */
  path: string;
  /** Response status, or 0 when no response was sent. */
  status: number;
  /** Body bytes sent (without framing). */
  bytes: number;
  /** Milliseconds from arrival to the last byte handed to mongrel2. */
  durationMs: number;
  /** mongrel2's connection id. */
  connectionId: string;
  /**
   * The handler's `send_ident` the request came with: several mongrel2
   * servers number their connections alike, and this tells them apart.
   */
  sender: string;
}

/** Where m2fetch writes what happens. */
export interface Logger {
  /** Something failed; `error` carries the stack when there is one. */
  error(message: string, error?: unknown): void;
  /** Something odd that did not fail a request. */
  warn(message: string): void;
  /** Start-up and shutdown facts. */
  info(message: string): void;
  /** A finished request. */
  access(entry: AccessEntry): void;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** `text` (default) or `json` lines. */
  format?: "text" | "json";
  /** Leave out info and access lines. */
  quiet?: boolean;
  /**
   * End text access lines with `sender=IDENT`, for requests from several
   * mongrel2 servers (JSON lines always carry `sender`). Default false.
   */
  showSender?: boolean;
  /** Where lines go (default: stderr, see {@linkcode createLogger}). */
  write?: (line: string) => void;
}

const encoder = new TextEncoder();
/** Buffered log text that is written at once, without waiting for the turn to end. */
const FLUSH_CHARS = 64 * 1024;

/**
 * Writes lines to stderr, gathered: those of one event-loop turn go out in
 * one write when the turn's callbacks have run (or sooner past 64 KiB), so
 * an access line per request does not cost a system call per request.
 */
function stderrLines(): { write(line: string): void; flush(): void } {
  let pending = "";
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending === "") return;
    const bytes = encoder.encode(pending);
    pending = "";
    for (let at = 0; at < bytes.length;) {
      at += Deno.stderr.writeSync(bytes.subarray(at));
    }
  };
  globalThis.addEventListener("unload", flush);
  return {
    write(line) {
      pending += line + "\n";
      if (pending.length >= FLUSH_CHARS) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush,
  };
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    return error.stack ?? `${error.name}: ${error.message}`;
  }
  return String(error);
}

/**
 * Creates a logger writing one line per event. On stderr (the default),
 * errors and warnings are written at once; info and access lines are
 * gathered and written when the event-loop turn's callbacks have run, and
 * at exit.
 *
 * @param options Format, verbosity and destination.
 * @returns The logger.
 *
 * @example Usage
 * ```ts
 * import { createLogger } from "@m2fetch/m2fetch";
 * const lines: string[] = [];
 * const logger = createLogger({ write: (line) => lines.push(line) });
 * logger.warn("Disk is nearly full");
 * console.assert(lines[0].includes("Disk is nearly full"));
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const lines = options.write === undefined
    ? stderrLines()
    : { write: options.write, flush() {} };
  const json = options.format === "json";
  const quiet = options.quiet ?? false;
  const showSender = options.showSender ?? false;
  // Lines of the same millisecond share one timestamp string.
  let stampedAt = NaN;
  let stamp = "";
  const now = () => {
    const time = Date.now();
    if (time !== stampedAt) {
      stampedAt = time;
      stamp = new Date(time).toISOString();
    }
    return stamp;
  };
  const emit = (level: string, message: string, extra?: object) => {
    if (json) {
      lines.write(JSON.stringify({ time: now(), level, message, ...extra }));
    } else {
      lines.write(`${now()} ${level} ${message}`);
    }
  };
  return {
    error(message, error) {
      if (error === undefined) emit("error", message);
      else if (json) emit("error", message, { error: describe(error) });
      else emit("error", `${message}\n${describe(error)}`);
      // What led to a crash must be out before the crash.
      lines.flush();
    },
    warn(message) {
      emit("warn", message);
      lines.flush();
    },
    info(message) {
      if (!quiet) emit("info", message);
    },
    access(entry) {
      if (quiet) return;
      if (json) {
        emit("access", `${entry.method} ${entry.path}`, {
          ...entry,
          // Microseconds are as precise as the clock is meaningful here.
          durationMs: Math.round(entry.durationMs * 1000) / 1000,
        });
      } else {
        emit(
          "access",
          `${entry.method} ${entry.path} ${entry.status} ${entry.bytes} ${
            entry.durationMs.toFixed(1)
          }ms conn=${entry.connectionId}${
            showSender ? ` sender=${entry.sender}` : ""
          }`,
        );
      }
    },
  };
}
