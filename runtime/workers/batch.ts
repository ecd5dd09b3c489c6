/**
 * Gathers the messages one thread posts another during a turn of its event
 * loop into one `postMessage`. Each post costs a serialisation, a wake-up
 * of the other thread and a message event there, whatever it carries: under
 * load, the requests one batch from mongrel2 sends a worker, and the
 * responses a worker makes for them, share one.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/**
 * Most messages held before they are sent without waiting for the turn to
 * end: a thread working through a long backlog of events still delivers.
 */
export const MAX_BATCH_MESSAGES = 64;

/**
 * Queues messages and posts them as one array once the callbacks that are
 * ready have run (or at {@linkcode MAX_BATCH_MESSAGES}). Their order is
 * kept, within and across batches.
 *
 * @example Usage
 * ```ts
 * import { MessageBatcher } from "./batch.ts";
 * const posted: string[][] = [];
 * const batcher = new MessageBatcher<string>((messages) => posted.push(messages));
 * batcher.add("a");
 * batcher.add("b");
 * batcher.flush();
 * console.assert(posted.length === 1 && posted[0].join() === "a,b");
 * ```
 */
export class MessageBatcher<T> {
  readonly #post: (messages: T[], transfer: Transferable[]) => void;
  readonly #onFailure: (message: T, error: unknown) => void;
  #messages: T[] = [];
  /** What each queued message transfers (`undefined` for nothing). */
  #transfers: (readonly Transferable[] | undefined)[] = [];
  #scheduled = false;

  /**
   * Creates a batcher.
   *
   * @param post Sends one batch (`worker.postMessage` or `self.postMessage`).
   * @param onFailure Told about a message that cannot be posted (one that
   * cannot be cloned or transferred); the others of its batch still go.
   * By default the error is thrown from the flush.
   */
  constructor(
    post: (messages: T[], transfer: Transferable[]) => void,
    onFailure: (message: T, error: unknown) => void = (_, error) => {
      throw error;
    },
  ) {
    this.#post = post;
    this.#onFailure = onFailure;
  }

  /**
   * Queues a message for the next batch.
   *
   * @param message The message.
   * @param transfer What it transfers.
   */
  add(message: T, transfer: readonly Transferable[] = []): void {
    this.#messages.push(message);
    this.#transfers.push(transfer.length > 0 ? transfer : undefined);
    if (this.#messages.length >= MAX_BATCH_MESSAGES) {
      this.flush();
    } else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#scheduledFlush);
    }
  }

  /** Posts the queued messages now (before the thread ends, say). */
  flush(): void {
    if (this.#messages.length === 0) return;
    const messages = this.#messages;
    const transfers = this.#transfers;
    this.#messages = [];
    this.#transfers = [];
    const transfer: Transferable[] = [];
    for (const items of transfers) if (items) transfer.push(...items);
    try {
      this.#post(messages, transfer);
    } catch {
      // Nothing of a batch that fails to serialise has crossed: each goes
      // on its own, so one bad message does not take the others down (one
      // whose buffers the failed post detached fails again).
      for (const [index, message] of messages.entries()) {
        try {
          this.#post([message], [...transfers[index] ?? []]);
        } catch (error) {
          this.#onFailure(message, error);
        }
      }
    }
  }

  readonly #scheduledFlush = () => {
    this.#scheduled = false;
    this.flush();
  };
}
