/**
 * The protobuf bodies of push frames (proto/push.proto), by hand: varints,
 * length-delimited fields, packed and unpacked repeated uint64. Writers emit fields in
 * number order and leave out proto3 defaults (as prost does), so the bytes match the Rust
 * codec's. Readers skip unknown fields and refuse a known field with the wrong wire type.
 * uint64 ids are JS numbers: they stay below 2^53, and one above is refused.
 */

import {
  DecodeError,
  MODES,
  NETS,
  type OpName,
  type PushMessage,
} from './messages.js';

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

const strict = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Appends protobuf fields to a growing buffer. */
export class Writer {
  private buf = new Uint8Array(64);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.len));
    this.buf = grown;
  }

  /** An unsigned varint (`value` a non-negative safe integer). */
  varint(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`${value} is not an unsigned integer below 2^53`);
    }
    this.reserve(10);
    while (value >= 0x80) {
      this.buf[this.len++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buf[this.len++] = value;
    return this;
  }

  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  /** A varint field; a zero is the default and is left out unless `always`. */
  uint(field: number, value: number, always = false): this {
    if (value !== 0 || always) {
      this.tag(field, VARINT);
      this.varint(value);
    }
    return this;
  }

  /** A bool field (false left out). */
  bool(field: number, value: boolean): this {
    return this.uint(field, value ? 1 : 0);
  }

  /** A bytes field; empty is left out unless `always` (an `optional` field that is set). */
  bytes(field: number, value: Uint8Array, always = false): this {
    if (value.length > 0 || always) {
      this.tag(field, LEN);
      this.varint(value.length);
      this.reserve(value.length);
      this.buf.set(value, this.len);
      this.len += value.length;
    }
    return this;
  }

  /** A string field (empty left out unless `always`). */
  string(field: number, value: string, always = false): this {
    return this.bytes(field, encoder.encode(value), always);
  }

  /** An `optional string`: written when not null, even empty. */
  optionalString(field: number, value: string | null): this {
    return value === null ? this : this.string(field, value, true);
  }

  /** A `repeated string`: one field per element. */
  strings(field: number, values: readonly string[]): this {
    for (const v of values) this.string(field, v, true);
    return this;
  }

  /** A packed `repeated uint64` (nothing when empty). */
  packed(field: number, values: readonly number[]): this {
    if (values.length === 0) return this;
    const inner = new Writer();
    for (const v of values) inner.varint(v);
    return this.bytes(field, inner.finish());
  }

  /** The bytes written. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Reads protobuf fields from `bytes`. */
export class Reader {
  pos = 0;
  constructor(private readonly bytes: Uint8Array) {}

  /** Whether fields remain. */
  more(): boolean {
    return this.pos < this.bytes.length;
  }

  /** An unsigned varint; refused past 10 bytes or above 2^53. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.bytes.length) throw new DecodeError('truncated varint');
      const b = this.bytes[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(value)) throw new DecodeError('varint above 2^53');
        return value;
      }
      scale *= 0x80;
    }
    throw new DecodeError('varint longer than 10 bytes');
  }

  /** The next field's number and wire type. */
  tag(): [field: number, wire: number] {
    const tag = this.varint();
    const field = Math.floor(tag / 8);
    if (field === 0) throw new DecodeError('field number 0');
    return [field, tag % 8];
  }

  /** A length-delimited field's bytes. */
  delimited(): Uint8Array {
    const n = this.varint();
    if (n > this.bytes.length - this.pos) throw new DecodeError('length past the end of the body');
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Skips a field of an unknown number. */
  skip(wire: number): void {
    switch (wire) {
      case VARINT:
        this.varintSkip();
        return;
      case I64:
        this.advance(8);
        return;
      case LEN:
        this.delimited();
        return;
      case I32:
        this.advance(4);
        return;
      default:
        throw new DecodeError(`unsupported wire type ${wire}`);
    }
  }

  private varintSkip(): void {
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.bytes.length) throw new DecodeError('truncated varint');
      if (this.bytes[this.pos++]! < 0x80) return;
    }
    throw new DecodeError('varint longer than 10 bytes');
  }

  private advance(n: number): void {
    if (n > this.bytes.length - this.pos) throw new DecodeError('fixed field past the end of the body');
    this.pos += n;
  }
}

