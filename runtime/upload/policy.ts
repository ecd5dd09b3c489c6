/**
 * Rules for trusting mongrel2's async uploads (pure: no file system).
 *
 * When a body is larger than `limits.content_length` (or chunked), mongrel2
 * writes it to a `mkstemp` file made from `upload.temp_store` and tells the
 * handler twice: an upload-start message (`x-mongrel2-upload-start: PATH`,
 * empty body) and an upload-done message (both headers, empty body). Any
 * client can send those headers on a small request, so a path is only
 * trusted when the message has the shape only mongrel2 produces and the path
 * is one the configured template could have produced.
 *
 * @module
 */

import { firstHeader, type Mongrel2Headers } from "../protocol/message.ts";

/** Where mongrel2 writes uploads. */
export interface UploadStore {
  /**
   * mongrel2's `upload.temp_store`, as mongrel2 sees it: an absolute path
   * ending in `XXXXXX`, e.g. `/tmp/upload.XXXXXX`.
   */
  template: string;
  /**
   * mongrel2's chroot on the real file system, when it runs chrooted: the
   * paths it reports are relative to it. Empty or absent: paths are real.
   */
  chroot?: string;
}

/** A genuine upload's facts, from the message that marks it. */
export interface UploadFacts {
  /** The path mongrel2 spooled the body to. */
  path: string;
  /** The request came with chunked coding (no length known ahead). */
  chunked: boolean;
  /** The declared `Content-Length`, when there is one. */
  length: number | undefined;
}

/** What an upload marker on a message means. */
export type UploadMarker =
  | { kind: "none" }
  | ({ kind: "start" } & UploadFacts)
  | ({ kind: "done" } & UploadFacts)
  /**
   * mongrel2's own upload-start or upload-done (it has the shape), but
   * m2fetch was given no temp store: the deployment is wrong, not the
   * request.
   */
  | { kind: "unconfigured"; path: string }
  /**
   * mongrel2's own upload (it has the shape, and mongrel2 replaces a
   * client's upload-start header with its own), at a path the template
   * cannot produce: m2fetch's --upload-temp-store is not mongrel2's
   * upload.temp_store. The file is left alone.
   */
  | { kind: "mismatched"; path: string; reason: string }
  | {
    kind: "forged";
    reason: string;
    /**
     * The message is refused, but it is mongrel2's own upload-start: mongrel2
     * replaces a client's `x-mongrel2-upload-start` with its own yet keeps a
     * client's `x-mongrel2-upload-done`. This file is real and must still be
     * deleted when the request ends.
     */
    upload?: string;
  };

const START = "x-mongrel2-upload-start";
const DONE = "x-mongrel2-upload-done";
/** mongrel2 parses Content-Length with strtol into an int. */
const MAX_MONGREL2_CONTENT_LENGTH = 2 ** 31 - 1;

/**
 * A Content-Length as mongrel2 reads it: C's `strtol` (leading white
 * space, a sign, then decimal digits up to the first other character),
 * with anything negative, above 2^31-1 or unreadable taken as 0.
 */
function strtolLength(value: string): number {
  const match = /^[ \t\n\v\f\r]*([+-]?)(\d+)/.exec(value);
  if (match === null || match[1] === "-") return 0;
  const length = Number(match[2]);
  return length <= MAX_MONGREL2_CONTENT_LENGTH ? length : 0;
}

/**
 * Checks a `upload.temp_store` template and returns it normalised.
 *
 * @param template The template.
 * @returns The template.
 * @throws {TypeError} When it is not absolute or does not end in `XXXXXX`.
 *
 * @example Usage
 * ```ts
 * import { checkTemplate } from "./policy.ts";
 * console.assert(checkTemplate("/tmp/upload.XXXXXX") === "/tmp/upload.XXXXXX");
 * ```
 */
