/**
 * The JSON form of push messages (WebSocket text frames, and every SSE event and POST):
 * one object, `"op"` naming the message and `"seq"` beside its fields. A `body` is a
 * string when its bytes are UTF-8, else `{"base64": "..."}` (standard, padded). Unknown
 * fields are ignored; missing optional ones take their defaults.
 */

import {
  DecodeError,
  MODES,
  NETS,
  OP,
  type DeliveryMode,
  type Net,
  type PushMessage,
  type Sequenced,
} from './messages.js';

const strict = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Standard base64 with padding. */
export function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Bytes of standard base64 (padded or not). */
export function fromBase64(text: string): Uint8Array {
  let binary: string;
  try {
    binary = atob(text);
  } catch {
    throw new DecodeError('body: bad base64');
  }
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** A body as JSON: the text when it is UTF-8, else `{"base64": …}`. */
function bodyJson(bytes: Uint8Array): string | { base64: string } {
  try {
    return strict.decode(bytes);
  } catch {
    return { base64: toBase64(bytes) };
  }
}

/** The JSON text of `message` with `seq`. */
export function encodeJson(seq: number, message: PushMessage): string {
  const out: Record<string, unknown> = { seq, ...message };
  if ('body' in message) out['body'] = bodyJson(message.body);
  return JSON.stringify(out);
}

type Json = Record<string, unknown>;

function field<T>(o: Json, name: string, type: 'string' | 'number' | 'boolean', fallback?: T): T {
  const v = o[name];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new DecodeError(`missing field ${name}`);
  }
  if (typeof v !== type) throw new DecodeError(`${name}: expected a ${type}`);
  if (type === 'number' && (!Number.isSafeInteger(v) || (v as number) < 0)) {
    throw new DecodeError(`${name}: expected an unsigned integer`);
  }
  return v as T;
}

function optionalString(o: Json, name: string): string | null {
  const v = o[name];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new DecodeError(`${name}: expected a string`);
  return v;
}

function strings(o: Json, name: string, required: boolean): string[] {
  const v = o[name];
  if (v === undefined || v === null) {
    if (required) throw new DecodeError(`missing field ${name}`);
    return [];
  }
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) {
    throw new DecodeError(`${name}: expected an array of strings`);
  }
  return v as string[];
}

function body(o: Json): Uint8Array {
  const v = o['body'];
  if (typeof v === 'string') return encoder.encode(v);
  if (v && typeof v === 'object' && typeof (v as Json)['base64'] === 'string') {
    return fromBase64((v as Json)['base64'] as string);
  }
  throw new DecodeError('body: expected a string or {"base64": …}');
}

/** One JSON object as a push message. */
export function fromJsonObject(o: unknown): Sequenced {
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new DecodeError('expected a JSON object');
  const j = o as Json;
  const seq = field<number>(j, 'seq', 'number', 0);
  const op = j['op'];
  if (typeof op !== 'string' || !(op in OP) || op === 'batch') throw new DecodeError(`unknown op ${String(op)}`);
  let message: PushMessage;
  switch (op as Exclude<keyof typeof OP, 'batch'>) {
    case 'auth': {
      const net = field<string>(j, 'net', 'string');
      if (!NETS.includes(net as Net)) throw new DecodeError(`net: unknown network type ${net}`);
      message = {
        op: 'auth',
        uid: field(j, 'uid', 'string'),
        device: field(j, 'device', 'string'),
        net: net as Net,
        token: field(j, 'token', 'string'),
        apps: strings(j, 'apps', false),
      };
      break;
    }
    case 'auth_reply':
      message = {
        op: 'auth_reply',
        ok: field(j, 'ok', 'boolean'),
        reason: optionalString(j, 'reason'),
        heartbeat_secs: field(j, 'heartbeat_secs', 'number', 0),
        session: optionalString(j, 'session'),
      };
      break;
    case 'heartbeat':
      message = { op: 'heartbeat' };
      break;
    case 'heartbeat_reply':
      message = { op: 'heartbeat_reply' };
      break;
    case 'message': {
      const mode = field<string>(j, 'mode', 'string', 'at_least_once');
      if (!MODES.includes(mode as DeliveryMode)) throw new DecodeError(`mode: unknown delivery mode ${mode}`);
      message = {
        op: 'message',
        id: field(j, 'id', 'number'),
        app: field(j, 'app', 'string'),
        mode: mode as DeliveryMode,
        body: body(j),
      };
      break;
    }
    case 'ack': {
      const ids = j['ids'];
      if (!Array.isArray(ids) || !ids.every((i) => Number.isSafeInteger(i) && i >= 0)) {
        throw new DecodeError('ids: expected an array of unsigned integers');
      }
      message = { op: 'ack', ids: ids as number[] };
      break;
    }
    case 'subscribe':
    case 'unsubscribe':
      message = { op: op as 'subscribe' | 'unsubscribe', apps: strings(j, 'apps', true) };
      break;
    case 'upstream':
      message = { op: 'upstream', app: field(j, 'app', 'string'), type: field(j, 'type', 'string'), body: body(j) };
      break;
    case 'upstream_reply':
      message = { op: 'upstream_reply', ok: field(j, 'ok', 'boolean'), reason: optionalString(j, 'reason') };
      break;
    case 'kick':
      message = { op: 'kick', reason: field(j, 'reason', 'string') };
      break;
    case 'reconnect':
      message = { op: 'reconnect', reason: field(j, 'reason', 'string'), after_ms: field(j, 'after_ms', 'number') };
      break;
    case 'error':
      message = { op: 'error', code: field(j, 'code', 'number'), reason: field(j, 'reason', 'string') };
      break;
    case 'refresh':
      message = { op: 'refresh', token: field(j, 'token', 'string') };
      break;
  }
  return { seq, message };
}

/** The messages in one JSON text: an object (or, defensively, an array of them). */
export function decodeJson(text: string): Sequenced[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new DecodeError('not JSON');
  }
  return Array.isArray(value) ? value.map(fromJsonObject) : [fromJsonObject(value)];
}
