// @longlink/push-client 0.1.0: the longlink-push client, one ESM file.
// Generated from clients/js by `npm run bundle`; do not edit (scripts/test.sh checks it).
var __defProp = Object.defineProperty;
var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);

// src/backoff.ts
var Backoff = class {
  /**
   * @param minMs the first delay's floor and scale
   * @param maxMs the longest delay
   * @param random a source of [0, 1) (tests pin it)
   */
  constructor(minMs, maxMs, random = Math.random) {
    __publicField(this, "minMs", minMs);
    __publicField(this, "maxMs", maxMs);
    __publicField(this, "random", random);
    __publicField(this, "failures", 0);
  }
  /** The next delay, in milliseconds; each call counts one more failure in a row. */
  next() {
    const exp = Math.min(this.failures, 16);
    this.failures++;
    const cap = Math.max(this.minMs, Math.min(this.maxMs, this.minMs * 2 ** exp));
    return Math.round(this.minMs + this.random() * (cap - this.minMs));
  }
  /** A good connection: the next failure starts from the bottom again. */
  reset() {
    this.failures = 0;
  }
  /** Failures in a row so far. */
  get attempts() {
    return this.failures;
  }
};

// src/dedup.ts
var Dedup = class {
  constructor(capacity = 4096) {
    __publicField(this, "seen", /* @__PURE__ */ new Set());
    __publicField(this, "capacity");
    this.capacity = Math.max(1, Math.floor(capacity));
  }
  /** `true` the first time `id` is seen within the window; records it. */
  firstTime(id) {
    if (this.seen.has(id)) return false;
    if (this.seen.size >= this.capacity) {
      const oldest = this.seen.values().next().value;
      this.seen.delete(oldest);
    }
    this.seen.add(id);
    return true;
  }
  /** Whether `id` is remembered (without recording it). */
  has(id) {
    return this.seen.has(id);
  }
  /** Ids remembered. */
  get size() {
    return this.seen.size;
  }
};

// src/errors.ts
var PushError = class extends Error {
  constructor(code, message, status) {
    super(message);
    __publicField(this, "code", code);
    __publicField(this, "status", status);
    __publicField(this, "name", "PushError");
  }
  /** Whether the request may have reached the room (so a retry may do it twice). */
  get mayHaveRun() {
    return this.code === "connection_lost" || this.code === "timeout";
  }
};

// src/dispatch.ts
var FORGET_FAILURES_AFTER_MS = 6e4;
var Dispatcher = class {
  constructor(center, uid, fetch, now = Date.now) {
    __publicField(this, "center", center);
    __publicField(this, "uid", uid);
    __publicField(this, "fetch", fetch);
    __publicField(this, "now", now);
    __publicField(this, "cache", /* @__PURE__ */ new Map());
    // Address → when it failed (ms).
    __publicField(this, "failed", /* @__PURE__ */ new Map());
  }
  /** The rooms for `net`, from the cache or the dispatcher. */
  async rooms(net, signal) {
    this.forgetOld();
    const cached = this.cache.get(net);
    if (cached) return cached;
    const url = `${this.center}/dispatch?uid=${encodeURIComponent(this.uid)}&net=${net}&failed=${encodeURIComponent([...this.failed.keys()].join(","))}`;
    let response;
    try {
      response = await this.fetch(url, { signal: signal ?? null, cache: "no-store" });
    } catch (error) {
      throw new PushError("http", `dispatch: ${error.message}`);
    }
    const text2 = await response.text();
    if (response.status !== 200) {
      throw new PushError("http", `dispatch: ${response.status} ${text2.slice(0, 200)}`, response.status);
    }
    let answer;
    try {
      answer = JSON.parse(text2);
    } catch {
      throw new PushError("http", "dispatch: the answer is not JSON");
    }
    if (!Array.isArray(answer.rooms) || answer.rooms.length === 0) {
      throw new PushError("http", "dispatch: no rooms");
    }
    this.cache.set(net, answer.rooms);
    return answer.rooms;
  }
  /**
   * The room to try: the first whose address has not failed lately; when every one has
   * (the only room restarting, say), the one that failed longest ago — never giving up.
   */
  pick(rooms) {
    const fresh = rooms.find((r) => !this.failed.has(r.ws));
    if (fresh) return fresh;
    return [...rooms].sort((a, b) => (this.failed.get(a.ws) ?? 0) - (this.failed.get(b.ws) ?? 0))[0];
  }
  /** `address` failed: the next dispatch names it, and the cached answer for `net` is dropped. */
  failedAt(address, net) {
    this.failed.delete(address);
    this.failed.set(address, this.now());
    this.cache.delete(net);
  }
  /** A good connection: past failures no longer count. */
  connected() {
    this.failed.clear();
  }
  /** The room asked everyone to move (RECONNECT): ask the dispatcher again. */
  forgetRooms() {
    this.cache.clear();
  }
  /** Addresses reported as failed now. */
  failures() {
    this.forgetOld();
    return [...this.failed.keys()];
  }
  forgetOld() {
    const now = this.now();
    for (const [address, at] of this.failed) {
      if (now - at >= FORGET_FAILURES_AFTER_MS) this.failed.delete(address);
    }
  }
};

// src/emitter.ts
var Emitter = class {
  constructor() {
    __publicField(this, "listeners", /* @__PURE__ */ new Map());
  }
  /** Calls `listener` for every `name` event; returns what stops it. */
  on(name, listener) {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, set = /* @__PURE__ */ new Set());
    set.add(listener);
    return () => this.off(name, listener);
  }
  /** Calls `listener` for the next `name` event only. */
  once(name, listener) {
    const off = this.on(name, (event) => {
      off();
      listener(event);
    });
    return off;
  }
  /** Removes `listener`. */
  off(name, listener) {
    this.listeners.get(name)?.delete(listener);
  }
  /** Whether anyone listens to `name`. */
  listening(name) {
    return (this.listeners.get(name)?.size ?? 0) > 0;
  }
  /**
   * Calls the listeners of `name` in order. A listener that throws does not stop the
   * others or the client: its error is rethrown on its own, as an uncaught one.
   */
  emit(name, event) {
    const set = this.listeners.get(name);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(event);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
};

// src/messages.ts
var NETS = ["2g", "3g", "4g", "5g", "wifi"];
var MODES = ["at_least_once", "at_most_once", "notify"];
var OP = {
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
  refresh: 15
};
var DecodeError = class extends Error {
  constructor() {
    super(...arguments);
    __publicField(this, "name", "DecodeError");
  }
};
var encoder = new TextEncoder();
function utf8(text2) {
  return encoder.encode(text2);
}
var lenient = new TextDecoder();
function text(bytes) {
  return lenient.decode(bytes);
}

