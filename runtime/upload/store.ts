/**
 * File-system checks and clean-up for mongrel2's upload temp files. Only
 * files that pass {@linkcode verifyUploadFile} are ever opened or deleted.
 *
 * @module
 */

import {
  realUploadPath,
  templatePattern,
  type UploadFacts,
  type UploadStore,
} from "./policy.ts";

/** An upload path failed a check; nothing was opened or deleted. */
export class UploadRejectedError extends Error {
  /**
   * Creates the error.
   *
   * @param message What failed and why.
   * @param kind `missing`: the path passed every check but no file is
   * there; `setup`: m2fetch's own store settings are wrong; `file`: the
   * file itself is not an upload of the store (a link, outside it).
   */
  constructor(
    message: string,
    readonly kind: "missing" | "setup" | "file" = "file",
  ) {
    super(message);
    this.name = "UploadRejectedError";
  }
}

function directoryOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/**
 * Returns the real directory of the temp store (symlinks resolved).
 *
 * @param store The upload store.
 * @returns The directory's real path.
 * @throws {UploadRejectedError} When the directory does not exist, or
 * resolves outside mongrel2's chroot (a symlink in the chroot that points
 * elsewhere from outside it).
 *
 * @example Usage
 * ```ts
 * import { storeDirectory } from "./store.ts";
 * const dir = await Deno.realPath(await Deno.makeTempDir());
 * console.assert(await storeDirectory({ template: `${dir}/upload.XXXXXX` }) === dir);
 * await Deno.remove(dir);
 * ```
 */
export async function storeDirectory(store: UploadStore): Promise<string> {
  const directory = realUploadPath(directoryOf(store.template), store);
  try {
    const resolved = await Deno.realPath(directory);
    if ((store.chroot ?? "").replace(/\/+$/, "") !== "") {
      const chroot = await Deno.realPath(store.chroot!);
      if (resolved !== chroot && !resolved.startsWith(`${chroot}/`)) {
        throw new UploadRejectedError(
          `Cannot use upload temp store directory ${directory}: it resolves to ${resolved}, outside mongrel2's chroot ${chroot}`,
          "setup",
        );
      }
    }
    return resolved;
  } catch (error) {
    if (error instanceof UploadRejectedError) throw error;
    const hint = !(error instanceof Deno.errors.NotFound)
      ? ""
      : store.chroot === undefined
      ? " (if mongrel2 runs chrooted, the store is inside its chroot: pass --mongrel2-chroot)"
      : ` (mongrel2's upload.temp_store directory, inside its chroot ${store.chroot})`;
    throw new UploadRejectedError(
      `Cannot use upload temp store directory ${directory}: ${
        (error as Error).message
      }${hint}`,
      "setup",
    );
  }
}

/**
 * Why the file of an upload-done that came without its upload-start may
 * not be taken over, if anything stands against it. Only an upload whose
 * upload-start went to an earlier m2fetch can be taken over: its file was
 * created before this one started, and it is complete.
 *
 * @param facts The upload-done's path, coding and length.
 * @param store The configured store.
 * @param startedAt When this server started (ms since the epoch).
 * @returns The reason to refuse (completing "the file …"), or `null`; a
 * file that fails the store's checks is left for opening it to report.
 *
 * @example Usage
 * ```ts
 * import { takeOverRefusal } from "./store.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/upload.Ab12Cd`, "hello");
 * const why = await takeOverRefusal(
 *   { path: `${dir}/upload.Ab12Cd`, chunked: false, length: 5 },
 *   { template: `${dir}/upload.XXXXXX` },
 *   Date.now() - 60_000,
 * );
 * console.assert(why !== null && why.includes("created after"));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function takeOverRefusal(
  facts: UploadFacts,
  store: UploadStore,
  startedAt: number,
): Promise<string | null> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(await verifyUploadFile(facts.path, store));
  } catch {
    return null;
  }
  if (info.birthtime === null) {
    return "has no creation time on this file system, so it cannot be told from a new one";
  }
  if (info.birthtime.getTime() >= startedAt) {
    return "was created after this m2fetch started, so no earlier one had its upload-start";
  }
  if (!facts.chunked && info.size !== facts.length) {
    return `holds ${info.size} bytes, not its Content-Length of ${facts.length}`;
  }
  return null;
}

/**
 * Checks that a path mongrel2 reported is an upload file of the store: it
 * matches the template, resolves (symlinks included) to a regular file
 * directly inside the store's directory under the chroot, and is not itself
 * a link. Returns its real path.
 *
 * @param path The path as mongrel2 reported it.
 * @param store The upload store.
 * @returns The real path to open and later delete.
 * @throws {UploadRejectedError} When any check fails.
 *
 * @example Usage
 * ```ts
 * import { verifyUploadFile } from "./store.ts";
 * const dir = await Deno.realPath(await Deno.makeTempDir());
 * await Deno.writeTextFile(`${dir}/upload.15yUxo`, "body");
 * const real = await verifyUploadFile(`${dir}/upload.15yUxo`, { template: `${dir}/upload.XXXXXX` });
 * console.assert(real === `${dir}/upload.15yUxo`);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function verifyUploadFile(
  path: string,
  store: UploadStore,
): Promise<string> {
  if (!templatePattern(store.template).test(path)) {
    throw new UploadRejectedError(
      `Rejected upload path "${path}": it does not match the temp store template "${store.template}"`,
    );
  }
  const directory = await storeDirectory(store);
  const real = realUploadPath(path, store);
  let info: Deno.FileInfo;
  let resolved: string;
  try {
    info = await Deno.lstat(real);
    resolved = await Deno.realPath(real);
  } catch (error) {
    // Not allowed to look: m2fetch's set-up, not the request, is at fault.
    if (
      error instanceof Deno.errors.PermissionDenied ||
      error instanceof Deno.errors.NotCapable
    ) throw error;
    throw new UploadRejectedError(
      `Rejected upload path "${path}": ${real} cannot be read (${
        (error as Error).message
      })`,
      error instanceof Deno.errors.NotFound ? "missing" : "file",
    );
  }
  if (!info.isFile || info.isSymlink) {
    throw new UploadRejectedError(
      `Rejected upload path "${path}": ${real} is not a regular file`,
    );
  }
  const name = path.slice(path.lastIndexOf("/") + 1);
  if (resolved !== `${directory}/${name}`) {
    throw new UploadRejectedError(
      `Rejected upload path "${path}": ${real} resolves to ${resolved}, outside the temp store directory ${directory}`,
    );
  }
  return resolved;
}

/**
 * Deletes a verified upload file; a file already gone is not an error.
 *
 * @param realPath A path returned by {@linkcode verifyUploadFile}.
 * @returns Whether a file was deleted.
 *
 * @example Usage
 * ```ts
 * import { removeUploadFile } from "./store.ts";
 * const file = await Deno.makeTempFile();
 * console.assert(await removeUploadFile(file));
 * console.assert(!await removeUploadFile(file)); // already gone
 * ```
 */
