/**
 * What `cli.ts mongrel2-conf` prints and what `cli.ts init` writes: a
 * mongrel2.conf that matches m2fetch's options (rendered by
 * `runtime/mongrel2/config.ts`), and a ready-to-run app directory.
 *
 * @module
 */

import {
  renderMongrel2Config,
  resolveMongrel2Config,
} from "../runtime/mongrel2/config.ts";
import { CONFIG_FILE_NAME, writeConfigFile } from "./config_file.ts";
import { SERVE_OPTIONS } from "./options.ts";

/**
 * The mongrel2 side of one m2fetch: where mongrel2 runs and what it binds.
 *
 * @example
 * ```ts
 * import type { HandlerConfOptions } from "./scaffold.ts";
 * const options: HandlerConfOptions = {
 *   dir: "/srv/site",
 *   sendSpec: "tcp://127.0.0.1:9997",
 *   recvSpec: "tcp://127.0.0.1:9996",
 * };
 * console.assert(options.dir === "/srv/site");
 * ```
 */
export interface HandlerConfOptions {
  /**
   * The absolute directory mongrel2 runs in: its `run/`, `logs/` and `tmp/`
   * (pid file and control socket, logs, uploads) are there. With `chroot`,
   * the chroot.
   */
  dir: string;
  /** The send_spec, as m2fetch connects to it (tcp, or an absolute ipc path). */
  sendSpec: string;
  /** The recv_spec, as m2fetch connects to it. */
  recvSpec: string;
  /** The HTTP port. Default 6767. */
  port?: number;
  /** The address mongrel2 listens on. Default `127.0.0.1`. */
  bindAddress?: string;
  /** The route to the handler. Default `/`. */
  route?: string;
  /** The handler's send_ident (and recv_ident). Default: a fresh UUID. */
  sendIdent?: string;
  /** The server uuid. Default: a fresh UUID. */
  serverUuid?: string;
  /**
   * `upload.temp_store` as mongrel2 sees it. Default: `<dir>/tmp/upload.XXXXXX`
   * (`/tmp/upload.XXXXXX` with `chroot`).
   */
  uploadTempStore?: string;
  /** Render `chroot="./"`, so that mongrel2 started as root in `dir` chroots there. */
  chroot?: boolean;
  /** Extra comment lines for the top of the file (without `#`). */
  notes?: string[];
}

/**
 * A rendered mongrel2.conf and the m2fetch options that match it.
 *
 * @example
 * ```ts
 * import { renderHandlerConf } from "./scaffold.ts";
 * const { m2fetch } = renderHandlerConf({
 *   dir: "/srv/site",
 *   sendSpec: "tcp://127.0.0.1:9997",
 *   recvSpec: "tcp://127.0.0.1:9996",
 * });
 * console.assert(m2fetch["upload-temp-store"] === "/srv/site/tmp/upload.XXXXXX");
 * ```
 */
export interface HandlerConf {
  /** The mongrel2.conf text. */
  text: string;
  /** The server uuid (what `mongrel2 config.sqlite UUID` starts). */
  serverUuid: string;
  /** The handler's send_ident. */
  sendIdent: string;
  /**
   * m2fetch options matching the config (specs, upload store, flow
   * control, chroot), by flag name, as `m2fetch.json` holds them.
   */
  m2fetch: Record<string, string | string[]>;
}

/**
 * Renders a mongrel2.conf for one m2fetch: a Handler with the tnetstring
 * protocol and `recv_ident = send_ident`, a Server named `main` with one
 * host (`localhost`, also the default host) routing to it, and the settings
 * m2fetch wants (`download.flow_control = 1`, `upload.temp_store` with mode
 * 0644, `limits.content_length`, `server.daemonize = 0`).
 *
 * @param options Where mongrel2 runs and what it binds.
 * @returns The text and the matching m2fetch options.
 * @throws {TypeError | RangeError} On a value mongrel2.conf cannot hold.
 *
 * @example
 * ```ts
 * import { renderHandlerConf } from "./scaffold.ts";
 * const { text } = renderHandlerConf({
 *   dir: "/srv/site",
 *   sendSpec: "tcp://127.0.0.1:9997",
 *   recvSpec: "tcp://127.0.0.1:9996",
 *   sendIdent: "site-a",
 * });
 * console.assert(text.includes(`recv_ident="site-a"`));
 * ```
 */