// src/proto.ts
var VARINT = 0;
var I64 = 1;
var LEN = 2;
var I32 = 5;
var strict = new TextDecoder("utf-8", { fatal: true });
var encoder2 = new TextEncoder();
var Writer = class _Writer {
  constructor() {
    __publicField(this, "buf", new Uint8Array(64));
    __publicField(this, "len", 0);
  }
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.len));
    this.buf = grown;
  }
  /** An unsigned varint (`value` a non-negative safe integer). */
  varint(value) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`${value} is not an unsigned integer below 2^53`);
    }
    this.reserve(10);
    while (value >= 128) {
      this.buf[this.len++] = value % 128 | 128;
      value = Math.floor(value / 128);
    }
    this.buf[this.len++] = value;
    return this;
  }
  tag(field2, wire) {
    this.varint(field2 * 8 + wire);
  }
  /** A varint field; a zero is the default and is left out unless `always`. */
  uint(field2, value, always = false) {
    if (value !== 0 || always) {
      this.tag(field2, VARINT);
      this.varint(value);
    }
    return this;
  }
  /** A bool field (false left out). */
  bool(field2, value) {
    return this.uint(field2, value ? 1 : 0);
  }
  /** A bytes field; empty is left out unless `always` (an `optional` field that is set). */
  bytes(field2, value, always = false) {
    if (value.length > 0 || always) {
      this.tag(field2, LEN);
      this.varint(value.length);
      this.reserve(value.length);
      this.buf.set(value, this.len);
      this.len += value.length;
    }
    return this;
  }
  /** A string field (empty left out unless `always`). */
  string(field2, value, always = false) {
    return this.bytes(field2, encoder2.encode(value), always);
  }
  /** An `optional string`: written when not null, even empty. */
  optionalString(field2, value) {
    return value === null ? this : this.string(field2, value, true);
  }
  /** A `repeated string`: one field per element. */
  strings(field2, values) {
    for (const v of values) this.string(field2, v, true);
    return this;
  }
  /** A packed `repeated uint64` (nothing when empty). */
  packed(field2, values) {
    if (values.length === 0) return this;
    const inner = new _Writer();
    for (const v of values) inner.varint(v);
    return this.bytes(field2, inner.finish());
  }
  /** The bytes written. */
  finish() {
    return this.buf.slice(0, this.len);
  }
};
var Reader = class {
  constructor(bytes) {
    __publicField(this, "bytes", bytes);
    __publicField(this, "pos", 0);
  }
  /** Whether fields remain. */
  more() {
    return this.pos < this.bytes.length;
  }
  /** An unsigned varint; refused past 10 bytes or above 2^53. */
  varint() {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.bytes.length) throw new DecodeError("truncated varint");
      const b = this.bytes[this.pos++];
      value += (b & 127) * scale;
      if (b < 128) {
        if (!Number.isSafeInteger(value)) throw new DecodeError("varint above 2^53");
        return value;
      }
      scale *= 128;
    }
    throw new DecodeError("varint longer than 10 bytes");
  }
  /** The next field's number and wire type. */
  tag() {
    const tag = this.varint();
    const field2 = Math.floor(tag / 8);
    if (field2 === 0) throw new DecodeError("field number 0");
    return [field2, tag % 8];
  }
  /** A length-delimited field's bytes. */
  delimited() {
    const n = this.varint();
    if (n > this.bytes.length - this.pos) throw new DecodeError("length past the end of the body");
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** Skips a field of an unknown number. */
  skip(wire) {
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
  varintSkip() {
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.bytes.length) throw new DecodeError("truncated varint");
      if (this.bytes[this.pos++] < 128) return;
    }
    throw new DecodeError("varint longer than 10 bytes");
  }
  advance(n) {
    if (n > this.bytes.length - this.pos) throw new DecodeError("fixed field past the end of the body");
    this.pos += n;
  }
};
function expect(wire, want, what) {
  if (wire !== want) throw new DecodeError(`${what}: wire type ${wire}, expected ${want}`);
}
function str(bytes, what) {
  try {
    return strict.decode(bytes);
  } catch {
    throw new DecodeError(`${what}: not UTF-8`);
  }
}
function encodeBody(message) {
  const w = new Writer();
  switch (message.op) {
    case "auth": {
      const net = NETS.indexOf(message.net);
      if (net < 0) throw new RangeError(`unknown network type ${message.net}`);
      return w.string(1, message.uid).string(2, message.device).uint(3, net + 1).string(4, message.token).strings(5, message.apps).finish();
    }
    case "auth_reply":
      return w.bool(1, message.ok).optionalString(2, message.reason).uint(3, message.heartbeat_secs).optionalString(4, message.session).finish();
    case "heartbeat":
    case "heartbeat_reply":
      return w.finish();
    case "message": {
      const mode = MODES.indexOf(message.mode);
      if (mode < 0) throw new RangeError(`unknown delivery mode ${message.mode}`);
      return w.uint(1, message.id).string(2, message.app).uint(3, mode).bytes(4, message.body).finish();
    }
    case "ack":
      return w.packed(1, message.ids).finish();
    case "subscribe":
    case "unsubscribe":
      return w.strings(1, message.apps).finish();
    case "upstream":
      return w.string(1, message.app).string(2, message.type).bytes(3, message.body).finish();
    case "upstream_reply":
      return w.bool(1, message.ok).optionalString(2, message.reason).finish();
    case "kick":
      return w.string(1, message.reason).finish();
    case "reconnect":
      return w.string(1, message.reason).uint(2, message.after_ms).finish();
    case "error":
      return w.uint(1, message.code).string(2, message.reason).finish();
    case "refresh":
      return w.string(1, message.token).finish();
  }
}
function decodeBody(op, body2) {
  const r = new Reader(body2);
  const each = (read) => {
    while (r.more()) {
      const [field2, wire] = r.tag();
      if (!read(field2, wire)) r.skip(wire);
    }
  };
  const varint = (wire, what) => {
    expect(wire, VARINT, what);
    return r.varint();
  };
  const u32 = (wire, what) => {
    const v = varint(wire, what);
    if (v > 4294967295) throw new DecodeError(`${what}: above 2^32`);
    return v;
  };
  const bool = (wire, what) => varint(wire, what) !== 0;
  const bytes = (wire, what) => {
    expect(wire, LEN, what);
    return r.delimited().slice();
  };
  const string = (wire, what) => {
    expect(wire, LEN, what);
    return str(r.delimited(), what);
  };
  switch (op) {
    case "auth": {
      const m = { op, uid: "", device: "", net: "wifi", token: "", apps: [] };
      let net = 0;
      each((field2, wire) => {
        if (field2 === 1) m.uid = string(wire, "auth.uid");
        else if (field2 === 2) m.device = string(wire, "auth.device");
        else if (field2 === 3) net = varint(wire, "auth.net");
        else if (field2 === 4) m.token = string(wire, "auth.token");
        else if (field2 === 5) m.apps.push(string(wire, "auth.apps"));
        else return false;
        return true;
      });
      const name = NETS[net - 1];
      if (name === void 0) throw new DecodeError(`auth.net: unknown network type ${net}`);
      return { ...m, net: name };
    }
    case "auth_reply": {
      const m = { op, ok: false, reason: null, heartbeat_secs: 0, session: null };
      each((field2, wire) => {
        if (field2 === 1) m.ok = bool(wire, "auth_reply.ok");
        else if (field2 === 2) m.reason = string(wire, "auth_reply.reason");
        else if (field2 === 3) m.heartbeat_secs = u32(wire, "auth_reply.heartbeat_secs");
        else if (field2 === 4) m.session = string(wire, "auth_reply.session");
        else return false;
        return true;
      });
      return m;
    }
    case "heartbeat":
    case "heartbeat_reply":
      each(() => false);
      return { op };
    case "message": {
      let mode = 0;
      const m = { op, id: 0, app: "", mode: "at_least_once", body: new Uint8Array(0) };
      each((field2, wire) => {
        if (field2 === 1) m.id = varint(wire, "message.id");
        else if (field2 === 2) m.app = string(wire, "message.app");
        else if (field2 === 3) mode = varint(wire, "message.mode");
        else if (field2 === 4) m.body = bytes(wire, "message.body");
        else return false;
        return true;
      });
      const name = MODES[mode];
      if (name === void 0) throw new DecodeError(`message.mode: unknown delivery mode ${mode}`);
      return { ...m, mode: name };
    }
    case "ack": {
      const ids = [];
      each((field2, wire) => {
        if (field2 !== 1) return false;
        if (wire === VARINT) {
          ids.push(r.varint());
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
    case "subscribe":
    case "unsubscribe": {
      const apps = [];
      each((field2, wire) => {
        if (field2 !== 1) return false;
        apps.push(string(wire, `${op}.apps`));
        return true;
      });
      return { op, apps };
    }
    case "upstream": {
      const m = { op, app: "", type: "", body: new Uint8Array(0) };
      each((field2, wire) => {
        if (field2 === 1) m.app = string(wire, "upstream.app");
        else if (field2 === 2) m.type = string(wire, "upstream.type");
        else if (field2 === 3) m.body = bytes(wire, "upstream.body");
        else return false;
        return true;
      });
      return m;
    }
    case "upstream_reply": {
      const m = { op, ok: false, reason: null };
      each((field2, wire) => {
        if (field2 === 1) m.ok = bool(wire, "upstream_reply.ok");
        else if (field2 === 2) m.reason = string(wire, "upstream_reply.reason");
        else return false;
        return true;
      });
      return m;
    }
    case "kick": {
      const m = { op, reason: "" };
      each((field2, wire) => {
        if (field2 !== 1) return false;
        m.reason = string(wire, "kick.reason");
        return true;
      });
      return m;
    }
    case "reconnect": {
      const m = { op, reason: "", after_ms: 0 };
      each((field2, wire) => {
        if (field2 === 1) m.reason = string(wire, "reconnect.reason");
        else if (field2 === 2) m.after_ms = u32(wire, "reconnect.after_ms");
        else return false;
        return true;
      });
      return m;
    }
    case "error": {
      const m = { op, code: 0, reason: "" };
      each((field2, wire) => {
        if (field2 === 1) {
          m.code = varint(wire, "error.code");
          if (m.code > 65535) throw new DecodeError(`error.code ${m.code}: above 65535`);
        } else if (field2 === 2) m.reason = string(wire, "error.reason");
        else return false;
        return true;
      });
      return m;
    }
    case "refresh": {
      const m = { op, token: "" };
      each((field2, wire) => {
        if (field2 !== 1) return false;
        m.token = string(wire, "refresh.token");
        return true;
      });
      return m;
    }
  }
}

// src/frame.ts
var HEADER_BYTES = 16;
var VERSION = 2;
var DEFAULT_MAX_FRAME_BYTES = 1 << 20;
var NAMES = Object.fromEntries(
  Object.entries(OP).filter(([name]) => name !== "batch").map(([name, op]) => [op, name])
);
function encodeFrame(seq, message) {
  const body2 = encodeBody(message);
  const frame = new Uint8Array(HEADER_BYTES + body2.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, frame.length);
  view.setUint16(4, HEADER_BYTES);
  view.setUint16(6, VERSION);
  view.setUint32(8, OP[message.op]);
  view.setUint32(12, seq >>> 0);
  frame.set(body2, HEADER_BYTES);
  return frame;
}
function decodeFrame(bytes, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
  const out = [];
  const end = readFrame(bytes, 0, maxFrameBytes, out, true);
  if (end !== bytes.length) throw new DecodeError(`${bytes.length - end} bytes after the frame`);
  return out;
}
function readFrame(bytes, at, max, out, batchAllowed) {
  if (bytes.length - at < HEADER_BYTES) throw new DecodeError("frame shorter than its header");
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, HEADER_BYTES);
  const len = view.getUint32(0);
  const hlen = view.getUint16(4);
  const ver = view.getUint16(6);
  const op = view.getUint32(8);
  const seq = view.getUint32(12);
  if (len > max) throw new DecodeError(`frame of ${len} bytes exceeds limit ${max}`);
  if (hlen < HEADER_BYTES) throw new DecodeError(`header length ${hlen} is below 16`);
  if (len < hlen) throw new DecodeError(`frame length ${len} is below its header length ${hlen}`);
  if (ver !== VERSION) throw new DecodeError(`frame version ${ver}, this client speaks ${VERSION}`);
  if (len > bytes.length - at) throw new DecodeError(`frame of ${len} bytes, ${bytes.length - at} present`);
  const body2 = bytes.subarray(at + hlen, at + len);
  if (op === OP.batch) {
    if (!batchAllowed) throw new DecodeError("a batch inside a batch");
    let inner = 0;
    while (inner < body2.length) inner = readFrame(body2, inner, max, out, false);
    return at + len;
  }
  const name = NAMES[op];
  if (name === void 0) throw new DecodeError(`unknown op ${op}`);
  out.push({ seq, message: decodeBody(name, body2) });
  return at + len;
}

// src/json.ts
var strict2 = new TextDecoder("utf-8", { fatal: true });
var encoder3 = new TextEncoder();
function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 32768) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 32768));
  }
  return btoa(binary);
}
function fromBase64(text2) {
  let binary;
  try {
    binary = atob(text2);
  } catch {
    throw new DecodeError("body: bad base64");
  }
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}
function bodyJson(bytes) {
  try {
    return strict2.decode(bytes);
  } catch {
    return { base64: toBase64(bytes) };
  }
}
function encodeJson(seq, message) {
  const out = { seq, ...message };
  if ("body" in message) out["body"] = bodyJson(message.body);
  return JSON.stringify(out);
}
function field(o, name, type, fallback) {
  const v = o[name];
  if (v === void 0 || v === null) {
    if (fallback !== void 0) return fallback;
    throw new DecodeError(`missing field ${name}`);
  }
  if (typeof v !== type) throw new DecodeError(`${name}: expected a ${type}`);
  if (type === "number" && (!Number.isSafeInteger(v) || v < 0)) {
    throw new DecodeError(`${name}: expected an unsigned integer`);
  }
  return v;
}
function optionalString(o, name) {
  const v = o[name];
  if (v === void 0 || v === null) return null;
  if (typeof v !== "string") throw new DecodeError(`${name}: expected a string`);
  return v;
}
function strings(o, name, required) {
  const v = o[name];
  if (v === void 0 || v === null) {
    if (required) throw new DecodeError(`missing field ${name}`);
    return [];
  }
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
    throw new DecodeError(`${name}: expected an array of strings`);
  }
  return v;
}
function body(o) {
  const v = o["body"];
  if (typeof v === "string") return encoder3.encode(v);
  if (v && typeof v === "object" && typeof v["base64"] === "string") {
    return fromBase64(v["base64"]);
  }
  throw new DecodeError('body: expected a string or {"base64": …}');
}
function fromJsonObject(o) {
  if (!o || typeof o !== "object" || Array.isArray(o)) throw new DecodeError("expected a JSON object");
  const j = o;
  const seq = field(j, "seq", "number", 0);
  const op = j["op"];
  if (typeof op !== "string" || !(op in OP) || op === "batch") throw new DecodeError(`unknown op ${String(op)}`);
  let message;
  switch (op) {
    case "auth": {
      const net = field(j, "net", "string");
      if (!NETS.includes(net)) throw new DecodeError(`net: unknown network type ${net}`);
      message = {
        op: "auth",
        uid: field(j, "uid", "string"),
        device: field(j, "device", "string"),
        net,
        token: field(j, "token", "string"),
        apps: strings(j, "apps", false)
      };
      break;
    }
    case "auth_reply":
      message = {
        op: "auth_reply",
        ok: field(j, "ok", "boolean"),
        reason: optionalString(j, "reason"),
        heartbeat_secs: field(j, "heartbeat_secs", "number", 0),
        session: optionalString(j, "session")
      };
      break;
    case "heartbeat":
      message = { op: "heartbeat" };
      break;
    case "heartbeat_reply":
      message = { op: "heartbeat_reply" };
      break;
    case "message": {
      const mode = field(j, "mode", "string", "at_least_once");
      if (!MODES.includes(mode)) throw new DecodeError(`mode: unknown delivery mode ${mode}`);
      message = {
        op: "message",
        id: field(j, "id", "number"),
        app: field(j, "app", "string"),
        mode,
        body: body(j)
      };
      break;
    }
    case "ack": {
      const ids = j["ids"];
      if (!Array.isArray(ids) || !ids.every((i) => Number.isSafeInteger(i) && i >= 0)) {
        throw new DecodeError("ids: expected an array of unsigned integers");
      }
      message = { op: "ack", ids };
      break;
    }
    case "subscribe":
    case "unsubscribe":
      message = { op, apps: strings(j, "apps", true) };
      break;
    case "upstream":
      message = { op: "upstream", app: field(j, "app", "string"), type: field(j, "type", "string"), body: body(j) };
      break;
    case "upstream_reply":
      message = { op: "upstream_reply", ok: field(j, "ok", "boolean"), reason: optionalString(j, "reason") };
      break;
    case "kick":
      message = { op: "kick", reason: field(j, "reason", "string") };
      break;
    case "reconnect":
      message = { op: "reconnect", reason: field(j, "reason", "string"), after_ms: field(j, "after_ms", "number") };
      break;
    case "error":
      message = { op: "error", code: field(j, "code", "number"), reason: field(j, "reason", "string") };
      break;
    case "refresh":
      message = { op: "refresh", token: field(j, "token", "string") };
      break;
  }
  return { seq, message };
}
function decodeJson(text2) {
  let value;
  try {
    value = JSON.parse(text2);
  } catch {
    throw new DecodeError("not JSON");
  }
  return Array.isArray(value) ? value.map(fromJsonObject) : [fromJsonObject(value)];
}

