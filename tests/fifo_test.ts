import assert from "node:assert/strict";
import { Fifo } from "../runtime/fifo.ts";

Deno.test("Fifo hands items out in order across its compactions, and clear() empties it", () => {
  const queue = new Fifo<number>();
  const out: number[] = [];
  let next = 0;
  // Two in, one out: the taken slots pass 1,024 while items remain.
  while (next < 6000) {
    queue.push(next++);
    queue.push(next++);
    out.push(queue.shift());
  }
  while (queue.length > 0) out.push(queue.shift());
  assert.deepEqual(out, Array.from({ length: 6000 }, (_, i) => i));
  queue.push(1);
  queue.push(2);
  queue.clear();
  assert.equal(queue.length, 0);
  queue.push(3);
  assert.equal(queue.shift(), 3);
});