export async function removeUploadFile(realPath: string): Promise<boolean> {
  try {
    await Deno.remove(realPath);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Deletes temp files a crash left behind: files in the store directory that
 * match the template and were not modified for `olderThanMs`.
 *
 * @param store The upload store.
 * @param olderThanMs Minimum age since the last write.
 * @returns The real paths deleted.
 *
 * @example Usage
 * ```ts
 * import { sweepStaleUploads } from "./store.ts";
 * const dir = await Deno.realPath(await Deno.makeTempDir());
 * await Deno.writeTextFile(`${dir}/upload.15yUxo`, "left by a crash");
 * await Deno.utime(`${dir}/upload.15yUxo`, 0, 0); // last written in 1970
 * const removed = await sweepStaleUploads({ template: `${dir}/upload.XXXXXX` }, 60_000);
 * console.assert(removed[0] === `${dir}/upload.15yUxo`);
 * await Deno.remove(dir);
 * ```
 */
export async function sweepStaleUploads(
  store: UploadStore,
  olderThanMs: number,
): Promise<string[]> {
  const directory = await storeDirectory(store);
  const template = store.template;
  const namePattern = templatePattern(
    template.slice(template.lastIndexOf("/")),
  );
  const removed: string[] = [];
  const now = Date.now();
  for await (const entry of Deno.readDir(directory)) {
    if (!entry.isFile || !namePattern.test(`/${entry.name}`)) continue;
    const path = `${directory}/${entry.name}`;
    const info = await Deno.lstat(path).catch(() => null);
    if (info === null || !info.isFile) continue;
    if (now - (info.mtime?.getTime() ?? now) < olderThanMs) continue;
    if (await removeUploadFile(path)) removed.push(path);
  }
  return removed;
}

/**
 * Whether m2fetch can delete files in the store's directory (it removes
 * each upload when its request ends; mongrel2 never removes a completed
 * one): tried by creating and removing a file of its own there.
 *
 * @param directory The store's real directory ({@linkcode storeDirectory}).
 * @returns Why m2fetch cannot, or `null` when it can.
 *
 * @example Usage
 * ```ts
 * import { storeCannotDelete } from "./store.ts";
 * const dir = await Deno.makeTempDir();
 * const why = await storeCannotDelete(dir);
 * if (why !== null) console.warn(why);
 * await Deno.remove(dir);
 * ```
 */
export async function storeCannotDelete(
  directory: string,
): Promise<string | null> {
  try {
    // Not a name the template can produce, so no sweep ever sees it.
    const probe = await Deno.makeTempFile({
      dir: directory,
      prefix: ".m2fetch-write-check-",
    });
    await Deno.remove(probe);
    return null;
  } catch (error) {
    const hint = error instanceof Deno.errors.NotCapable
      ? "grant --allow-write on it"
      : "make it writable by the user m2fetch runs as (the files themselves need only be readable)";
    return `m2fetch cannot delete upload files in ${directory} (${
      (error as Error).message
    }): every upload would stay there; ${hint}`;
  }
}
