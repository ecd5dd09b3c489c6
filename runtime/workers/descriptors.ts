/**
 * Whether the process has the file descriptors a new worker takes. Deno
 * 2.9 aborts the whole process (a panic, not an error) when a worker's
 * thread cannot get them, so the pool checks before it starts one: under
 * load each spooled upload holds a descriptor, and a reload starts its
 * workers while the old ones still run.
 *
 * @module
 */

/** About what one worker thread opens as it starts (6 once started). */
const DESCRIPTORS_PER_WORKER = 8;

/**
 * Left over on top of the workers' share: what other requests (upload
 * files) may open between this check and the workers' threads starting.
 */
const DESCRIPTOR_MARGIN = 32;

/**
 * Too few file descriptors are free to start a worker.
 *
 * @example Usage
 * ```ts
 * import {
 *   checkDescriptorsFor,
 *   DescriptorsExhaustedError,
 * } from "./descriptors.ts";
 * try {
 *   checkDescriptorsFor(2, new URL(import.meta.url));
 * } catch (error) {
 *   if (!(error instanceof DescriptorsExhaustedError)) throw error;
 *   console.error(error.message); // names the limit and how to raise it
 * }
 * ```
 */
export class DescriptorsExhaustedError extends Error {
  /**
   * Creates the error.
   *
   * @param message What could not be started and why.
   */
  constructor(message: string) {
    super(message);
    this.name = "DescriptorsExhaustedError";
  }
}

/**
 * Checks that `workers` new workers can get their file descriptors, by
 * opening a file as often as they and a margin need and closing it again.
 *
 * @param workers How many workers are about to start.
 * @param probe A file to open (the worker's entry module, which a worker
 * must be able to read anyway); when it is not a local file, or cannot be
 * opened for another reason, nothing is checked.
 * @throws {DescriptorsExhaustedError} When the process runs out of file
 * descriptors first.
 *
 * @example Usage
 * ```ts
 * import { checkDescriptorsFor } from "./descriptors.ts";
 * checkDescriptorsFor(2, new URL(import.meta.url));
 * ```
 */
export function checkDescriptorsFor(workers: number, probe: URL): void {
  if (probe.protocol !== "file:") return;
  const needed = workers * DESCRIPTORS_PER_WORKER + DESCRIPTOR_MARGIN;
  const opened: Deno.FsFile[] = [];
  try {
    while (opened.length < needed) opened.push(Deno.openSync(probe));
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== "EMFILE" && code !== "ENFILE") return;
    throw new DescriptorsExhaustedError(
      `Cannot start ${workers} handler worker(s): m2fetch could open only ${opened.length} more files, fewer than the ${needed} it keeps free for them (about ${DESCRIPTORS_PER_WORKER} a worker, and a margin); ${
        code === "EMFILE"
          ? "its open-file limit is reached: raise it with ulimit -n or systemd's LimitNOFILE (each upload being read holds one)"
          : "the system's open-file table is full"
      }`,
    );
  } finally {
    for (const file of opened) file.close();
  }
}
