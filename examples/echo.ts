/**
 * Form and JSON echo:
 *
 * - `GET` (any path): a small HTML form that posts back here.
 * - `POST` with `application/x-www-form-urlencoded` or `multipart/form-data`:
 *   the fields as JSON. A field sent once is a string, a repeated field an
 *   array; an uploaded file becomes `{ "name", "type", "size" }`.
 * - `POST` with `application/json`: the same JSON back (400 when it does not
 *   parse).
 * - `POST` with `application/octet-stream`: `{ "bytes": N }`, counted with a
 *   BYOB reader, which reads into one buffer of the handler's (the reader
 *   for large uploads).
 * - Other content types: 415; other methods: 405.
 *
 * Runs unchanged under `deno serve examples/echo.ts` and behind mongrel2
 * (`deno run -A cli.ts dev examples/echo.ts`, at 127.0.0.1:6767):
 *
 * ```sh
 * curl -d 'name=Ada&lang=ts&lang=c' http://127.0.0.1:6767/
 * curl -H 'content-type: application/json' -d '{"a":[1,2]}' http://127.0.0.1:6767/
 * ```
 *
 * @module
 */

/** A field value as echoed: text, or a description of an uploaded file. */
export type EchoedValue = string | { name: string; type: string; size: number };

const FORM_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>m2fetch echo</title></head>
<body>
<h1>Echo</h1>
<form method="post" enctype="multipart/form-data">
<label>Name <input name="name"></label>
<label>File <input type="file" name="file"></label>
<button>Send</button>
</form>
</body>
</html>
`;

/**
 * Turns form data into a plain object: one value stays a value, repeated
 * fields become arrays, files are described.
 *
 * @param form The parsed form.
 * @returns The fields.
 *
 * @example Usage
 * ```ts
 * import { formToObject } from "./echo.ts";
 * const form = new FormData();
 * form.append("a", "1");
 * form.append("a", "2");
 * console.assert(JSON.stringify(formToObject(form)) === '{"a":["1","2"]}');
 * ```
 */
export function formToObject(
  form: FormData,
): Record<string, EchoedValue | EchoedValue[]> {
  const fields: Record<string, EchoedValue | EchoedValue[]> = {};
  for (const name of new Set(form.keys())) {
    const values = form.getAll(name).map((value): EchoedValue =>
      typeof value === "string"
        ? value
        : { name: value.name, type: value.type, size: value.size }
    );
    fields[name] = values.length === 1 ? values[0] : values;
  }
  return fields;
}

function mediaType(request: Request): string {
  return (request.headers.get("content-type") ?? "").split(";")[0].trim()
    .toLowerCase();
}

/** Counts a body's bytes, reading them into one reused buffer. */
async function countBytes(body: ReadableStream<Uint8Array>): Promise<number> {
  const reader = body.getReader({ mode: "byob" });
  let buffer = new Uint8Array(64 * 1024);
  let bytes = 0;
  while (true) {
    const { value, done } = await reader.read(buffer);
    if (done) return bytes;
    bytes += value.length;
    buffer = new Uint8Array(value.buffer);
  }
}

async function echoPost(request: Request): Promise<Response> {
  const type = mediaType(request);
  if (type === "application/octet-stream") {
    return Response.json({
      bytes: request.body === null ? 0 : await countBytes(request.body),
    });
  }
  if (type === "application/json") {
    let value: unknown;
    try {
      value = await request.json();
    } catch {
      return Response.json({ error: "The body is not valid JSON" }, {
        status: 400,
      });
    }
    return Response.json(value);
  }
  if (
    type === "application/x-www-form-urlencoded" ||
    type === "multipart/form-data"
  ) {
    let form: FormData;
    try {
      form = await request.formData();
    } catch {
      return Response.json({ error: "The body is not a valid form" }, {
        status: 400,
      });
    }
    return Response.json(formToObject(form));
  }
  return Response.json(
    { error: `Cannot echo ${type || "a body without a content-type"}` },
    { status: 415 },
  );
}

export default {
  fetch(request: Request): Response | Promise<Response> {
    switch (request.method) {
      case "GET":
      case "HEAD":
        return new Response(FORM_PAGE, {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      case "POST":
        return echoPost(request);
      default:
        return new Response("Method Not Allowed\n", {
          status: 405,
          headers: { allow: "GET, HEAD, POST" },
        });
    }
  },
} satisfies Deno.ServeDefaultExport;
