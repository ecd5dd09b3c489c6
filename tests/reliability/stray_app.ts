/** A handler that leaks an unhandled rejection on /leak. */
export default {
  fetch(request: Request): Response {
    if (new URL(request.url).pathname === "/leak") {
      Promise.reject(new Error("stray rejection from handler code"));
    }
    return new Response("still here\n");
  },
} satisfies Deno.ServeDefaultExport;
