/**
 * The transport interface between the server loop and mongrel2. The ZeroMQ
 * implementation is in `zmq.ts`; the testing helpers use an in-memory one.
 *
 * @module
 */

/** Moves whole messages between m2fetch and mongrel2. */
export interface Transport {
  /** Messages from mongrel2, one ZeroMQ frame each, until the transport closes. */
  messages(): AsyncIterable<Uint8Array>;
  /**
   * Queues a reply for mongrel2. Never throws and never blocks: the server
   * bounds what it queues through mongrel2's own flow control.
   */
  send(message: Uint8Array): void;
  /** Stops receiving new messages; already-received ones are still yielded. */
  stopReceiving(): Promise<void>;
  /** Waits for queued replies to be handed to ZeroMQ, then closes. */
  close(): Promise<void>;
  /**
   * Registers the listener for a mongrel2 that went away (stopped or
   * restarted): its clients' connections are gone, and a new mongrel2
   * numbers its connections from 1 again. `idents` are the reply prefixes
   * (`recv_ident`) it had subscribed; `""` stands for every sender.
   */
  onPeerLeft?(listener: (idents: readonly string[]) => void): void;
}
