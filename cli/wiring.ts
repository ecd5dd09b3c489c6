/**
 * The options that wire m2fetch to mongrel2 (endpoints, upload store,
 * flow control): their checks, and what --mongrel2-config reads from
 * mongrel2's config database.
 *
 * @module
 */

import type { Logger } from "../runtime/log.ts";
import {
  type DiscoveredHandler,
  discoverHandler,
  DiscoveryError,
} from "../runtime/mongrel2/discover.ts";
import type { UploadOptions } from "../runtime/server.ts";
import { checkEndpoint } from "../runtime/transport/zmq.ts";
import { checkTemplate } from "../runtime/upload/policy.ts";
import { UsageError } from "./args.ts";
import type { OptionValues } from "./options.ts";

/**
 * Checks the --send-spec and --recv-spec endpoints.
 *
 * @param sendSpec One spec, or one per mongrel2 server, if given.
 * @param recvSpec One spec, or one per mongrel2 server, if given.
 * @throws {UsageError} On a spec ZeroMQ cannot connect to.
 *
 * @example Usage
 * ```ts
 * import { checkEndpoints } from "./wiring.ts";
 * checkEndpoints(["tcp://127.0.0.1:9997"], "ipc:///srv/m2/run/recv");
 * ```
 */
export function checkEndpoints(
  sendSpec: string | string[] | undefined,
  recvSpec: string | string[] | undefined,
): void {
  for (
    const [flag, specs] of [
      ["--send-spec", sendSpec],
      ["--recv-spec", recvSpec],
    ] as const
  ) {
    for (const spec of [specs ?? []].flat()) {
      try {
        checkEndpoint(flag, spec);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
    }
  }
}

/**
 * The upload store that --upload-temp-store and --mongrel2-chroot
 * describe, for the server.
 *
 * @param values The option values.
 * @returns The upload options, or `undefined` without --upload-temp-store.
 * @throws {UsageError} On --mongrel2-chroot alone, or a template that is
 * not mongrel2's.
 *
 * @example Usage
 * ```ts
 * import { uploadOptions } from "./wiring.ts";
 * const uploads = uploadOptions({
 *   "upload-temp-store": "/tmp/upload.XXXXXX",
 *   "upload-invoke": "start",
 * });
 * console.assert(uploads?.store.template === "/tmp/upload.XXXXXX");
 * ```
 */
export function uploadOptions(values: OptionValues): UploadOptions | undefined {
  const template = values["upload-temp-store"] as string | undefined;
  const chroot = values["mongrel2-chroot"] as string | undefined;
  if (template === undefined) {
    if (chroot !== undefined) {
      throw new UsageError(
        "Cannot use --mongrel2-chroot without --upload-temp-store: the chroot only locates upload files",
      );
    }
    return undefined;
  }
  try {
    return {
      store: { template: checkTemplate(template), chroot },
      invokeAt: values["upload-invoke"] as "start" | "done",
    };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/**
 * The options that wire m2fetch to a mongrel2: what --mongrel2-config
 * discovers, and what dev sets from the mongrel2 it starts.
 *
 * @example Usage
 * ```ts
 * import { WIRING } from "./wiring.ts";
 * console.assert(WIRING.includes("send-spec"));
 * ```
 */
export const WIRING: readonly string[] = [
  "send-spec",
  "recv-spec",
  "upload-temp-store",
  "mongrel2-chroot",
  "flow-control",
];

/**
 * --handler and --route pick a handler in --mongrel2-config's database.
 *
 * @param values The option values.
 * @throws {UsageError} On --handler or --route without --mongrel2-config.
 *
 * @example Usage
 * ```ts
 * import { checkHandlerChoice } from "./wiring.ts";
 * checkHandlerChoice({ "mongrel2-config": "config.sqlite", route: "localhost:/" });
 * ```
 */
export function checkHandlerChoice(values: OptionValues): void {
  if (values["mongrel2-config"] !== undefined) return;
  for (const name of ["handler", "route"]) {
    if (values[name] !== undefined) {
      throw new UsageError(
        `Cannot use --${name} without --mongrel2-config: it picks a handler in mongrel2's config database`,
      );
    }
  }
}

/**
 * With --mongrel2-config: reads the handler's specs, chroot and upload store
 * from mongrel2's config database. They only replace defaults: an option set
 * by a flag or in m2fetch.json wins, with a warning when it differs.
 *
 * @param values The option values, defaults included.
 * @param explicit The options set by a flag or m2fetch.json.
 * @param logger Where the handler read and the warnings go.
 * @returns The values, with the discovered ones in place of defaults.
 * @throws {UsageError} When the database or the handler cannot be used.
 *
 * @example Usage
 * ```ts
 * import { applyDiscovery } from "./wiring.ts";
 * import { createLogger } from "../runtime/log.ts";
 * // Without --mongrel2-config there is nothing to read.
 * const values = { workers: 0 };
 * console.assert(applyDiscovery(values, {}, createLogger()) === values);
 * ```
 */
export function applyDiscovery(
  values: OptionValues,
  explicit: OptionValues,
  logger: Logger,
): OptionValues {
  const database = values["mongrel2-config"] as string | undefined;
  checkHandlerChoice(values);
  if (database === undefined) return values;
  let found: DiscoveredHandler;
  try {
    found = discoverHandler(database, {
      handler: values.handler as string | undefined,
      route: values.route as string | undefined,
    });
  } catch (error) {
    if (error instanceof DiscoveryError) throw new UsageError(error.message);
    throw error;
  }
  const discovered: OptionValues = {
    "send-spec": [found.sendSpec],
    "recv-spec": [found.recvSpec],
    "flow-control": found.flowControl ? "on" : "off",
  };
  if (found.uploads !== undefined) {
    discovered["upload-temp-store"] = found.uploads.template;
    // The chroot locates the store's files whoever names the store: an
    // explicit --upload-temp-store is still a path inside it.
    if (found.uploads.chroot !== undefined) {
      discovered["mongrel2-chroot"] = found.uploads.chroot;
    }
  }
  const taken = Object.keys(discovered).filter((name) =>
    explicit[name] === undefined
  );
  for (const name of WIRING) {
    if (discovered[name] === undefined) continue;
    const given = [explicit[name] ?? []].flat();
    const found = [discovered[name]].flat();
    if (given.length > 0 && given.join(" ") !== found.join(" ")) {
      logger.warn(
        `Using --${name} ${
          given.join(" ")
        } (given by a flag or m2fetch.json) instead of ${
          found.join(" ")
        }, which ${database} gives for this handler: drop one of them if that is not meant (${
          name.endsWith("-spec")
            ? "a spec nothing binds leaves m2fetch waiting"
            : name === "flow-control"
            ? "replies sized for the wrong mode make mongrel2 close connections"
            : "upload files are then looked for in the wrong place"
        })`,
      );
    }
  }
  const routes = found.routes.map((route) => `${route.host}:${route.pattern}`);
  logger.info(
    `Read handler ${found.sendIdent} (route ${routes.join(" ")} of server ${
      found.routes[0].server
    }${
      found.server.root !== undefined ? `, chroot ${found.server.root}` : ""
    }) from ${found.database}${
      taken.length > 0
        ? `: ${
          taken.map((name) =>
            `--${name} ${[discovered[name]].flat().join(" ")}`
          )
            .join(", ")
        }`
        : "; every value it holds was given explicitly"
    }`,
  );
  for (const warning of found.warnings) logger.warn(warning);
  return {
    ...values,
    ...Object.fromEntries(taken.map((name) => [name, discovered[name]])),
  };
}