export function renderHandlerConf(options: HandlerConfOptions): HandlerConf {
  const chroot = options.chroot ?? false;
  const settings: Record<string, string | number> = {
    "download.flow_control": 1,
    "upload.temp_store_mode": "0644",
    "limits.content_length": 20480,
  };
  if (options.uploadTempStore !== undefined) {
    settings["upload.temp_store"] = options.uploadTempStore;
  }
  const config = resolveMongrel2Config({
    dir: options.dir,
    port: options.port ?? 6767,
    bindAddress: options.bindAddress ?? "127.0.0.1",
    chroot,
    serverUuid: options.serverUuid,
    handlers: [{
      route: options.route ?? "/",
      protocol: "tnetstring",
      name: "m2fetch",
      sendIdent: options.sendIdent,
      sendSpec: options.sendSpec,
      recvSpec: options.recvSpec,
    }],
    settings,
    header: [
      "mongrel2.conf for m2fetch (written by cli.ts mongrel2-conf / init).",
      ...(options.notes ?? []),
    ],
  });
  const [handler] = config.handlers;
  const template = String(config.settings["upload.temp_store"]);
  const m2fetch: Record<string, string | string[]> = {
    "send-spec": [handler.sendSpec],
    "recv-spec": [handler.recvSpec],
    "upload-temp-store": template,
    // The config turns download.flow_control on; saying so lets m2fetch
    // count credits on connections it first sees after a restart.
    "flow-control": "on",
    ...(chroot ? { "mongrel2-chroot": config.dir } : {}),
  };
  return {
    text: renderMongrel2Config(config),
    serverUuid: config.serverUuid,
    sendIdent: handler.sendIdent,
    m2fetch,
  };
}

/**
 * The files `init` writes, relative to the app directory.
 *
 * @example Usage
 * ```ts
 * import { INIT_FILES } from "./scaffold.ts";
 * console.assert(INIT_FILES.includes("mongrel2.conf"));
 * ```
 */
export const INIT_FILES = [
  "app.ts",
  "app_test.ts",
  "deno.json",
  CONFIG_FILE_NAME,
  "mongrel2.conf",
  "README.md",
] as const;

/**
 * Options for {@linkcode initAppDir}.
 *
 * @example
 * ```ts
 * import type { InitOptions } from "./scaffold.ts";
 * const options: InitOptions = { port: 8080 };
 * console.assert(options.port === 8080);
 * ```
 */
export interface InitOptions {
  /** mongrel2's HTTP port. Default 6767. */
  port?: number;
  /** The address mongrel2 listens on. Default `127.0.0.1`. */
  bindAddress?: string;
  /** The send_spec. Default `ipc://<dir>/run/m2fetch_send`. */
  sendSpec?: string;
  /** The recv_spec. Default `ipc://<dir>/run/m2fetch_recv`. */
  recvSpec?: string;
  /**
   * How the README runs m2fetch, e.g. `deno run -A /path/to/cli.ts`.
   * Default: `deno run -A` and this checkout's `cli.ts`.
   */
  command?: string;
}

/**
 * What {@linkcode initAppDir} made.
 *
 * @example
 * ```ts
 * import type { InitResult } from "./scaffold.ts";
 * const result: InitResult = { dir: "/srv/app", files: ["app.ts"], serverUuid: "u" };
 * console.assert(result.files.length === 1);
 * ```
 */
export interface InitResult {
  /** The app directory (absolute, symlinks resolved). */
  dir: string;
  /** The files written, relative to `dir`. */
  files: string[];
  /** The server uuid in mongrel2.conf. */
  serverUuid: string;
}

/**
 * `init` found files it will not overwrite, or a file where the directory
 * should be.
 *
 * @example Usage
 * ```ts
 * import { initAppDir, InitError } from "./scaffold.ts";
 * const file = await Deno.makeTempFile();
 * const error = await initAppDir(file).catch((error) => error);
 * console.assert(error instanceof InitError);
 * await Deno.remove(file);
 * ```
 */
export class InitError extends Error {
  /**
   * Creates the error.
   *
   * @param message What failed and why.
   */
  constructor(message: string) {
    super(message);
    this.name = "InitError";
  }
}

