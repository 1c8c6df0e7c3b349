/** The client's settings. */

import type { Room } from './dispatch.js';
import type { Net } from './messages.js';
import type { FetchLike } from './sse.js';
import type { TransportName } from './transport.js';
import type { Format, WebSocketConstructor } from './websocket.js';

/** How the client is set up. Only `center`, `uid` and a token (or `getToken`) are needed. */
export interface ConnectOptions {
  /** The center's base URL (dispatcher and notify pull), e.g. `http://127.0.0.1:7800`. */
  center: string;
  /** The user. */
  uid: string;
  /** The token the business backend issued for `uid`. */
  token?: string;
  /**
   * Where new tokens come from (usually your backend). Called for the first token when
   * `token` is not given, before the token expires (the new one goes to the room in a
   * REFRESH, the connection stays), before reconnecting with an expired one, and once
   * when the room refuses one.
   */
  getToken?: () => string | Promise<string>;
  /** This device (default `web`); a user may be online on several. */
  device?: string;
  /** Apps to receive messages for (default `['demo']`). */
  apps?: string[];
  /** The network type (default `wifi`); it picks the rooms and the heartbeat. */
  net?: Net;
  /** `auto` (default): WebSocket, and SSE after a WebSocket failure; or only one of them. */
  transport?: 'auto' | TransportName;
  /** WebSocket messages as protobuf frames (`binary`, default) or JSON text. SSE is JSON. */
  format?: Format;
  /** `auto` (default): ACK each stored message as it is handed to you; `manual`: call `ack`. */
  ack?: 'auto' | 'manual';
  /** `pull` (default): fetch a notify message's body before handing it over; `id`: hand over the id. */
  notify?: 'pull' | 'id';
  /** First reconnect delay (default 200 ms); doubles per failure, with full jitter. */
  backoffMinMs?: number;
  /** Longest reconnect delay (default 30 s). */
  backoffMaxMs?: number;
  /** Connecting and authenticating together must take no longer (default 10 s). */
  connectTimeoutMs?: number;
  /** How long `upstream` waits for the room's answer (default 10 s). */
  requestTimeoutMs?: number;
  /** ACKs are gathered this long and sent together (default 20 ms; 0: the next tick). */
  ackDelayMs?: number;
  /** Message ids remembered to drop duplicates (default 4096). */
  dedupWindow?: number;
  /** Largest frame accepted from the room (default 1 MiB). */
  maxFrameBytes?: number;
  /** After WebSocket failed and SSE worked, stay on SSE this long before trying WebSocket again (default 5 min). */
  sseStickyMs?: number;
  /** The WebSocket to use (default `globalThis.WebSocket`; on Node 20 pass one, or run with `--experimental-websocket`). */
  WebSocket?: WebSocketConstructor;
  /** The `fetch` to use (default `globalThis.fetch`). */
  fetch?: FetchLike;
  /** The WebSocket URL for a room (default `room.ws`); e.g. to put the page's host in. */
  webSocketUrl?: (room: Room) => string;
  /** The SSE endpoint for a room (default: `room.ws`'s host and port, http(s), `/sse`). */
  sseUrl?: (room: Room) => string;
}

