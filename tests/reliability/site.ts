/**
 * Pieces for the reliability tests and bench scripts that the e2e harness
 * does not offer: m2fetch's own status line, memory sampling of a process
 * and one-shot raw requests. The mongrel2 that can be restarted on the same
 * directory, port and handler ident (`startSite`) and m2fetch subprocesses
 * started and stopped independently of it with any `deno run` permission
 * flags (`spawnM2fetch`) are re-exported from `tests/site.ts` and
 * `tests/subprocess.ts`.
 *
 * @module
 */

import { delay, RawClient, type RawResponse } from "../e2e/harness.ts";
import type { Subprocess } from "../subprocess.ts";

export { type Site, type SiteOptions, startSite } from "../site.ts";
export {
  type M2fetchOptions,
  spawnM2fetch,
  type Subprocess,
} from "../subprocess.ts";

/**
 * Asks m2fetch for its status line (SIGUSR2) and returns the numbers.
 *
 * @param m2fetch The process.
 * @returns Connections, requests in flight and RSS bytes.
 */
export async function statusOf(
  m2fetch: Subprocess,
): Promise<{ connections: number; inFlight: number; rss: number }> {
  const pattern =
    /status: (\d+) connection\(s\), (\d+) request\(s\) in flight, rss (\d+) bytes/g;
  const before = [...m2fetch.output().matchAll(pattern)].length;
  m2fetch.signal("SIGUSR2");
  const deadline = performance.now() + 5000;
  while (performance.now() < deadline) {
    const all = [...m2fetch.output().matchAll(pattern)];
    if (all.length > before) {
      const last = all[all.length - 1];
      return {
        connections: Number(last[1]),
        inFlight: Number(last[2]),
        rss: Number(last[3]),
      };
    }
    await delay(20);
  }
  throw new Error(`m2fetch wrote no status line:\n${m2fetch.output()}`);
}

/**
 * The resident set size of a process, in bytes, from /proc.
 *
 * @param pid The process id.
 * @returns Bytes.
 */
export function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (match === null) throw new Error(`No VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/**
 * One request on a new raw connection to mongrel2; the connection is
 * closed afterwards.
 *
 * @param port mongrel2's port.
 * @param request The request bytes (a path makes a GET).
 * @param timeoutMs How long to wait for the response.
 * @returns The response.
 */
export async function rawRequest(
  port: number,
  request: string,
  timeoutMs = 10_000,
): Promise<RawResponse> {
  await using client = await RawClient.connect(port);
  await client.write(
    request.startsWith("/")
      ? `GET ${request} HTTP/1.1\r\nHost: localhost\r\n\r\n`
      : request,
  );
  return await client.readResponse({ timeoutMs });
}