// src/sse_parser.ts
var SseParser = class {
  /**
   * @param maxLineChars a line longer than this is an error (a stream that never ends a
   *   line would otherwise grow without bound)
   */
  constructor(maxLineChars = 1 << 20) {
    __publicField(this, "maxLineChars", maxLineChars);
    __publicField(this, "decoder", new TextDecoder());
    __publicField(this, "line", "");
    __publicField(this, "sawCR", false);
    __publicField(this, "data", []);
    __publicField(this, "event", "");
    __publicField(this, "lastId", "");
    __publicField(this, "retry");
    __publicField(this, "first", true);
  }
  /** Feeds a chunk; returns the events it completed. */
  push(chunk) {
    return this.text(this.decoder.decode(chunk, { stream: true }));
  }
  /** Feeds text (for tests and string sources). */
  text(text2) {
    const out = [];
    if (this.first && text2.length > 0) {
      this.first = false;
      if (text2.charCodeAt(0) === 65279) text2 = text2.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text2.length; i++) {
      const c = text2.charCodeAt(i);
      if (c === 10 && this.sawCR) {
        this.sawCR = false;
        start = i + 1;
        continue;
      }
      this.sawCR = false;
      if (c === 10 || c === 13) {
        this.line += text2.slice(start, i);
        this.sawCR = c === 13;
        this.endLine(out);
        start = i + 1;
      }
    }
    this.line += text2.slice(start);
    if (this.line.length > this.maxLineChars) {
      throw new RangeError(`an event-stream line longer than ${this.maxLineChars} characters`);
    }
    return out;
  }
  endLine(out) {
    const line = this.line;
    this.line = "";
    if (line === "") {
      if (this.data.length > 0) {
        const event = { event: this.event || "message", data: this.data.join("\n"), id: this.lastId };
        if (this.retry !== void 0) event.retry = this.retry;
        out.push(event);
      }
      this.data = [];
      this.event = "";
      this.retry = void 0;
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (name) {
      case "data":
        this.data.push(value);
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
    }
  }
};

// src/sse.ts
var BUSY_ATTEMPTS = 5;
var BUSY_WAIT_MS = 100;
function sseUrlOf(ws) {
  const url = new URL(ws);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.pathname = "/sse";
  url.search = "";
  url.hash = "";
  return url.toString();
}
function segment(session) {
  return /^[A-Za-z0-9._~:-]+$/.test(session) ? session : encodeURIComponent(session);
}
var SseTransport = class {
  constructor(url, fetch, auth, handlers) {
    __publicField(this, "url", url);
    __publicField(this, "fetch", fetch);
    __publicField(this, "handlers", handlers);
    __publicField(this, "name", "sse");
    __publicField(this, "abort", new AbortController());
    __publicField(this, "session", null);
    __publicField(this, "ended", false);
    __publicField(this, "authenticated", false);
    // Messages waiting to be POSTed, in order; one POST is in flight at a time.
    __publicField(this, "queue", []);
    __publicField(this, "sending", false);
    void this.open(encodeJson(auth.seq, auth.message));
  }
  send(seq, message) {
    if (this.ended || this.session === null) throw new Error("the SSE stream is not open");
    this.queue.push(encodeJson(seq, message));
    void this.drain();
  }
  close(_code, reason = "closed by the client") {
    this.end({ reason });
  }
  async open(auth) {
    let response;
    try {
      response = await this.fetch(this.url, {
        method: "POST",
        headers: { "content-type": "text/plain;charset=UTF-8", accept: "text/event-stream" },
        body: auth,
        signal: this.abort.signal,
        cache: "no-store"
      });
    } catch (error) {
      this.end({ reason: `POST /sse: ${error.message}` });
      return;
    }
    if (response.status !== 200 || !response.body) {
      await this.refused(response);
      return;
    }
    const parser = new SseParser();
    const reader = response.body.getReader();
    try {
      for (; ; ) {
        const { done, value } = await reader.read();
        if (done) break;
        if (this.ended) return;
        for (const event of parser.push(value)) this.event(event.data);
        if (this.ended) return;
      }
      this.end({ reason: "the room ended the event stream" });
    } catch (error) {
      this.end({ reason: `event stream: ${error.message}` });
    } finally {
      reader.releaseLock?.();
    }
  }
  /**
   * A refused `POST /sse`. A 401 or 403 carries the AUTH_REPLY of a refused AUTH (a bad,
   * expired or foreign token; apps not allowed): it goes up as if it came down the stream,
   * and the client stops as on WebSocket. Anything else — 429 at the session limit, 503
   * from a draining room (both with an AUTH_REPLY too), 400 — is a failed attempt.
   */
  async refused(response) {
    const status = response.status;
    const text2 = await response.text().catch(() => "");
    if (status === 404 || status === 426 || status === 405) {
      this.end({ reason: `the room serves no SSE (POST /sse answered ${status})`, code: status, unsupported: true });
      return;
    }
    let reason = text2.slice(0, 200);
    try {
      const [first] = decodeJson(text2);
      if (first?.message.op === "auth_reply") {
        if ((status === 401 || status === 403) && !this.ended) {
          this.handlers.onMessages([first]);
          return;
        }
        reason = first.message.reason ?? reason;
      } else if (first?.message.op === "error") {
        reason = first.message.reason;
      }
    } catch {
    }
    this.end({ reason: `POST /sse answered ${status}: ${reason}`, code: status });
  }
  event(data) {
    if (data === "") return;
    let message;
    try {
      message = fromJsonObject(JSON.parse(data));
    } catch (error) {
      this.handlers.onError(error);
      this.end({ reason: `unreadable event: ${error.message}` });
      return;
    }
    if (message.message.op === "auth_reply" && !this.authenticated) {
      if (message.message.ok) {
        this.authenticated = true;
        this.session = message.message.session;
        if (this.session === null) {
          this.end({ reason: "the auth_reply named no session" });
          return;
        }
      }
    }
    this.handlers.onMessages([message]);
  }
  async drain() {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0 && !this.ended) {
        await this.post(this.queue[0]);
        this.queue.shift();
      }
    } finally {
      this.sending = false;
    }
  }
  // POSTs one message; a 429 is tried again after a growing wait, then given up.
  async post(body2) {
    const url = `${this.url}/${segment(this.session)}`;
    for (let attempt = 0; attempt < BUSY_ATTEMPTS && !this.ended; attempt++) {
      let response;
      try {
        response = await this.fetch(url, {
          method: "POST",
          headers: { "content-type": "text/plain;charset=UTF-8" },
          body: body2,
          signal: this.abort.signal,
          cache: "no-store"
        });
      } catch (error) {
        this.end({ reason: `POST /sse/{session}: ${error.message}` });
        return;
      }
      const status = response.status;
      const text2 = await response.text().catch(() => "");
      if (status === 202 || status === 200 || status === 204) return;
      if (status === 404) {
        this.end({ reason: "the room no longer knows this SSE session", code: 404 });
        return;
      }
      if (status === 429) {
        await new Promise((resolve) => setTimeout(resolve, BUSY_WAIT_MS * 2 ** attempt));
        continue;
      }
      this.handlers.onError(new Error(`POST /sse/{session} answered ${status}: ${text2.slice(0, 200)}`));
      return;
    }
    if (!this.ended) this.handlers.onError(new Error("the room stayed busy (429): a message was dropped"));
  }
  end(close) {
    if (this.ended) return;
    this.ended = true;
    this.abort.abort();
    this.queue.length = 0;
    this.handlers.onClose({ ...close, authenticated: this.authenticated });
  }
};

