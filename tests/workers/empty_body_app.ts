/**
 * For tests/workers/empty_body_test.ts: answers with the request's method
 * and whether it has a body, and how many bytes.
 */
export default {
  async fetch(request: Request): Promise<Response> {
    const body = request.body === null
      ? "no body"
      : `${(await request.bytes()).length} bytes`;
    return new Response(`${request.method} ${body}`);
  },
};
