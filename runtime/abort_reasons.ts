/**
 * Abort reasons shared by the main thread and the handler workers. A leaf
 * module: a worker imports it without loading the connection state.
 *
 * @module
 */

/**
 * `request.signal.reason` once the response is out: the reason `deno serve`
 * gives. One instance for every request: a DOMException records a stack
 * when made, and this one says nothing a stack would add.
 *
 * @example Usage
 * ```ts
 * import { REQUEST_FINISHED } from "./abort_reasons.ts";
 * console.assert(REQUEST_FINISHED.name === "AbortError");
 * ```
 */
export const REQUEST_FINISHED: DOMException = new DOMException(
  "The request has been cancelled.",
  "AbortError",
);

/**
 * `request.signal.reason` for a request cut short (its client left, its
 * response body failed): the same words as {@linkcode REQUEST_FINISHED},
 * which are `deno serve`'s, in an instance of its own each time, so that it
 * is not taken for a finished request (the worker pool passes it on to the
 * worker, and drops `REQUEST_FINISHED`).
 *
 * @returns A fresh AbortError.
 *
 * @example Usage
 * ```ts
 * import { REQUEST_FINISHED, requestCancelled } from "./abort_reasons.ts";
 * const reason = requestCancelled();
 * console.assert(reason !== REQUEST_FINISHED && reason.message === REQUEST_FINISHED.message);
 * ```
 */
export function requestCancelled(): DOMException {
  return new DOMException(REQUEST_FINISHED.message, "AbortError");
}