function expect(wire: number, want: number, what: string): void {
  if (wire !== want) throw new DecodeError(`${what}: wire type ${wire}, expected ${want}`);
}

function str(bytes: Uint8Array, what: string): string {
  try {
    return strict.decode(bytes);
  } catch {
    throw new DecodeError(`${what}: not UTF-8`);
  }
}

/** The protobuf body of `message`. */
export function encodeBody(message: PushMessage): Uint8Array {
  const w = new Writer();
  switch (message.op) {
    case 'auth': {
      const net = NETS.indexOf(message.net);
      if (net < 0) throw new RangeError(`unknown network type ${message.net}`);
      return w
        .string(1, message.uid)
        .string(2, message.device)
        .uint(3, net + 1)
        .string(4, message.token)
        .strings(5, message.apps)
        .finish();
    }
    case 'auth_reply':
      return w
        .bool(1, message.ok)
        .optionalString(2, message.reason)
        .uint(3, message.heartbeat_secs)
        .optionalString(4, message.session)
        .finish();
    case 'heartbeat':
    case 'heartbeat_reply':
      return w.finish();
    case 'message': {
      const mode = MODES.indexOf(message.mode);
      if (mode < 0) throw new RangeError(`unknown delivery mode ${message.mode}`);
      return w.uint(1, message.id).string(2, message.app).uint(3, mode).bytes(4, message.body).finish();
    }
    case 'ack':
      return w.packed(1, message.ids).finish();
    case 'subscribe':
    case 'unsubscribe':
      return w.strings(1, message.apps).finish();
    case 'upstream':
      return w.string(1, message.app).string(2, message.type).bytes(3, message.body).finish();
    case 'upstream_reply':
      return w.bool(1, message.ok).optionalString(2, message.reason).finish();
    case 'kick':
      return w.string(1, message.reason).finish();
    case 'reconnect':
      return w.string(1, message.reason).uint(2, message.after_ms).finish();
    case 'error':
      return w.uint(1, message.code).string(2, message.reason).finish();
    case 'refresh':
      return w.string(1, message.token).finish();
  }
}

/**
 * Reads the body of a frame whose op is `op`. Each decoder names its fields; a field of
 * another number is skipped, one of a known number with another wire type is refused.
 */
