/**
 * Watches a handler module's directory and calls back after edits, for
 * `cli.ts dev --watch`.
 *
 * @module
 */

import { posix } from "node:path";

/**
 * Options for {@linkcode watchModule}.
 *
 * @example
 * ```ts
 * import type { WatchOptions } from "./watch.ts";
 * const options: WatchOptions = { debounceMs: 50 };
 * console.assert(options.debounceMs === 50);
 * ```
 */
export interface WatchOptions {
  /** Wait this long after the last event before calling back (ms). Default 100. */
  debounceMs?: number;
  /** Called when the watcher fails (the directory vanished, say). */
  onError?: (error: unknown) => void;
}

/**
 * A running watcher.
 *
 * @example
 * ```ts
 * import { watchModule } from "./watch.ts";
 * const watcher = watchModule("app.ts", () => console.log("changed"));
 * watcher.close();
 * ```
 */
export interface ModuleWatcher {
  /** The module (absolute, normalised). */
  readonly module: string;
  /** The directory watched (absolute). */
  readonly directory: string;
  /** Stops watching. */
  close(): void;
}

/** Files whose edits can change a module graph. */
const SOURCE = /\.(?:[cm]?[jt]sx?|json|jsonc|wasm)$/;
/** Directories never worth a reload (dependencies, VCS, m2fetch state). */
const IGNORED = /(?:^|\/)(?:node_modules|\.git|\.state|run|logs|tmp)\//;

/**
 * Watches the directory of `module` (recursively) and calls `onChange` with
 * the changed source files once edits settle. Calls never overlap: edits
 * made while `onChange` runs lead to one more call after it.
 *
 * @param module The handler module's path.
 * @param onChange What to do after edits.
 * @param options Debounce and error reporting.
 * @returns The watcher.
 *
 * @example
 * ```ts
 * import { watchModule } from "./watch.ts";
 * const watcher = watchModule("examples/hello.ts", async (paths) => {
 *   console.log("reload for", paths);
 * });
 * // Once reloads are no longer wanted:
 * watcher.close();
 * ```
 */
export function watchModule(
  module: string,
  onChange: (paths: string[]) => void | Promise<void>,
  options: WatchOptions = {},
): ModuleWatcher {
  const path = posix.resolve(
    module.startsWith("file:") ? new URL(module).pathname : module,
  );
  const directory = path.slice(0, path.lastIndexOf("/")) || "/";
  const debounceMs = options.debounceMs ?? 100;
  const onError = options.onError ?? (() => {});
  const watcher = Deno.watchFs(directory, { recursive: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending = new Set<string>();
  let running = false;
  let closed = false;

  const fire = async () => {
    if (running || closed || pending.size === 0) return;
    running = true;
    const paths = [...pending];
    pending = new Set();
    try {
      await onChange(paths);
    } catch (error) {
      onError(error);
    } finally {
      running = false;
    }
    if (pending.size > 0) schedule();
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(fire, debounceMs);
  };

  (async () => {
    try {
      for await (const event of watcher) {
        if (event.kind === "access" || event.kind === "other") continue;
        const relevant = event.paths.map((changed) => posix.normalize(changed))
          .filter((changed) =>
            SOURCE.test(changed) &&
            !IGNORED.test(changed.slice(directory.length))
          );
        if (relevant.length === 0) continue;
        for (const changed of relevant) pending.add(changed);
        schedule();
      }
    } catch (error) {
      if (!closed) onError(error);
    }
  })();

  return {
    module: path,
    directory,
    close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // Already closed.
      }
    },
  };
}
