/**
 * The push messages clients and rooms exchange (proto/push.proto), in one typed form that
 * both codecs read and write: the protobuf frames (`frame.ts`, `proto.ts`) and the JSON
 * form (`json.ts`). `op` names the message, as in the JSON form.
 */

/** The client's network type; the room picks the heartbeat interval from it. */
export type Net = '2g' | '3g' | '4g' | '5g' | 'wifi';

/** How a message is delivered. */
export type DeliveryMode = 'at_least_once' | 'at_most_once' | 'notify';

/** Every network type, in the order of their protobuf numbers (1–5). */
export const NETS: readonly Net[] = ['2g', '3g', '4g', '5g', 'wifi'];

/** Every delivery mode, in the order of their protobuf numbers (0–2). */
export const MODES: readonly DeliveryMode[] = ['at_least_once', 'at_most_once', 'notify'];

/** The `op` numbers of the frame header. */
export const OP = {
  auth: 1,
  auth_reply: 2,
  heartbeat: 3,
  heartbeat_reply: 4,
  message: 5,
  ack: 6,
  subscribe: 7,
  unsubscribe: 8,
  upstream: 9,
  upstream_reply: 10,
  kick: 11,
  reconnect: 12,
  error: 13,
  batch: 14,
  refresh: 15,
} as const;

/** A message's name, as `op` says it in the JSON form. */
export type OpName = Exclude<keyof typeof OP, 'batch'>;

/** AUTH: who the client is (the first message on a connection). */
export interface Auth {
  op: 'auth';
  uid: string;
  device: string;
  net: Net;
  token: string;
  apps: string[];
}

/** AUTH_REPLY: the outcome of AUTH, or of REFRESH (with its seq). */
export interface AuthReply {
  op: 'auth_reply';
  ok: boolean;
  reason: string | null;
  heartbeat_secs: number;
  session: string | null;
}

/** HEARTBEAT: client keep-alive. */
export interface Heartbeat {
  op: 'heartbeat';
}

/** HEARTBEAT_REPLY: the room's answer to a heartbeat. */
export interface HeartbeatReply {
  op: 'heartbeat_reply';
}

/** MESSAGE: a pushed message. `body` is bytes on the wire; for `notify`, the id as text. */
export interface Deliver {
  op: 'message';
  id: number;
  app: string;
  mode: DeliveryMode;
  body: Uint8Array;
}

/** ACK: messages received. */
export interface Ack {
  op: 'ack';
  ids: number[];
}

/** SUBSCRIBE / UNSUBSCRIBE: apps to add to or remove from the connection. */
export interface Subscribe {
  op: 'subscribe' | 'unsubscribe';
  apps: string[];
}

/** UPSTREAM: data from the client for the app's business server. */
export interface Upstream {
  op: 'upstream';
  app: string;
  type: string;
  body: Uint8Array;
}

/** UPSTREAM_REPLY: whether the upstream data was accepted. */
export interface UpstreamReply {
  op: 'upstream_reply';
  ok: boolean;
  reason: string | null;
}

/** KICK: the room closes the session. */
export interface Kick {
  op: 'kick';
  reason: string;
}

/** RECONNECT: the room drains; reconnect (maybe elsewhere) after `after_ms`. */
export interface Reconnect {
  op: 'reconnect';
  reason: string;
  after_ms: number;
}

/** ERROR: a request could not be served (HTTP-like codes). */
export interface ErrorMessage {
  op: 'error';
  code: number;
  reason: string;
}

/** REFRESH: a new token for the connection, answered by an AUTH_REPLY with its seq. */
export interface Refresh {
  op: 'refresh';
  token: string;
}

/** Any push message. */
export type PushMessage =
  | Auth
  | AuthReply
  | Heartbeat
  | HeartbeatReply
  | Deliver
  | Ack
  | Subscribe
  | Upstream
  | UpstreamReply
  | Kick
  | Reconnect
  | ErrorMessage
  | Refresh;

/** A message with the `seq` of its frame (chosen by a request's sender, echoed in replies). */
export interface Sequenced {
  seq: number;
  message: PushMessage;
}

/** A wire form's fault: the bytes or the text do not make a push message. */
export class DecodeError extends Error {
  override name = 'DecodeError';
}

const encoder = new TextEncoder();

/** UTF-8 bytes of `text`. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

const lenient = new TextDecoder();

/** `bytes` as text (invalid UTF-8 replaced, never thrown). */
export function text(bytes: Uint8Array): string {
  return lenient.decode(bytes);
}
