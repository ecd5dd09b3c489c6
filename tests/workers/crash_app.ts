/**
 * For tests/workers/descriptors_test.ts and pool_body_test.ts: `/crash` answers, then throws an
 * uncaught error in its worker; anything else is answered `ok`.
 */
export default {
  fetch(request: Request): Response {
    if (new URL(request.url).pathname === "/crash") {
      setTimeout(() => {
        throw new Error("boom");
      }, 50);
      return new Response("crashing\n");
    }
    return new Response("ok\n");
  },
};
