/**
 * What m2fetch answers, and logs, when it cannot open the file of an upload
 * mongrel2 reported: pure, so each case can be tested without a file.
 *
 * @module
 */

import type { Refusal } from "../http/refusal.ts";
import type { UploadStore } from "./policy.ts";
import { UploadRejectedError } from "./store.ts";

/** Where the upload stands when its file could not be opened. */
export interface UploadFailureContext {
  /** The path as mongrel2 reported it. */
  path: string;
  /** The configured store. */
  store: UploadStore;
  /** Whether mongrel2 has reported the upload complete. */
  done: boolean;
  /** Whether no upload was found missing before (the first one says why). */
  firstMissing: boolean;
}

/** The answer to a failed upload, and whether its file was missing. */
export interface UploadFailure extends Refusal {
  /**
   * The file of an unfinished upload was not there: a client that left, or
   * (when its upload-done comes after all) a store m2fetch looks for in the
   * wrong place.
   */
  missingUnfinished: boolean;
}

/**
 * What to check when mongrel2's upload files are not where m2fetch looks.
 *
 * @param store The configured store.
 * @returns The hint, for a log line.
 *
 * @example Usage
 * ```ts
 * import { uploadPlaceHint } from "./failure.ts";
 * const hint = uploadPlaceHint({ template: "/tmp/upload.XXXXXX" });
 * console.assert(hint.includes("pass --mongrel2-chroot"));
 * ```
 */
export function uploadPlaceHint(store: UploadStore): string {
  return `--upload-temp-store and --mongrel2-chroot must match mongrel2's upload.temp_store and chroot (--mongrel2-config reads both)${
    store.chroot === undefined
      ? "; if mongrel2 runs chrooted, pass --mongrel2-chroot"
      : ""
  }`;
}

/**
 * The answer for an upload whose file could not be opened.
 *
 * @param error What opening the file threw.
 * @param context The upload.
 * @returns Status, log line and level.
 *
 * @example Usage
 * ```ts
 * import { uploadFailure } from "./failure.ts";
 * const failure = uploadFailure(new Deno.errors.PermissionDenied("denied"), {
 *   path: "/tmp/upload.Ab12Cd",
 *   store: { template: "/tmp/upload.XXXXXX" },
 *   done: false,
 *   firstMissing: true,
 * });
 * console.assert(failure.status === 500 && failure.why.includes("0644"));
 * ```
 */
export function uploadFailure(
  error: unknown,
  context: UploadFailureContext,
): UploadFailure {
  const { path, store } = context;
  const answer = (
    status: number,
    why: string,
    level: Refusal["level"],
    missingUnfinished = false,
  ): UploadFailure => ({ status, why, level, missingUnfinished });
  if (error instanceof UploadRejectedError && error.kind === "missing") {
    if (context.done) {
      // mongrel2 never deletes a finished upload: it wrote it elsewhere.
      return answer(
        500,
        `mongrel2 finished the upload "${path}", but it is not there: ${
          uploadPlaceHint(store)
        }; the file is left where mongrel2 wrote it`,
        "warn",
      );
    }
    // Usually a client that left at once: mongrel2 removes an unfinished
    // upload. If every upload fails so, it is the set-up, which the first
    // such line says, and so does the upload-done of any such upload that
    // mongrel2 finishes after all.
    return context.firstMissing
      ? answer(
        500,
        `mongrel2 reported the upload file "${path}", but it is not there: the client probably left and mongrel2 removed it; if every upload fails so, ${
          uploadPlaceHint(store)
        }`,
        "warn",
        true,
      )
      : answer(
        500,
        `The upload file "${path}" was gone (the client probably left)`,
        "info",
        true,
      );
  }
  if (error instanceof UploadRejectedError && error.kind === "setup") {
    return answer(500, `${error.message}: ${uploadPlaceHint(store)}`, "error");
  }
  if (error instanceof UploadRejectedError) {
    // Not a plain file directly in the store (a link, a directory):
    // someone tampered with the store, not a client with its headers.
    return answer(400, error.message, "warn");
  }
  if (error instanceof Deno.errors.NotFound) {
    return answer(
      500,
      `mongrel2 removed the upload file "${path}" before m2fetch opened it: the client probably left`,
      "warn",
    );
  }
  const hint = error instanceof Deno.errors.NotCapable
    ? " (grant m2fetch --allow-read and --allow-write on the temp store directory)"
    : error instanceof Deno.errors.PermissionDenied
    ? ` (mongrel2 creates it with upload.temp_store_mode, "0600" unless set: use "0644" when m2fetch runs as another user)`
    : "";
  return answer(
    500,
    `Cannot open the upload file "${path}": ${(error as Error).message}${hint}`,
    "error",
  );
}