/**
 * Creates a ready-to-run app directory: `app.ts` (a hello handler),
 * `m2fetch.json` (the app and its endpoints), `mongrel2.conf` (a matching
 * mongrel2, flow control on, uploads in `tmp/`), `README.md` (how to run
 * both), and mongrel2's `run/`, `logs/`, `tmp/`. The directory may exist
 * (empty or not), but none of those files may: nothing is overwritten.
 *
 * mongrel2.conf uses absolute paths and no chroot, so it runs the same as
 * root or not, started from any directory.
 *
 * @param path The directory to create or fill.
 * @param options Port, endpoints, the command in the README.
 * @returns The directory and the files written.
 * @throws {InitError} When a file exists already, `path` is not a
 * directory, or it cannot be created or written.
 *
 * @example
 * ```ts
 * import { initAppDir } from "./scaffold.ts";
 * const { dir, files } = await initAppDir(await Deno.makeTempDir());
 * console.assert(files.includes("app.ts") && files.includes("mongrel2.conf"));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function initAppDir(
  path: string,
  options: InitOptions = {},
): Promise<InitResult> {
  const cannotCreate = (error: Error): never => {
    throw new InitError(
      `Cannot initialise ${path}: cannot create the directory (${error.message})`,
    );
  };
  const info = await Deno.stat(path).catch((error) => {
    if (error instanceof Deno.errors.NotFound) return null;
    return cannotCreate(error);
  });
  if (info !== null && !info.isDirectory) {
    throw new InitError(
      `Cannot initialise ${path}: it exists and is not a directory`,
    );
  }
  const dir = await Deno.mkdir(path, { recursive: true })
    .then(() => Deno.realPath(path))
    .catch(cannotCreate);
  const existing: string[] = [];
  for (const file of INIT_FILES) {
    if (await Deno.lstat(`${dir}/${file}`).catch(() => null) !== null) {
      existing.push(file);
    }
  }
  if (existing.length > 0) {
    throw new InitError(
      `Cannot initialise ${path}: ${existing.join(", ")} already exist${
        existing.length === 1 ? "s" : ""
      } and init never overwrites files (move ${
        existing.length === 1 ? "it" : "them"
      } away or pick another directory)`,
    );
  }
  const port = options.port ?? 6767;
  const command = options.command ??
    `deno run -A ${new URL("../cli.ts", import.meta.url).pathname}`;
  const conf = renderHandlerConf({
    dir,
    port,
    bindAddress: options.bindAddress,
    sendSpec: options.sendSpec ?? `ipc://${dir}/run/m2fetch_send`,
    recvSpec: options.recvSpec ?? `ipc://${dir}/run/m2fetch_recv`,
    notes: [
      "",
      "Load it into config.sqlite and start it from this directory:",
      "  m2sh load -config mongrel2.conf -db config.sqlite",
      "  m2sh start -db config.sqlite -name main",
      "m2fetch.json holds the matching m2fetch options; see README.md.",
    ],
  });
  for (const sub of ["run", "logs", "tmp"]) {
    await Deno.mkdir(`${dir}/${sub}`, { recursive: true }).catch((error) => {
      throw new InitError(
        `Cannot initialise ${path}: cannot write in it (${error.message})`,
      );
    });
  }
  const files: Record<string, string> = {
    "app.ts": APP_TEMPLATE,
    "app_test.ts": APP_TEST_TEMPLATE,
    "deno.json": denoJson(command, devSiteFlags(options)),
    "mongrel2.conf": conf.text,
    "README.md": readme(dir, port, options.bindAddress, command, conf),
  };
  const written: string[] = [];
  for (const [file, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${file}`, text, { createNew: true })
      .catch((error) => {
        throw new InitError(
          `Cannot initialise ${path}: cannot write ${file} (${error.message})`,
        );
      });
    written.push(file);
  }
  await writeConfigFile(
    `${dir}/${CONFIG_FILE_NAME}`,
    { app: "app.ts", ...conf.m2fetch },
    SERVE_OPTIONS,
  );
  written.splice(3, 0, CONFIG_FILE_NAME);
  return { dir, files: written, serverUuid: conf.serverUuid };
}

const APP_TEMPLATE = `/**
 * The app's handler: the same module \`deno serve app.ts\` runs. m2fetch
 * serves it behind mongrel2 (see README.md).
 */