// src/token.ts
var MIN_LEAD_SECS = 5;
var MAX_LEAD_SECS = 300;
function tokenExpiry(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const middle = parts[1];
  if (/^[0-9]+$/.test(middle)) {
    const n = Number(middle);
    return Number.isSafeInteger(n) ? n : null;
  }
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(middle)) return null;
  try {
    const b64 = middle.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
    const padded = b64 + "=".repeat((4 - b64.length % 4) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    const exp = claims?.exp;
    return typeof exp === "number" && Number.isSafeInteger(exp) && exp >= 0 ? exp : null;
  } catch {
    return null;
  }
}
function refreshInSecs(expiresAt, now) {
  const left = Math.max(0, expiresAt - now);
  const lead = Math.min(MAX_LEAD_SECS, Math.max(MIN_LEAD_SECS, left / 5));
  return Math.max(0, left - lead);
}
function tokenStale(token, now) {
  const at = tokenExpiry(token);
  return at !== null && at <= now + MIN_LEAD_SECS;
}
function unixNow() {
  return Math.floor(Date.now() / 1e3);
}

// src/websocket.ts
var WebSocketTransport = class {
  constructor(url, WS, format, maxFrameBytes, auth, handlers) {
    __publicField(this, "url", url);
    __publicField(this, "format", format);
    __publicField(this, "maxFrameBytes", maxFrameBytes);
    __publicField(this, "handlers", handlers);
    __publicField(this, "name", "websocket");
    __publicField(this, "ws");
    __publicField(this, "authenticated", false);
    __publicField(this, "ended", false);
    __publicField(this, "opened", false);
    this.ws = new WS(url);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => {
      this.opened = true;
      this.write(auth.seq, auth.message);
    };
    this.ws.onmessage = (event) => this.receive(event.data);
    this.ws.onerror = () => {
      if (this.ended) return;
      if (!this.opened) {
        this.end({ reason: "the WebSocket could not connect" });
        this.closeSocket(1e3, "");
      } else {
        setTimeout(() => this.end({ reason: "WebSocket error" }), 1e3);
      }
    };
    this.ws.onclose = (event) => {
      this.end({ reason: event.reason || `closed with status ${event.code}`, code: event.code });
    };
  }
  send(seq, message) {
    if (this.ended || this.ws.readyState !== 1) throw new Error("the WebSocket is not open");
    this.write(seq, message);
  }
  close(code = 1e3, reason = "") {
    if (this.ended) return;
    this.end({ reason: reason || "closed by the client", code });
    this.closeSocket(code, reason);
  }
  /**
   * Closes the socket. Browsers take only 1000 and 3000–4999 from a client, and a reason
   * of at most 123 bytes: anything else becomes 1000 with a shortened reason.
   */
  closeSocket(code, reason) {
    const allowed = code === 1e3 || code >= 3e3 && code <= 4999;
    let short = reason;
    while (new TextEncoder().encode(short).length > 123) short = short.slice(0, -1);
    try {
      this.ws.close(allowed ? code : 1e3, short);
    } catch {
      try {
        this.ws.close();
      } catch {
      }
    }
  }
  write(seq, message) {
    this.ws.send(this.format === "json" ? encodeJson(seq, message) : encodeFrame(seq, message));
  }
  receive(data) {
    if (this.ended) return;
    let messages;
    try {
      if (typeof data === "string") {
        messages = decodeJson(data);
      } else if (data instanceof ArrayBuffer) {
        messages = decodeFrame(new Uint8Array(data), this.maxFrameBytes);
      } else if (ArrayBuffer.isView(data)) {
        messages = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), this.maxFrameBytes);
      } else {
        throw new Error("a WebSocket message that is neither text nor bytes");
      }
    } catch (error) {
      this.handlers.onError(error);
      this.end({ reason: `unreadable message: ${error.message}`, code: 1007 });
      this.closeSocket(4007, "unreadable message");
      return;
    }
    if (messages.some((m) => m.message.op === "auth_reply")) this.authenticated = true;
    this.handlers.onMessages(messages);
  }
  end(close) {
    if (this.ended) return;
    this.ended = true;
    this.ws.onopen = this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
    this.handlers.onClose({ ...close, authenticated: this.authenticated });
  }
};

