/**
 * Runs `wrk` and reads its report: requests per second, the latency
 * percentiles of `--latency`, and every kind of error wrk counts.
 *
 * @module
 */

/** What one wrk run measured. */
export interface WrkResult {
  /** `Requests/sec:`. */
  requestsPerSecond: number;
  /** Requests completed in the run. */
  requests: number;
  /** Median latency in milliseconds. */
  p50Ms: number;
  /** 99th percentile latency in milliseconds. */
  p99Ms: number;
  /** Connect, read, write and timeout errors (`Socket errors:`). */
  socketErrors: number;
  /** `Non-2xx or 3xx responses:`. */
  non2xx: number;
}

// Microseconds are divided rather than multiplied by 0.001, which would
// turn 408.00us into 0.40800000000000003.
const PER_MS: Record<string, number> = { us: 1000, ms: 1 };
const MS_PER: Record<string, number> = { s: 1000, m: 60_000 };

/**
 * Converts a wrk latency like `408.00us`, `1.88ms` or `2.00s` to milliseconds.
 *
 * @param text The latency as wrk prints it.
 * @returns Milliseconds.
 * @throws {SyntaxError} When the text is not a wrk latency.
 *
 * @example Usage
 * ```ts
 * import { parseLatency } from "./wrk.ts";
 * console.assert(parseLatency("408.00us") === 0.408);
 * ```
 */
export function parseLatency(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text.trim());
  if (match === null) {
    throw new SyntaxError(`Cannot read wrk latency "${text}"`);
  }
  const value = Number(match[1]);
  const unit = match[2];
  return unit in PER_MS ? value / PER_MS[unit] : value * MS_PER[unit];
}

/**
 * Reads the report wrk prints with `--latency`.
 *
 * @param output wrk's stdout.
 * @returns The numbers.
 * @throws {SyntaxError} When a required line is missing.
 *
 * @example Usage
 * ```ts
 * import { parseWrk } from "./wrk.ts";
 * const result = parseWrk(
 *   "     50%    1.88ms\n     99%    5.72ms\n" +
 *     "  161680 requests in 5.01s, 32.54MB read\nRequests/sec:  32269.75\n",
 * );
 * console.assert(result.requestsPerSecond === 32269.75 && result.p99Ms === 5.72);
 * ```
 */
export function parseWrk(output: string): WrkResult {
  const find = (pattern: RegExp, what: string): RegExpExecArray => {
    const match = pattern.exec(output);
    if (match === null) {
      throw new SyntaxError(
        `Cannot read the wrk report: no ${what} line in:\n${output}`,
      );
    }
    return match;
  };
  const requestsPerSecond = Number(
    find(/^Requests\/sec:\s+([\d.]+)/m, "Requests/sec")[1],
  );
  const requests = Number(find(/^\s*(\d+) requests in /m, "requests in")[1]);
  const p50Ms = parseLatency(find(/^\s*50%\s+(\S+)/m, "50% latency")[1]);
  const p99Ms = parseLatency(find(/^\s*99%\s+(\S+)/m, "99% latency")[1]);
  let socketErrors = 0;
  const errors = /^\s*Socket errors: (.*)$/m.exec(output);
  if (errors !== null) {
    for (const count of errors[1].matchAll(/\d+/g)) {
      socketErrors += Number(count[0]);
    }
  }
  const non2xx = /^\s*Non-2xx or 3xx responses:\s+(\d+)/m.exec(output);
  return {
    requestsPerSecond,
    requests,
    p50Ms,
    p99Ms,
    socketErrors,
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
  };
}

/** How to run wrk. */
export interface WrkOptions {
  /** The URL to load. */
  url: string;
  /** Open connections (`-c`). */
  connections: number;
  /** Seconds to run (`-d`). */
  seconds: number;
  /** Threads (`-t`); default 2, or 1 for a single connection. */
  threads?: number;
  /** Seconds before a request counts as a timeout. Default 5. */
  timeoutSeconds?: number;
}

/**
 * Returns wrk's arguments for a run with `--latency`.
 *
 * @param options The run.
 * @returns The arguments, URL last.
 *
 * @example Usage
 * ```ts
 * import { wrkArgs } from "./wrk.ts";
 * const args = wrkArgs({ url: "http://127.0.0.1:1/", connections: 1, seconds: 3 });
 * console.assert(args.join(" ") === "-t1 -c1 -d3s --timeout 5s --latency http://127.0.0.1:1/");
 * ```
 */
export function wrkArgs(options: WrkOptions): string[] {
  const threads = options.threads ?? Math.min(2, options.connections);
  return [
    `-t${threads}`,
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    "--timeout",
    `${options.timeoutSeconds ?? 5}s`,
    "--latency",
    options.url,
  ];
}

/**
 * Runs wrk and parses its report.
 *
 * @param options The run.
 * @returns The numbers and wrk's own output.
 * @throws {Error} When wrk is missing, fails, or prints no report.
 */
export async function runWrk(
  options: WrkOptions,
): Promise<WrkResult & { output: string }> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command("wrk", {
      args: wrkArgs(options),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw new Error(
      `Cannot run wrk (Debian package "wrk"): ${(error as Error).message}`,
      { cause: error },
    );
  }
  const decoder = new TextDecoder();
  const output = decoder.decode(result.stdout) + decoder.decode(result.stderr);
  if (!result.success) {
    throw new Error(`wrk exited with code ${result.code}:\n${output}`);
  }
  return { ...parseWrk(output), output };
}
