/**
 * An unchanged Hono app: `export default app` is all `deno serve` and
 * m2fetch need (a Hono app has a `fetch(request, env)` method).
 *
 * Routes:
 *
 * - `GET /` → `Hello Hono!` (text)
 * - `GET /greet?name=Ada` → `{ "message": "Hello, Ada!" }`
 * - `POST /items` with a JSON body `{ "name": "…", … }` → 201 with the item
 *   and an `id`; 400 when the body is not a JSON object with a string `name`
 * - `GET /items/:id` → `{ "id": "…" }`
 * - `GET /ws` → a WebSocket that echoes each message, through Hono's own
 *   `upgradeWebSocket` for Deno (`Deno.upgradeWebSocket()`, which m2fetch
 *   routes to mongrel2's sockets)
 * - anything else → Hono's 404 (`404 Not Found`)
 *
 * Every response carries `x-served-by: hono`, set by a middleware after the
 * route ran (the 101 of a WebSocket too).
 *
 * ```sh
 * deno serve examples/hono_app.ts            # http://localhost:8000
 * deno run -A cli.ts dev examples/hono_app.ts # http://127.0.0.1:6767
 * curl 'http://127.0.0.1:6767/greet?name=Ada'
 * ```
 *
 * @module
 */

import { Hono } from "hono";
import { upgradeWebSocket } from "hono/deno";

const app = new Hono();

app.use(async (c, next) => {
  await next();
  c.header("x-served-by", "hono");
});

app.get("/", (c) => c.text("Hello Hono!"));

app.get("/greet", (c) => {
  const name = c.req.query("name") ?? "world";
  return c.json({ message: `Hello, ${name}!` });
});

let nextId = 1;

app.post("/items", async (c) => {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch {
    return c.json({ error: "expected a JSON body" }, 400);
  }
  if (
    typeof body !== "object" || body === null || Array.isArray(body) ||
    typeof (body as { name?: unknown }).name !== "string"
  ) {
    return c.json({ error: "expected an object with a string name" }, 400);
  }
  return c.json({ id: nextId++, ...body }, 201);
});

app.get("/items/:id", (c) => c.json({ id: c.req.param("id") }));

app.get(
  "/ws",
  upgradeWebSocket(() => ({
    onMessage(event, ws) {
      ws.send(`echo ${event.data}`);
    },
  })),
);

export default app;