export default {
  fetch(request: Request): Response {
    const { pathname } = new URL(request.url);
    return new Response(\`Hello from m2fetch at \${pathname}\\n\`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
} satisfies Deno.ServeDefaultExport;
`;

const APP_TEST_TEMPLATE = `import assert from "node:assert/strict";
import { buildRequestMessage, runHandler } from "@m2fetch/m2fetch/testing";
import app from "./app.ts";

// runHandler runs the real m2fetch server on the message mongrel2 would
// send, with no sockets and no mongrel2.
Deno.test("app greets at the requested path", async () => {
  const run = await runHandler(app, await buildRequestMessage("/there"));
  assert.equal(run.response.status, 200);
  assert.equal(await run.response.text(), "Hello from m2fetch at /there\\n");
});
`;

/**
 * The `--port` and `--host` init was given, for the dev task's private
 * mongrel2: the app then answers at the same address under `deno task dev`
 * as behind its own mongrel2.conf.
 */
function devSiteFlags(options: InitOptions): string {
  let flags = "";
  if (options.port !== undefined) flags += ` --port ${options.port}`;
  if (options.bindAddress !== undefined) {
    flags += ` --host ${options.bindAddress}`;
  }
  return flags;
}

/**
 * The app's `deno.json`: m2fetch's modules under the names its docs use,
 * and tasks for the commands in README.md.
 */
function denoJson(command: string, devFlags: string): string {
  const module = (path: string) => new URL(`../${path}`, import.meta.url).href;
  return JSON.stringify(
    {
      imports: {
        "@m2fetch/m2fetch": module("mod.ts"),
        "@m2fetch/m2fetch/testing": module("testing.ts"),
      },
      tasks: {
        start: `${command} --app-path .`,
        dev: `${command} dev${devFlags} --watch app.ts`,
        // Upload tests write the temp file the server reads and deletes,
        // and runHandler reads a handler given by path (docs/testing.md).
        test: "deno test --allow-read --allow-write",
      },
    },
    null,
    2,
  ) + "\n";
}

function readme(
  dir: string,
  port: number,
  bindAddress: string | undefined,
  command: string,
  conf: HandlerConf,
): string {
  // Where a client reaches it: the loopback for a wildcard address, and an
  // IPv6 address in brackets, as URLs write it.
  const address = bindAddress === undefined || bindAddress === "0.0.0.0"
    ? "127.0.0.1"
    : bindAddress === "::"
    ? "::1"
    : bindAddress;
  const host = address.includes(":") ? `[${address}]` : address;
  const name = dir.slice(dir.lastIndexOf("/") + 1);
  // Written as deno fmt writes Markdown, so that the app's own fmt check
  // passes: what varies (the command, the address) sits in code blocks,
  // which fmt does not rewrap.
  return `# ${name}

An app served by m2fetch behind mongrel2:

- \`app.ts\`: the handler, \`export default { fetch }\`, the same module
  \`deno serve app.ts\` runs.
- \`app_test.ts\`: its test. \`deno test\` runs the handler through m2fetch's server
  on the message mongrel2 would send, with no mongrel2.
- \`deno.json\`: \`@m2fetch/m2fetch\` and \`@m2fetch/m2fetch/testing\` mapped to this
  m2fetch's \`mod.ts\` and \`testing.ts\`, and tasks: \`start\`, \`dev\`, \`test\`.
- \`m2fetch.json\`: m2fetch's options: the app, mongrel2's send/recv specs, the
  upload temp store.
- \`mongrel2.conf\`: a mongrel2 server that routes \`/\` to m2fetch (tnetstring,
  flow control on, uploads in \`tmp/\`).
- \`run/\`, \`logs/\`, \`tmp/\`: mongrel2's sockets and pid file, its logs, and upload
  temp files.

## Run it

From this directory, load the config and start mongrel2 (it stays in the
foreground, so use a second terminal or \`&\`):

\`\`\`sh
m2sh load -config mongrel2.conf -db config.sqlite
m2sh start -db config.sqlite -name main     # or: mongrel2 config.sqlite ${conf.serverUuid}
\`\`\`

Then m2fetch, which reads \`m2fetch.json\` here, and a request:

\`\`\`sh
${command} --app-path .
curl http://${host}:${port}/     # Hello from m2fetch at /
\`\`\`

\`m2sh stop -db config.sqlite -name main\` stops mongrel2, and Ctrl-C (or SIGTERM)
stops m2fetch after the responses in flight.

m2fetch can also take the endpoints straight from mongrel2's database:

\`\`\`sh
${command} --mongrel2-config config.sqlite app.ts
\`\`\`

## Develop

\`deno task dev\` starts a private mongrel2 on the same address and reloads
\`app.ts\` and what it imports on every save, without restarting mongrel2.
\`deno task test\` runs \`app_test.ts\` with read and write access (upload tests
write the temp file the server reads and deletes); m2fetch's docs/testing.md
shows uploads, disconnects and WebSockets in tests.

## Notes

- mongrel2.conf uses absolute paths under this directory and no chroot, so
  moving the directory means running \`init\` again (or editing both files).
- The Handler's \`recv_ident\` equals its \`send_ident\`: this mongrel2 only takes
  replies to its own requests, so several mongrel2 servers can share one m2fetch
  (repeat \`send-spec\`/\`recv-spec\` in m2fetch.json).
`;
}
