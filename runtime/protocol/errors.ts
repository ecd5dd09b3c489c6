/**
 * The error raised for every malformed mongrel2 message.
 *
 * @module
 */

/**
 * A mongrel2 message (or a piece of one) could not be parsed. Encoders never
 * throw it: they reject values they cannot write with `TypeError` or
 * `RangeError`.
 *
 * It extends `SyntaxError` because it always describes bytes that do not
 * follow the wire grammar; `offset` tells where in the input the problem was
 * found, which is what a log line needs to make a capture reproducible.
 *
 * @example Usage
 * ```ts
 * import { ProtocolError } from "@m2fetch/m2fetch/testing";
 * const error = new ProtocolError("Cannot parse netstring: missing ':'", 4);
 * console.assert(error.offset === 4);
 * ```
 */
export class ProtocolError extends SyntaxError {
  /** Byte offset in the input where the problem was found. */
  readonly offset: number;

  /**
   * Creates a protocol error.
   *
   * @param message What failed and why.
   * @param offset Byte offset in the input.
   */
  constructor(message: string, offset: number) {
    super(message);
    this.name = "ProtocolError";
    this.offset = offset;
  }
}
