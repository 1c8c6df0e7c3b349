/**
 * A connection to a room, whatever carries it. The client opens one with the AUTH
 * message; the transport sends it (as the first WebSocket message, or as the body of
 * `POST /sse`) and hands up every message that comes back, the AUTH_REPLY first. It ends
 * once, with `onClose`.
 */

import type { Auth, PushMessage, Sequenced } from './messages.js';

/** Which transport a connection is on. */
export type TransportName = 'websocket' | 'sse';

/** How a connection ended. */
export interface TransportClose {
  /** What happened, for people. */
  reason: string;
  /** The WebSocket close status, or the HTTP status of a refused `POST /sse`. */
  code?: number;
  /** Whether the room had authenticated the connection (an AUTH_REPLY came). */
  authenticated: boolean;
  /** The transport is not served there (`POST /sse` answered 404 or 426). */
  unsupported?: boolean;
}

/** What a transport tells the client. */
export interface TransportHandlers {
  /** Messages in the order they came (a binary BATCH frame gives several). */
  onMessages(messages: Sequenced[]): void;
  /** A message the client could not read, or a send that failed but keeps the connection. */
  onError(error: Error): void;
  /** The end (called once; nothing arrives after it). */
  onClose(close: TransportClose): void;
}

/** An open (or opening) connection. */
export interface Transport {
  readonly name: TransportName;
  /** Where it is connected (the WebSocket URL, or the SSE endpoint). */
  readonly url: string;
  /** Sends one message with `seq`; messages before AUTH_REPLY are queued by the caller. */
  send(seq: number, message: PushMessage): void;
  /** Closes it (the WebSocket with `code`); `onClose` follows. */
  close(code?: number, reason?: string): void;
}

/** Opens a transport: the AUTH goes out as soon as it can. */
export type TransportOpener = (auth: { seq: number; message: Auth }, handlers: TransportHandlers) => Transport;
