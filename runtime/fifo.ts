/**
 * A first-in first-out queue whose `shift()` takes constant time, for
 * queues that may grow long: an array's `shift()` moves every item left.
 *
 * @module
 */

/**
 * A first-in first-out queue: items are taken from a head index, and the
 * taken slots are dropped once they are half the array (amortised O(1)).
 *
 * @example Usage
 * ```ts
 * import { Fifo } from "./fifo.ts";
 * const queue = new Fifo<string>();
 * queue.push("a");
 * queue.push("b");
 * console.assert(queue.shift() === "a" && queue.length === 1);
 * ```
 */
export class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** How many items are queued. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /**
   * Adds an item at the end.
   *
   * @param item The item.
   */
  push(item: T): void {
    this.#items.push(item);
  }

  /**
   * Takes the oldest item; the queue must not be empty.
   *
   * @returns The item.
   */
  shift(): T {
    const item = this.#items[this.#head] as T;
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.clear();
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Drops every item. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}
