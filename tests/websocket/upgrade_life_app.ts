/**
 * For tests/websocket/upgrade_life_test.ts: `/ws` upgrades and records,
 * in order, when `info.completed` settled, when the socket opened and
 * closed, and whether `request.signal` had aborted by then; `/events`
 * answers with the record (JSON).
 */
const events: string[] = [];

export default {
  fetch(request: Request, info: Deno.ServeHandlerInfo): Response {
    if (new URL(request.url).pathname === "/events") {
      return Response.json(events);
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    (info as { completed?: Promise<void> }).completed?.then(
      () => events.push("completed"),
      () => events.push("interrupted"),
    );
    socket.onopen = () => events.push("open");
    socket.onmessage = (event) => socket.send(event.data);
    socket.onclose = () => {
      events.push(`close, signal aborted: ${request.signal.aborted}`);
      setTimeout(
        () => events.push(`later, signal aborted: ${request.signal.aborted}`),
        200,
      );
    };
    return response;
  },
} satisfies Deno.ServeDefaultExport;
