/**
 * Logging: errors with stacks, warnings, and one access line per request.
 *
 * @module
 */

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
  /** Where lines go (default: stderr). */
  write?: (line: string) => void;
}

const encoder = new TextEncoder();

function describe(error: unknown): string {
  if (error instanceof Error) {
    return error.stack ?? `${error.name}: ${error.message}`;
  }
  return String(error);
}

/**
 * Creates a logger writing one line per event.
 *
 * @param options Format, verbosity and destination.
 * @returns The logger.
 *
 * @example Usage
 * ```ts
 * import { createLogger } from "./log.ts";
 * const lines: string[] = [];
 * const logger = createLogger({ write: (line) => lines.push(line) });
 * logger.warn("Disk is nearly full");
 * console.assert(lines[0].includes("Disk is nearly full"));
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const write = options.write ??
    ((line: string) => Deno.stderr.writeSync(encoder.encode(line + "\n")));
  const json = options.format === "json";
  const quiet = options.quiet ?? false;
  const emit = (level: string, message: string, extra?: object) => {
    if (json) {
      write(JSON.stringify({
        time: new Date().toISOString(),
        level,
        message,
        ...extra,
      }));
    } else {
      write(`${new Date().toISOString()} ${level} ${message}`);
    }
  };
  return {
    error(message, error) {
      if (error === undefined) emit("error", message);
      else if (json) emit("error", message, { error: describe(error) });
      else emit("error", `${message}\n${describe(error)}`);
    },
    warn(message) {
      emit("warn", message);
    },
    info(message) {
      if (!quiet) emit("info", message);
    },
    access(entry) {
      if (quiet) return;
      if (json) {
        emit("access", `${entry.method} ${entry.path}`, entry);
      } else {
        emit(
          "access",
          `${entry.method} ${entry.path} ${entry.status} ${entry.bytes} ${
            entry.durationMs.toFixed(1)
          }ms conn=${entry.connectionId}`,
        );
      }
    },
  };
}
