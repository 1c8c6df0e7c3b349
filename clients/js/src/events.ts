/** What the client tells its listeners, and what it hands over. */

import type { DeliveryMode } from './messages.js';
import type { PushError } from './errors.js';
import type { TransportName } from './transport.js';

/** What the client is doing. */
export type ClientState = 'connecting' | 'connected' | 'closed';

/** A message handed to you. */
export interface ReceivedMessage {
  /** Unique and increasing; ACKs name it. */
  readonly id: number;
  readonly app: string;
  readonly mode: DeliveryMode;
  /** The content (for notify with `notify: 'id'`, the id as text). */
  readonly body: Uint8Array;
  /** `body` as UTF-8 text. */
  readonly text: string;
  /** `body` parsed as JSON. */
  json<T = unknown>(): T;
  /** ACKs it (with `ack: 'manual'`; with auto-ACK it was done for you). */
  ack(): void;
}

/** `connecting`: a connection is being made (the first, or again after one ended). */
export interface ConnectingEvent {
  /** Why: `connect` the first time, else the code of the `disconnected` event before. */
  code: string;
  reason: string;
  /** Failed attempts in a row so far. */
  attempt: number;
}

/** `connected`: authenticated on a room. */
export interface ConnectedEvent {
  transport: TransportName;
  room: string;
  url: string;
  session: string | null;
  heartbeatSecs: number;
}

/** Why a connection ended. */
export type DisconnectCode =
  | 'connect_failed'
  | 'transport_closed'
  | 'heartbeat_timeout'
  | 'reconnect'
  | 'network_changed'
  | 'dispatch_failed'
  | 'token_failed'
  | 'auth_refused'
  | 'kicked'
  | 'closed';

/** `disconnected`: a connection ended (or one could not be made). */
export interface DisconnectedEvent {
  code: DisconnectCode;
  reason: string;
  /** The WebSocket close status (or HTTP status of a refused SSE stream), when known. */
  closeCode?: number;
  /** `false` for `kicked`, `auth_refused` and `closed`: the client has stopped. */
  reconnect: boolean;
  /** When it tries again, when `reconnect`. */
  retryInMs?: number;
}

/** The client's events. */
export interface ClientEvents {
  connecting: ConnectingEvent;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  message: ReceivedMessage;
  /** A message seen before, not handed over again (re-ACKed when it had been ACKed). */
  duplicate: { id: number; app: string };
  /** The room accepted a new token from `getToken`. */
  refreshed: { expiresAt: number | null };
  /** Something went wrong that does not end the client (a room ERROR, a failed pull or refresh). */
  error: { error: PushError };
}

/** The room's answer to `upstream`. */
export interface UpstreamReply {
  ok: boolean;
  reason: string | null;
}