export function decodeBody(op: OpName, body: Uint8Array): PushMessage {
  const r = new Reader(body);
  // Each `case` reads every field into `f` (by number) with its wire type checked.
  const each = (read: (field: number, wire: number) => boolean): void => {
    while (r.more()) {
      const [field, wire] = r.tag();
      if (!read(field, wire)) r.skip(wire);
    }
  };
  const varint = (wire: number, what: string): number => {
    expect(wire, VARINT, what);
    return r.varint();
  };
  const u32 = (wire: number, what: string): number => {
    const v = varint(wire, what);
    if (v > 0xffffffff) throw new DecodeError(`${what}: above 2^32`);
    return v;
  };
  const bool = (wire: number, what: string): boolean => varint(wire, what) !== 0;
  const bytes = (wire: number, what: string): Uint8Array => {
    expect(wire, LEN, what);
    return r.delimited().slice();
  };
  const string = (wire: number, what: string): string => {
    expect(wire, LEN, what);
    return str(r.delimited(), what);
  };
  switch (op) {
    case 'auth': {
      const m = { op, uid: '', device: '', net: 'wifi' as const, token: '', apps: [] as string[] };
      let net = 0;
      each((field, wire) => {
        if (field === 1) m.uid = string(wire, 'auth.uid');
        else if (field === 2) m.device = string(wire, 'auth.device');
        else if (field === 3) net = varint(wire, 'auth.net');
        else if (field === 4) m.token = string(wire, 'auth.token');
        else if (field === 5) m.apps.push(string(wire, 'auth.apps'));
        else return false;
        return true;
      });
      const name = NETS[net - 1];
      if (name === undefined) throw new DecodeError(`auth.net: unknown network type ${net}`);
      return { ...m, net: name };
    }
    case 'auth_reply': {
      const m = { op, ok: false, reason: null as string | null, heartbeat_secs: 0, session: null as string | null };
      each((field, wire) => {
        if (field === 1) m.ok = bool(wire, 'auth_reply.ok');
        else if (field === 2) m.reason = string(wire, 'auth_reply.reason');
        else if (field === 3) m.heartbeat_secs = u32(wire, 'auth_reply.heartbeat_secs');
        else if (field === 4) m.session = string(wire, 'auth_reply.session');
        else return false;
        return true;
      });
      return m;
    }
    case 'heartbeat':
    case 'heartbeat_reply':
      each(() => false);
      return { op };
    case 'message': {
      let mode = 0;
      const m = { op, id: 0, app: '', mode: 'at_least_once' as const, body: new Uint8Array(0) as Uint8Array };
      each((field, wire) => {
        if (field === 1) m.id = varint(wire, 'message.id');
        else if (field === 2) m.app = string(wire, 'message.app');
        else if (field === 3) mode = varint(wire, 'message.mode');
        else if (field === 4) m.body = bytes(wire, 'message.body');
        else return false;
        return true;
      });
      const name = MODES[mode];
      if (name === undefined) throw new DecodeError(`message.mode: unknown delivery mode ${mode}`);
      return { ...m, mode: name };
    }
    case 'ack': {
      const ids: number[] = [];
      each((field, wire) => {
        if (field !== 1) return false;
        if (wire === VARINT) {
          ids.push(r.varint()); // unpacked
        } else if (wire === LEN) {
          const packed = new Reader(r.delimited());
          while (packed.more()) ids.push(packed.varint());
        } else {
          throw new DecodeError(`ack.ids: wire type ${wire}, expected 0 or 2`);
        }
        return true;
      });
      return { op, ids };
    }
    case 'subscribe':
    case 'unsubscribe': {
      const apps: string[] = [];
      each((field, wire) => {
        if (field !== 1) return false;
        apps.push(string(wire, `${op}.apps`));
        return true;
      });
      return { op, apps };
    }
    case 'upstream': {
      const m = { op, app: '', type: '', body: new Uint8Array(0) as Uint8Array };
      each((field, wire) => {
        if (field === 1) m.app = string(wire, 'upstream.app');
        else if (field === 2) m.type = string(wire, 'upstream.type');
        else if (field === 3) m.body = bytes(wire, 'upstream.body');
        else return false;
        return true;
      });
      return m;
    }
    case 'upstream_reply': {
      const m = { op, ok: false, reason: null as string | null };
      each((field, wire) => {
        if (field === 1) m.ok = bool(wire, 'upstream_reply.ok');
        else if (field === 2) m.reason = string(wire, 'upstream_reply.reason');
        else return false;
        return true;
      });
      return m;
    }
    case 'kick': {
      const m = { op, reason: '' };
      each((field, wire) => {
        if (field !== 1) return false;
        m.reason = string(wire, 'kick.reason');
        return true;
      });
      return m;
    }
    case 'reconnect': {
      const m = { op, reason: '', after_ms: 0 };
      each((field, wire) => {
        if (field === 1) m.reason = string(wire, 'reconnect.reason');
        else if (field === 2) m.after_ms = u32(wire, 'reconnect.after_ms');
        else return false;
        return true;
      });
      return m;
    }
    case 'error': {
      const m = { op, code: 0, reason: '' };
      each((field, wire) => {
        if (field === 1) {
          m.code = varint(wire, 'error.code');
          if (m.code > 0xffff) throw new DecodeError(`error.code ${m.code}: above 65535`);
        }
        else if (field === 2) m.reason = string(wire, 'error.reason');
        else return false;
        return true;
      });
      return m;
    }
    case 'refresh': {
      const m = { op, token: '' };
      each((field, wire) => {
        if (field !== 1) return false;
        m.token = string(wire, 'refresh.token');
        return true;
      });
      return m;
    }
  }
}
