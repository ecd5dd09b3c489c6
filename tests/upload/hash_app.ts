/**
 * A handler module for the upload tests that run m2fetch as a process:
 * answers with its body's length and SHA-256, read chunk by chunk.
 *
 * @module
 */

import { createHash } from "node:crypto";

export default {
  async fetch(request: Request): Promise<Response> {
    const hash = createHash("sha256");
    let bytes = 0;
    for await (const chunk of request.body ?? []) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    return Response.json({ bytes, sha256: hash.digest("hex") });
  },
} satisfies Deno.ServeDefaultExport;
