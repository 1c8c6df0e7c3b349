/**
 * `@longlink/push-client`: the longlink-push client for browsers and Node ≥ 20.
 *
 * ```ts
 * import { connect } from '@longlink/push-client';
 * const client = connect({ center: 'http://127.0.0.1:7800', uid: 'u1', token });
 * client.on('message', (m) => console.log(m.id, m.text));
 * ```
 */

export { connect, PushClient } from './client.js';
export type {
  ClientEvents,
  ClientState,
  ConnectedEvent,
  ConnectingEvent,
  DisconnectCode,
  DisconnectedEvent,
  ReceivedMessage,
  UpstreamReply,
} from './events.js';
export type { ConnectOptions } from './options.js';
export { PushError, type PushErrorCode } from './errors.js';
export type { DispatchAnswer, Room } from './dispatch.js';
export type { Net, DeliveryMode, PushMessage, Sequenced } from './messages.js';
export { DecodeError, OP } from './messages.js';
export { encodeFrame, decodeFrame, VERSION } from './frame.js';
export { encodeJson, decodeJson } from './json.js';
export { encodeBody, decodeBody } from './proto.js';
export { Backoff } from './backoff.js';
export { Dedup } from './dedup.js';
export { SseParser, type SseEvent } from './sse_parser.js';
export { tokenExpiry, refreshInSecs, tokenStale } from './token.js';
export type { TransportName } from './transport.js';
export type { WebSocketConstructor, WebSocketLike, Format } from './websocket.js';
export type { FetchLike } from './sse.js';
