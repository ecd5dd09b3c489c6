/**
 * Replies to mongrel2: `UUID SP LEN:IDS, SP BODY`. An empty BODY closes the
 * connections; an `X ` before the ids makes BODY an extended (`ctl`) reply.
 *
 * @module
 */

import { concatBytes } from "./bytes.ts";
import { encodeTNetstring } from "./tnetstring.ts";

/** The most connection ids mongrel2 accepts in one reply (`limits.handler_targets`). */
export const MAX_REPLY_IDS = 128;

/** The `ctl` commands mongrel2 1.12 understands; each acts by its presence. */
export interface CtlCommand {
  /** Refresh the idle reaper's timer for the connections. */
  "keep-alive"?: true;
  /** Grant upload credits (bytes) for `upload.stream`. */
  credits?: number;
  /** Close the connections at once, without a disconnect notice. */
  cancel?: true;
}

const encoder = new TextEncoder();
const SENDER = /^[A-Za-z0-9-]+$/;
const CONNECTION_ID = /^\d{1,10}$/;

function targets(
  sender: string,
  ids: readonly (string | number)[],
  extended: boolean,
): Uint8Array {
  if (!SENDER.test(sender)) {
    throw new TypeError(
      `Cannot encode reply: sender "${sender}" may only hold letters, digits and '-'`,
    );
  }
  if (ids.length === 0 || ids.length > MAX_REPLY_IDS) {
    throw new RangeError(
      `Cannot encode reply: ${ids.length} connection ids given, mongrel2 takes 1 to ${MAX_REPLY_IDS}`,
    );
  }
  for (const id of ids) {
    if (!CONNECTION_ID.test(String(id))) {
      throw new TypeError(
        `Cannot encode reply: connection id "${id}" is not a decimal number`,
      );
    }
  }
  const list = (extended ? "X " : "") + ids.join(" ");
  return encoder.encode(`${sender} ${list.length}:${list}, `);
}

/**
 * Returns the bytes that start every reply to `ids` from `sender`. Reusing
 * it per connection saves re-validating and re-encoding on each write.
 *
 * @param sender The `send_ident` the request came with.
 * @param ids One to 128 connection ids.
 * @returns The prefix, up to and including the space before the body.
 * @throws {TypeError} On a sender or id mongrel2 would reject.
 * @throws {RangeError} On zero or more than 128 ids.
 *
 * @example Usage
 * ```ts
 * import { encodeReplyPrefix } from "./reply.ts";
 * const prefix = new TextDecoder().decode(encodeReplyPrefix("abc", ["7"]));
 * console.assert(prefix === "abc 1:7, ");
 * ```
 */
export function encodeReplyPrefix(
  sender: string,
  ids: readonly (string | number)[],
): Uint8Array {
  return targets(sender, ids, false);
}

/**
 * Encodes a reply that writes `body` to each connection in `ids`.
 *
 * @param sender The `send_ident` the request came with.
 * @param ids One to 128 connection ids.
 * @param body Raw bytes for the client (an empty body closes the connections).
 * @returns The message.
 *
 * @example Usage
 * ```ts
 * import { encodeReply } from "./reply.ts";
 * const message = encodeReply("abc", ["6", "7"], new TextEncoder().encode("hi"));
 * console.assert(new TextDecoder().decode(message) === "abc 3:6 7, hi");
 * ```
 */
export function encodeReply(
  sender: string,
  ids: readonly (string | number)[],
  body: Uint8Array,
): Uint8Array {
  return concatBytes([encodeReplyPrefix(sender, ids), body]);
}

/**
 * Encodes replies for any number of ids, split into messages of at most
 * `maxIds` ids each (mongrel2 rejects a whole message over its limit).
 *
 * @param sender The `send_ident`.
 * @param ids Any number of connection ids.
 * @param body The bytes to write to each.
 * @param maxIds Ids per message, 1 to 128 (default 128).
 * @returns One message per group of ids.
 *
 * @example Usage
 * ```ts
 * import { encodeReplies } from "./reply.ts";
 * const ids = Array.from({ length: 300 }, (_, i) => i + 1);
 * console.assert(encodeReplies("abc", ids, new Uint8Array()).length === 3);
 * ```
 */
export function encodeReplies(
  sender: string,
  ids: readonly (string | number)[],
  body: Uint8Array,
  maxIds: number = MAX_REPLY_IDS,
): Uint8Array[] {
  if (!Number.isInteger(maxIds) || maxIds < 1 || maxIds > MAX_REPLY_IDS) {
    throw new RangeError(
      `Cannot encode replies: maxIds ${maxIds} is not between 1 and ${MAX_REPLY_IDS}`,
    );
  }
  const messages: Uint8Array[] = [];
  for (let i = 0; i < ids.length; i += maxIds) {
    messages.push(encodeReply(sender, ids.slice(i, i + maxIds), body));
  }
  return messages;
}

/**
 * Encodes the 0-length reply that closes connections (after flushing what
 * was queued before it). For an upload in progress it denies the upload.
 *
 * @param sender The `send_ident`.
 * @param ids One to 128 connection ids.
 * @returns The message.
 *
 * @example Usage
 * ```ts
 * import { encodeClose } from "./reply.ts";
 * console.assert(new TextDecoder().decode(encodeClose("abc", ["7"])) === "abc 1:7, ");
 * ```
 */
export function encodeClose(
  sender: string,
  ids: readonly (string | number)[],
): Uint8Array {
  // A close is a reply with an empty body: the prefix alone.
  return encodeReplyPrefix(sender, ids);
}

/**
 * Encodes an extended `ctl` reply (`X` ids, body `["ctl", {...}]`).
 *
 * @param sender The `send_ident`.
 * @param ids One to 128 connection ids.
 * @param command What to do: keep-alive, credits or cancel.
 * @returns The message.
 * @throws {RangeError} When credits is not a positive integer or nothing is asked.
 *
 * @example Usage
 * ```ts
 * import { encodeCtl } from "./reply.ts";
 * const text = new TextDecoder().decode(encodeCtl("abc", [7], { "keep-alive": true }));
 * console.assert(text === "abc 3:X 7, 31:3:ctl,21:10:keep-alive,4:true!}]");
 * ```
 */
export function encodeCtl(
  sender: string,
  ids: readonly (string | number)[],
  command: CtlCommand,
): Uint8Array {
  const args: Record<string, true | number> = {};
  if (command["keep-alive"]) args["keep-alive"] = true;
  if (command.credits !== undefined) {
    if (!Number.isSafeInteger(command.credits) || command.credits <= 0) {
      throw new RangeError(
        `Cannot encode ctl reply: credits ${command.credits} is not a positive integer`,
      );
    }
    args.credits = command.credits;
  }
  if (command.cancel) args.cancel = true;
  if (Object.keys(args).length === 0) {
    throw new RangeError("Cannot encode ctl reply: no command given");
  }
  return concatBytes([
    targets(sender, ids, true),
    encodeTNetstring(["ctl", args]),
  ]);
}