export function checkTemplate(template: string): string {
  if (!template.startsWith("/") || !template.endsWith("XXXXXX")) {
    throw new TypeError(
      `Invalid upload temp store "${template}": expected an absolute mkstemp template ending in XXXXXX, as in mongrel2's upload.temp_store`,
    );
  }
  const name = template.slice(template.lastIndexOf("/") + 1);
  if (name === "XXXXXX" && template.lastIndexOf("/") === 0) {
    throw new TypeError(
      `Invalid upload temp store "${template}": uploads need a directory of their own, not /`,
    );
  }
  if (template.split("/").some((part) => part === ".." || part === ".")) {
    throw new TypeError(
      `Invalid upload temp store "${template}": "." and ".." are not allowed`,
    );
  }
  return template;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/**
 * Returns a matcher for the paths `mkstemp(template)` can create: the
 * template with its trailing `XXXXXX` replaced by six characters of
 * glibc's `[A-Za-z0-9]` alphabet.
 *
 * @param template A checked template.
 * @returns A regular expression matching whole paths.
 *
 * @example Usage
 * ```ts
 * import { templatePattern } from "./policy.ts";
 * const pattern = templatePattern("/tmp/upload.XXXXXX");
 * console.assert(pattern.test("/tmp/upload.15yUxo") && !pattern.test("/etc/passwd"));
 * ```
 */
export function templatePattern(template: string): RegExp {
  const stem = template.slice(0, -6);
  return new RegExp(`^${escapeRegExp(stem)}[A-Za-z0-9]{6}$`);
}

/**
 * Maps a path as mongrel2 reports it to the real file system: under the
 * chroot when mongrel2 runs chrooted, unchanged otherwise.
 *
 * @param path An absolute path as mongrel2 sees it.
 * @param store The upload store.
 * @returns The real path.
 *
 * @example Usage
 * ```ts
 * import { realUploadPath } from "./policy.ts";
 * console.assert(realUploadPath("/tmp/upload.abcdef", { template: "/tmp/upload.XXXXXX", chroot: "/srv/m2" }) === "/srv/m2/tmp/upload.abcdef");
 * ```
 */
export function realUploadPath(path: string, store: UploadStore): string {
  const chroot = (store.chroot ?? "").replace(/\/+$/, "");
  return chroot === "" ? path : `${chroot}${path}`;
}

/**
 * Reads the upload marker of a request message and decides whether it can
 * be genuine. A genuine upload-start has exactly one start path, no done
 * path, an empty body, and a body announced by a Content-Length mongrel2
 * could parse or by chunked transfer coding. A genuine upload-done has the
 * same path twice and an empty body; whether it follows a start on the same
 * connection is for the caller to check.
 *
 * @param headers The message headers.
 * @param body The message body.
 * @param store The configured store, or `undefined` when uploads are not configured.
 * @returns The marker.
 *
 * @example Usage
 * ```ts
 * import { readUploadMarker } from "./policy.ts";
 * const marker = readUploadMarker(
 *   { "x-mongrel2-upload-start": "/etc/passwd", "content-length": "2" },
 *   new TextEncoder().encode("hi"),
 *   { template: "/tmp/upload.XXXXXX" },
 * );
 * console.assert(marker.kind === "forged");
 * ```
 */
export function readUploadMarker(
  headers: Mongrel2Headers,
  body: Uint8Array,
  store: UploadStore | undefined,
): UploadMarker {
  const start = Object.hasOwn(headers, START) ? headers[START] : undefined;
  const done = Object.hasOwn(headers, DONE) ? headers[DONE] : undefined;
  if (start === undefined && done === undefined) return { kind: "none" };
  const forged = (reason: string): UploadMarker => ({ kind: "forged", reason });
  if (typeof start !== "string") {
    return forged(
      start === undefined
        ? "an upload-done header without an upload-start header"
        : "several upload-start headers",
    );
  }
  if (body.length !== 0) {
    return forged("upload headers on a request with an inline body");
  }
  const declared = firstHeader(headers, "content-length");
  // Exactly mongrel2's rule (request.c): a first Transfer-Encoding value of
  // "chunked", case and all, and no Content-Length. Anything looser lets a
  // client's "Chunked" request, which mongrel2 forwards inline with the
  // client's own upload headers, pass for a spooled upload.
  const chunked = firstHeader(headers, "transfer-encoding") === "chunked" &&
    declared === undefined;
  const length = declared !== undefined && /^\d{1,10}$/.test(declared)
    ? Number(declared)
    : undefined;
  const announced = length !== undefined && length > 0 &&
    length <= MAX_MONGREL2_CONTENT_LENGTH;
  if (!chunked && !announced) {
    const spooled = declared !== undefined && strtolLength(declared) > 0 &&
      store !== undefined && templatePattern(store.template).test(start);
    return {
      kind: "forged",
      reason: spooled
        ? `an upload-start whose Content-Length "${declared}" is not a plain number (mongrel2 read it as ${
          strtolLength(declared)
        })`
        : "an upload-start without a Content-Length mongrel2 could have spooled or chunked coding",
      // mongrel2 read a length from it all the same, and no body came with
      // the message: the file is mongrel2's own spool, to delete.
      ...(spooled ? { upload: start } : {}),
    };
  }
  if (store === undefined) return { kind: "unconfigured", path: start };
  if (!templatePattern(store.template).test(start)) {
    return {
      kind: "mismatched",
      path: start,
      reason:
        `upload path "${start}" does not match the temp store template "${store.template}"`,
    };
  }
  if (done !== undefined) {
    if (done === start) return { kind: "done", path: start, chunked, length };
    return {
      kind: "forged",
      reason: typeof done === "string"
        ? `upload-done path "${done}" differs from upload-start path "${start}"`
        : "several upload-done headers",
      upload: start,
    };
  }
  return { kind: "start", path: start, chunked, length };
}