// src/client.ts
var REFRESH_RETRY_MS = 5e3;
var REFRESH_FLOOR_MS = 6e4;
var TOKEN_TIMEOUT_MS = 1e4;
var MAX_WAITING = 256;
var MAX_ACK_IDS = 512;
var MAX_TIMER_MS = 2 ** 31 - 1;
var PushClient = class extends Emitter {
  constructor(options) {
    super();
    /** The user. */
    __publicField(this, "uid");
    __publicField(this, "center");
    __publicField(this, "options");
    __publicField(this, "getToken");
    __publicField(this, "WS");
    __publicField(this, "http");
    __publicField(this, "wsUrl");
    __publicField(this, "sseUrl");
    __publicField(this, "dispatcher");
    __publicField(this, "backoff");
    __publicField(this, "dedup");
    // Ids handed over and ACKed (a redelivered one is ACKed again without a word).
    __publicField(this, "acked");
    __publicField(this, "token");
    __publicField(this, "net");
    __publicField(this, "appList");
    __publicField(this, "stateNow", "connecting");
    __publicField(this, "current", null);
    __publicField(this, "seq", 0);
    __publicField(this, "waiting", /* @__PURE__ */ new Map());
    __publicField(this, "acks", []);
    __publicField(this, "ackTimer");
    // Messages are handed over in order, a notify pull included.
    __publicField(this, "inbox", Promise.resolve());
    // Until when WebSocket is skipped (it failed where SSE worked).
    __publicField(this, "wsSkippedUntil", 0);
    // AUTHs refused in a row.
    __publicField(this, "refusals", 0);
    __publicField(this, "wake", null);
    // The transport being opened (closed by `close()` so the attempt ends at once).
    __publicField(this, "opening", null);
    __publicField(this, "stopped", new AbortController());
    if (!options.center) throw new TypeError("connect: `center` is required");
    if (!options.uid) throw new TypeError("connect: `uid` is required");
    if (!options.token && !options.getToken) throw new TypeError("connect: `token` or `getToken` is required");
    this.center = options.center.replace(/\/+$/, "");
    this.uid = options.uid;
    this.token = options.token ?? "";
    this.getToken = options.getToken;
    this.net = options.net ?? "wifi";
    this.appList = [...options.apps ?? ["demo"]];
    this.options = {
      device: options.device ?? "web",
      transport: options.transport ?? "auto",
      format: options.format ?? "binary",
      ack: options.ack ?? "auto",
      notify: options.notify ?? "pull",
      connectTimeoutMs: options.connectTimeoutMs ?? 1e4,
      requestTimeoutMs: options.requestTimeoutMs ?? 1e4,
      ackDelayMs: options.ackDelayMs ?? 20,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      sseStickyMs: options.sseStickyMs ?? 3e5
    };
    this.WS = options.WebSocket ?? globalThis.WebSocket;
    const f = options.fetch ?? globalThis.fetch;
    if (!f) throw new TypeError("connect: no `fetch` here; pass one");
    this.http = (input, init) => f(input, init);
    if (!this.WS && this.options.transport === "websocket") {
      throw new TypeError(
        "connect: no WebSocket here; pass `WebSocket` (on Node 20 run with --experimental-websocket)"
      );
    }
    this.wsUrl = options.webSocketUrl ?? ((room) => room.ws);
    this.sseUrl = options.sseUrl ?? ((room) => sseUrlOf(room.ws));
    this.dispatcher = new Dispatcher(this.center, this.uid, this.http);
    this.backoff = new Backoff(options.backoffMinMs ?? 200, options.backoffMaxMs ?? 3e4);
    this.dedup = new Dedup(options.dedupWindow ?? 4096);
    this.acked = new Dedup(options.dedupWindow ?? 4096);
    queueMicrotask(() => void this.run());
  }
  /** `connecting`, `connected` or `closed`. */
  get state() {
    return this.stateNow;
  }
  /** The transport of the live connection (`websocket` or `sse`), or `null`. */
  get transport() {
    return this.stateNow === "connected" ? this.current?.transport.name ?? null : null;
  }
  /** Where the live connection goes (its WebSocket URL or SSE endpoint), or `null`. */
  get url() {
    return this.stateNow === "connected" ? this.current?.transport.url ?? null : null;
  }
  /** The apps this client receives (and names in every AUTH). */
  get apps() {
    return this.appList;
  }
  /** Resolves once connected (at once if it is); rejects if the client stops first. */
  ready() {
    if (this.stateNow === "connected") return Promise.resolve();
    if (this.stateNow === "closed") return Promise.reject(new PushError("closed", "the client has stopped"));
    return new Promise((resolve, reject) => {
      const offConnected = this.once("connected", (event) => {
        offDisconnected();
        resolve(event);
      });
      const offDisconnected = this.on("disconnected", (event) => {
        if (event.reconnect) return;
        offConnected();
        offDisconnected();
        reject(new PushError("closed", `the client has stopped: ${event.reason}`));
      });
    });
  }
  /** ACKs messages (with `ack: 'manual'`). Sent in a batch shortly; dropped while offline (they come again). */
  ack(ids) {
    for (const id of typeof ids === "number" ? [ids] : ids) {
      this.acked.firstTime(id);
      this.acks.push(id);
    }
    this.scheduleAcks();
  }
  /**
   * Sends `body` upstream to `app`'s business server (routed by `type`) and resolves with
   * the room's answer (`ok: false` with a reason when refused). Rejects with a
   * {@link PushError}: `not_connected` (nothing sent), `connection_lost` or `timeout`
   * (it may have been taken), `overloaded` (too many waiting; nothing sent).
   */
  upstream(app, type, body2, options = {}) {
    const session = this.live();
    if (!session) return Promise.reject(new PushError("not_connected", "not connected: nothing was sent"));
    if (this.waiting.size >= MAX_WAITING) {
      return Promise.reject(new PushError("overloaded", `${MAX_WAITING} upstream requests are waiting: nothing was sent`));
    }
    const seq = this.nextSeq();
    const bytes = typeof body2 === "string" ? utf8(body2) : body2;
    return new Promise((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        reject(new PushError("timeout", `no upstream reply within ${timeoutMs} ms; it may have been taken`));
      }, Math.min(timeoutMs, MAX_TIMER_MS));
      this.waiting.set(seq, { resolve, reject, timer });
      if (!this.sendOn(session, seq, { op: "upstream", app, type, body: bytes })) {
        this.settle(seq, new PushError("not_connected", "the connection failed as the upstream was sent"));
      }
    });
  }
  /**
   * Receives `apps` too, from now on and in every later AUTH. Past the room's limit of
   * apps per connection an `error` event (400) says so and the connection keeps its apps.
   */
  subscribe(apps) {
    const added = apps.filter((a) => !this.appList.includes(a));
    this.appList.push(...added);
    const session = this.live();
    if (session && apps.length > 0) this.sendOn(session, this.nextSeq(), { op: "subscribe", apps: [...apps] });
  }
  /** Stops receiving `apps` (now and in every later AUTH). */
  unsubscribe(apps) {
    this.appList = this.appList.filter((a) => !apps.includes(a));
    const session = this.live();
    if (session && apps.length > 0) this.sendOn(session, this.nextSeq(), { op: "unsubscribe", apps: [...apps] });
  }
  /** The network type changed: reconnect with the rooms and heartbeat for `net`. */
  setNet(net) {
    if (net === this.net) return;
    this.net = net;
    this.current?.finish({ code: "network_changed", reason: `network changed to ${net}`, retryInMs: 0 });
  }
  /** Pulls the body of a notify message from the center. */
  async pull(id) {
    const url = `${this.center}/messages/${id}/body?uid=${encodeURIComponent(this.uid)}&token=${encodeURIComponent(this.token)}`;
    let response;
    try {
      response = await this.http(url, { cache: "no-store" });
    } catch (error) {
      throw new PushError("http", `pull ${id}: ${error.message}`);
    }
    const body2 = new Uint8Array(await response.arrayBuffer());
    if (response.status !== 200) {
      throw new PushError("http", `pull ${id}: ${response.status} ${text(body2).slice(0, 200)}`, response.status);
    }
    return body2;
  }
  /** Closes the connection and stops; requests waiting fail with `closed`. */
  close() {
    if (this.stateNow === "closed") return;
    this.stop({ code: "closed", reason: "closed by the client", retryInMs: null });
  }
  // ---- the connection loop ----
  async run() {
    let why = { code: "connect", reason: "starting", attempt: 0 };
    while (this.stateNow !== "closed") {
      this.setState("connecting");
      this.emit("connecting", why);
      const end = await this.attempt();
      if (this.isStopped()) return;
      if (end.retryInMs === null) {
        this.stop(end);
        return;
      }
      const retryInMs = end.retryInMs;
      const event = { code: end.code, reason: end.reason, reconnect: true, retryInMs };
      if (end.closeCode !== void 0) event.closeCode = end.closeCode;
      this.emit("disconnected", event);
      why = { code: end.code, reason: end.reason, attempt: this.backoff.attempts };
      await this.sleep(retryInMs);
    }
  }
  // One connection, from dispatch to its end.
  async attempt() {
    const token = await this.freshToken();
    if (token) return token;
    let rooms;
    try {
      rooms = await this.dispatcher.rooms(this.net, this.stopped.signal);
    } catch (error) {
      return { code: "dispatch_failed", reason: error.message, retryInMs: this.backoff.next() };
    }
    if (this.isStopped()) return { code: "closed", reason: "closed", retryInMs: null };
    const room = this.dispatcher.pick(rooms);
    const kinds = this.options.transport !== "auto" ? [this.options.transport] : !this.WS || Date.now() < this.wsSkippedUntil ? ["sse"] : ["websocket", "sse"];
    let failure = null;
    for (const kind of kinds) {
      const outcome = await this.open(kind, room);
      if (this.isStopped()) {
        if (outcome.kind === "open") outcome.session.transport.close(1e3, "closed by the client");
        return { code: "closed", reason: "closed", retryInMs: null };
      }
      if (outcome.kind === "open") {
        if (kind === "sse" && kinds[0] === "websocket") this.wsSkippedUntil = Date.now() + this.options.sseStickyMs;
        return this.serve(outcome.session, outcome.heartbeatSecs, outcome.sessionKey);
      }
      if (outcome.kind === "refused") return this.refused(outcome.reason);
      failure = {
        code: "connect_failed",
        // Both transports' reasons when the fallback failed too.
        reason: `${failure ? `${failure.reason}; then ` : ""}${kind} ${outcome.url}: ${outcome.close.reason}`,
        retryInMs: 0
      };
      if (outcome.close.code !== void 0) failure.closeCode = outcome.close.code;
    }
    this.wsSkippedUntil = 0;
    this.dispatcher.failedAt(room.ws, this.net);
    return { ...failure, retryInMs: this.backoff.next() };
  }
  // Opens `kind` to `room` and waits for the AUTH_REPLY, within the connect timeout.
  open(kind, room) {
    return new Promise((resolve) => {
      const url = kind === "websocket" ? this.wsUrl(room) : this.sseUrl(room);
      let authed = false;
      const session = {
        transport: void 0,
        room,
        lastHeardMs: Date.now(),
        finish: () => {
        }
      };
      const fail = (close) => {
        clearTimeout(timer);
        if (this.opening === session.transport) this.opening = null;
        resolve({ kind: "failed", url, close });
      };
      const handlers = {
        onMessages: (messages) => {
          session.lastHeardMs = Date.now();
          if (authed) {
            if (session.backlog) session.backlog.push(...messages);
            else this.onMessages(session, messages);
            return;
          }
          const [first, ...rest] = messages;
          if (!first || first.message.op !== "auth_reply") {
            fail({ reason: `expected auth_reply, got ${first?.message.op}`, authenticated: false });
            session.transport.close(1e3, "expected auth_reply");
            return;
          }
          clearTimeout(timer);
          if (this.opening === session.transport) this.opening = null;
          const reply = first.message;
          if (!reply.ok) {
            resolve({ kind: "refused", reason: reply.reason ?? "refused" });
            session.transport.close(1e3, "auth refused");
            return;
          }
          authed = true;
          session.backlog = rest;
          resolve({ kind: "open", session, heartbeatSecs: reply.heartbeat_secs, sessionKey: reply.session });
        },
        onError: (error) => {
          if (authed) this.report(new PushError("protocol", error.message));
        },
        onClose: (close) => {
          if (authed) {
            session.finish({
              code: "transport_closed",
              reason: close.reason,
              ...close.code !== void 0 ? { closeCode: close.code } : {},
              retryInMs: this.backoff.next()
            });
          } else {
            fail(close);
          }
        }
      };
      const auth = {
        seq: this.nextSeq(),
        message: { op: "auth", uid: this.uid, device: this.options.device, net: this.net, token: this.token, apps: [...this.appList] }
      };
      const timer = setTimeout(() => {
        fail({ reason: `connect timed out after ${this.options.connectTimeoutMs} ms`, authenticated: false });
        session.transport.close(1e3, "connect timed out");
      }, this.options.connectTimeoutMs);
      try {
        session.transport = kind === "websocket" ? new WebSocketTransport(url, this.WS, this.options.format, this.options.maxFrameBytes, auth, handlers) : new SseTransport(url, this.http, auth, handlers);
        this.opening = session.transport;
      } catch (error) {
        session.transport = { name: kind, url, send() {
        }, close() {
        } };
        fail({ reason: error.message, authenticated: false });
      }
    });
  }
  // Runs an authenticated session until it ends.
  serve(session, heartbeatSecs, sessionKey) {
    return new Promise((resolve) => {
      let done = false;
      session.finish = (end) => {
        if (done) return;
        done = true;
        clearInterval(session.heartbeat);
        clearTimeout(session.refreshTimer);
        if (this.current === session) this.current = null;
        this.flushAcks(session);
        session.transport.close(1e3, end.reason);
        for (const seq of [...this.waiting.keys()]) {
          this.settle(seq, new PushError("connection_lost", "the connection closed before the answer; the upstream may have been taken"));
        }
        resolve(end);
      };
      this.current = session;
      this.refusals = 0;
      this.backoff.reset();
      this.dispatcher.connected();
      this.setState("connected");
      const intervalMs = Math.max(1, heartbeatSecs) * 1e3;
      session.heartbeat = setInterval(() => {
        if (Date.now() - session.lastHeardMs > 2 * intervalMs + 1e3) {
          session.finish({ code: "heartbeat_timeout", reason: "the room stopped answering heartbeats", retryInMs: this.backoff.next() });
          return;
        }
        this.sendOn(session, this.nextSeq(), { op: "heartbeat" });
      }, intervalMs);
      this.scheduleRefresh(session);
      this.emit("connected", {
        transport: session.transport.name,
        room: session.room.name,
        url: session.transport.url,
        session: sessionKey,
        heartbeatSecs
      });
      const backlog = session.backlog ?? [];
      session.backlog = void 0;
      this.onMessages(session, backlog);
    });
  }
  onMessages(session, messages) {
    for (const { seq, message } of messages) {
      if (this.current !== session) return;
      this.onMessage(session, seq, message);
    }
  }
  onMessage(session, seq, message) {
    switch (message.op) {
      case "message":
        this.deliver(message);
        return;
      case "heartbeat_reply":
        return;
      case "auth_reply": {
        const sent = session.refreshSent;
        if (!sent || sent.seq !== seq) return;
        session.refreshSent = void 0;
        if (message.ok) {
          this.token = sent.token;
          this.emit("refreshed", { expiresAt: tokenExpiry(sent.token) });
          this.scheduleRefresh(session);
        } else {
          this.report(new PushError("refresh_failed", `the room refused the new token: ${message.reason ?? "refused"}`));
          this.refreshLater(session, REFRESH_RETRY_MS);
        }
        return;
      }
      case "upstream_reply":
        this.settle(seq, { ok: message.ok, reason: message.reason });
        return;
      case "kick":
        session.finish({ code: "kicked", reason: message.reason, retryInMs: null });
        return;
      case "reconnect":
        this.dispatcher.forgetRooms();
        session.finish({ code: "reconnect", reason: `the room asked to reconnect: ${message.reason}`, retryInMs: message.after_ms });
        return;
      case "error": {
        const error = new PushError("room_error", `room error ${message.code}: ${message.reason}`, message.code);
        if (this.waiting.has(seq)) this.settle(seq, error);
        this.report(error);
        return;
      }
      default:
        session.finish({ code: "transport_closed", reason: `the room sent ${message.op}`, retryInMs: this.backoff.next() });
    }
  }
  // A MESSAGE: dedup, pull (notify), hand over, ACK — in arrival order.
  deliver(m) {
    const stored = m.mode !== "at_most_once";
    if (!this.dedup.firstTime(m.id)) {
      if (stored && (this.options.ack === "auto" || this.acked.has(m.id))) {
        this.acks.push(m.id);
        this.scheduleAcks();
      }
      this.emit("duplicate", { id: m.id, app: m.app });
      return;
    }
    this.inbox = this.inbox.then(async () => {
      let body2 = m.body;
      if (m.mode === "notify" && this.options.notify === "pull") {
        try {
          body2 = await this.pull(m.id);
        } catch (error) {
          this.report(error);
          return;
        }
      }
      if (this.stateNow === "closed") return;
      this.emit("message", this.received(m, body2));
      if (stored && this.options.ack === "auto") {
        this.acked.firstTime(m.id);
        this.acks.push(m.id);
        this.scheduleAcks();
      }
    });
  }
  received(m, body2) {
    let text2;
    return {
      id: m.id,
      app: m.app,
      mode: m.mode,
      body: body2,
      get text() {
        return text2 ?? (text2 = text(body2));
      },
      json() {
        return JSON.parse(this.text);
      },
      ack: () => this.ack(m.id)
    };
  }
  // ---- ACKs ----
  scheduleAcks() {
    if (this.acks.length >= MAX_ACK_IDS) {
      this.flushAcks(this.live());
      return;
    }
    if (this.ackTimer === void 0) {
      this.ackTimer = setTimeout(() => this.flushAcks(this.live()), this.options.ackDelayMs);
    }
  }
  flushAcks(session) {
    clearTimeout(this.ackTimer);
    this.ackTimer = void 0;
    const ids = this.acks;
    this.acks = [];
    if (!session) return;
    for (let i = 0; i < ids.length; i += MAX_ACK_IDS) {
      this.sendOn(session, this.nextSeq(), { op: "ack", ids: ids.slice(i, i + MAX_ACK_IDS) });
    }
  }
  // ---- tokens ----
  // A token before connecting: the first, or a new one for an expired token.
  async freshToken() {
    if (!this.getToken) return null;
    if (this.token !== "" && !tokenStale(this.token, unixNow())) return null;
    try {
      this.token = await this.fetchToken();
      return null;
    } catch (error) {
      this.report(new PushError("refresh_failed", `no token: ${error.message}`));
      return { code: "token_failed", reason: `no token: ${error.message}`, retryInMs: this.backoff.next() };
    }
  }
  async fetchToken() {
    const getToken = this.getToken;
    let timer;
    try {
      const token = await Promise.race([
        Promise.resolve().then(getToken),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`getToken did not answer within ${TOKEN_TIMEOUT_MS} ms`)), TOKEN_TIMEOUT_MS);
        })
      ]);
      if (typeof token !== "string" || token === "") throw new Error("getToken gave no token");
      return token;
    } finally {
      clearTimeout(timer);
    }
  }
  // The room refused the AUTH: with `getToken`, once more with a new token; else stop.
  async refused(reason) {
    this.refusals++;
    if (this.getToken && this.refusals === 1) {
      try {
        this.token = await this.fetchToken();
        return { code: "auth_refused", reason: `refused (${reason}); again with a new token`, retryInMs: 0 };
      } catch (error) {
        this.refusals = 0;
        this.report(new PushError("refresh_failed", `no new token: ${error.message}`));
        return { code: "auth_refused", reason: `refused (${reason}); no new token`, retryInMs: this.backoff.next() };
      }
    }
    return { code: "auth_refused", reason, retryInMs: null };
  }
  // When to send the next REFRESH on `session` (with `getToken` and a token that says when it ends).
  scheduleRefresh(session) {
    if (!this.getToken) return;
    const expiresAt = tokenExpiry(this.token);
    if (expiresAt === null) return;
    const dueMs = refreshInSecs(expiresAt, Date.now() / 1e3) * 1e3;
    this.refreshLater(session, dueMs === 0 ? REFRESH_FLOOR_MS : dueMs);
  }
  refreshLater(session, delayMs) {
    clearTimeout(session.refreshTimer);
    session.refreshTimer = setTimeout(async () => {
      if (this.current !== session) return;
      let token;
      try {
        token = await this.fetchToken();
      } catch (error) {
        this.report(new PushError("refresh_failed", error.message));
        if (this.current === session) this.refreshLater(session, REFRESH_RETRY_MS);
        return;
      }
      if (this.current !== session) return;
      const seq = this.nextSeq();
      session.refreshSent = { seq, token };
      this.sendOn(session, seq, { op: "refresh", token });
    }, Math.min(delayMs, MAX_TIMER_MS));
  }
  // ---- plumbing ----
  live() {
    return this.stateNow === "connected" ? this.current : null;
  }
  // Sends on `session`; a failed send ends it (and says so).
  sendOn(session, seq, message) {
    try {
      session.transport.send(seq, message);
      return true;
    } catch (error) {
      session.finish({ code: "transport_closed", reason: `send: ${error.message}`, retryInMs: this.backoff.next() });
      return false;
    }
  }
  settle(seq, outcome) {
    const waiting = this.waiting.get(seq);
    if (!waiting) return;
    this.waiting.delete(seq);
    clearTimeout(waiting.timer);
    if (outcome instanceof PushError) waiting.reject(outcome);
    else waiting.resolve(outcome);
  }
  report(error) {
    this.emit("error", { error });
  }
  nextSeq() {
    this.seq = this.seq >= 4294967295 ? 1 : this.seq + 1;
    return this.seq;
  }
  // Whether the client has stopped (read afresh after each await).
  isStopped() {
    return this.stateNow === "closed";
  }
  setState(state) {
    this.stateNow = state;
  }
  sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, Math.min(ms, MAX_TIMER_MS));
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }
  // Stops for good: `close()`, a KICK, or a refused AUTH.
  stop(end) {
    if (this.stateNow === "closed") return;
    const session = this.current;
    this.stateNow = "closed";
    if (session) {
      this.flushAcks(session);
      session.finish(end);
    }
    clearTimeout(this.ackTimer);
    this.ackTimer = void 0;
    this.stopped.abort();
    this.opening?.close(1e3, "closed by the client");
    this.opening = null;
    for (const seq of [...this.waiting.keys()]) this.settle(seq, new PushError("closed", "the client was closed"));
    this.wake?.();
    const event = { code: end.code, reason: end.reason, reconnect: false };
    if (end.closeCode !== void 0) event.closeCode = end.closeCode;
    this.emit("disconnected", event);
  }
};
function connect(options) {
  return new PushClient(options);
}
export {
  Backoff,
  DecodeError,
  Dedup,
  OP,
  PushClient,
  PushError,
  SseParser,
  VERSION,
  connect,
  decodeBody,
  decodeFrame,
  decodeJson,
  encodeBody,
  encodeFrame,
  encodeJson,
  refreshInSecs,
  tokenExpiry,
  tokenStale
};
