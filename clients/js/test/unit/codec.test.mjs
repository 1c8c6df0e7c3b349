// The protobuf frames and the JSON form: the test vectors of docs/protocol.md, hand-made
// ver 2 frames, proto3's reading rules (unknown fields skipped, unpacked ids, last scalar
// wins) and refusals (wrong wire types, bad lengths, other versions).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { decodeBody, decodeFrame, decodeJson, encodeBody, encodeFrame, encodeJson } from '../../dist/index.js';

const hex = (s) => Uint8Array.from(s.trim().split(/\s+/).map((b) => parseInt(b, 16)));
const toHex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
const utf8 = (s) => new TextEncoder().encode(s);
const TOKEN = 'dTE.1767225600.ZZYWXZD701wJPLbBB0WaufvUbLjTrSTAupgxkFFNyK0';

/** The `vector` blocks of docs/protocol.md: name, binary bytes, JSON text. */
function docVectors() {
  const doc = readFileSync(new URL('../../../../docs/protocol.md', import.meta.url), 'utf8');
  const out = [];
  const re = /^vector (\w+)\nbinary: ([0-9a-f ]+)\njson: (.+)$/gm;
  for (const m of doc.matchAll(re)) out.push({ name: m[1], binary: hex(m[2]), json: m[3] });
  return out;
}

test('every test vector of docs/protocol.md: both forms are the same message, and encode to those bytes', () => {
  const vectors = docVectors();
  assert.ok(vectors.length >= 6, `found ${vectors.length} vectors`);
  for (const v of vectors) {
    const [fromJson] = decodeJson(v.json);
    assert.equal(fromJson.message.op, v.name);
    // The JSON form re-encodes to the same object.
    assert.deepEqual(JSON.parse(encodeJson(fromJson.seq, fromJson.message)), JSON.parse(v.json));
    assert.equal((v.binary[6] << 8) | v.binary[7], 2, `vector ${v.name}: frame version`);
    const [fromBinary] = decodeFrame(v.binary);
    assert.deepEqual(fromBinary, fromJson, v.name);
    assert.equal(toHex(encodeFrame(fromJson.seq, fromJson.message)), toHex(v.binary), v.name);
  }
});

// ver 2 frames worked out by hand from proto/push.proto (fields in number order, proto3
// defaults left out, ids packed).
const FRAMES = [
  {
    json: `{"seq":1,"op":"auth","uid":"u1","device":"phone","net":"4g","token":"${TOKEN}","apps":["demo"]}`,
    binary: `00 00 00 5f 00 10 00 02 00 00 00 01 00 00 00 01 0a 02 75 31 12 05 70 68 6f 6e 65 18 03 22 3a ${toHex(utf8(TOKEN))} 2a 04 64 65 6d 6f`,
  },
  {
    json: '{"seq":1,"op":"auth_reply","ok":true,"reason":null,"heartbeat_secs":360,"session":"room-1:7"}',
    binary: '00 00 00 1f 00 10 00 02 00 00 00 02 00 00 00 01 08 01 18 e8 02 22 08 72 6f 6f 6d 2d 31 3a 37',
  },
  {
    json: '{"seq":0,"op":"message","id":29093071931392,"app":"demo","mode":"at_least_once","body":"hello"}',
    binary: '00 00 00 25 00 10 00 02 00 00 00 05 00 00 00 00 08 80 90 df 91 dc ce 06 12 04 64 65 6d 6f 22 05 68 65 6c 6c 6f',
  },
  {
    json: '{"seq":0,"op":"message","id":29093071931393,"app":"demo","mode":"notify","body":"29093071931393"}',
    binary: '00 00 00 30 00 10 00 02 00 00 00 05 00 00 00 00 08 81 90 df 91 dc ce 06 12 04 64 65 6d 6f 18 02 22 0e 32 39 30 39 33 30 37 31 39 33 31 33 39 33',
  },
  {
    json: '{"seq":2,"op":"ack","ids":[29093071931392,29093071931393]}',
    binary: '00 00 00 20 00 10 00 02 00 00 00 06 00 00 00 02 0a 0e 80 90 df 91 dc ce 06 81 90 df 91 dc ce 06',
  },
  {
    json: '{"seq":3,"op":"error","code":429,"reason":"slow down"}',
    binary: '00 00 00 1e 00 10 00 02 00 00 00 0d 00 00 00 03 08 ad 03 12 09 73 6c 6f 77 20 64 6f 77 6e',
  },
  { json: '{"seq":4,"op":"heartbeat"}', binary: '00 00 00 10 00 10 00 02 00 00 00 03 00 00 00 04' },
  {
    json: '{"seq":5,"op":"reconnect","reason":"drain","after_ms":1500}',
    binary: '00 00 00 1a 00 10 00 02 00 00 00 0c 00 00 00 05 0a 05 64 72 61 69 6e 10 dc 0b',
  },
];

test('hand-made ver 2 frames decode to their JSON twins and encode back byte for byte', () => {
  for (const { json, binary } of FRAMES) {
    const bytes = hex(binary);
    const [fromJson] = decodeJson(json);
    assert.deepEqual(decodeFrame(bytes), [fromJson], json);
    assert.equal(toHex(encodeFrame(fromJson.seq, fromJson.message)), toHex(bytes), json);
  }
});

test('every message survives binary and JSON round trips, non-UTF-8 bodies as base64', () => {
  const messages = [
    { op: 'auth', uid: 'ü', device: '', net: '2g', token: 't', apps: [] },
    { op: 'auth_reply', ok: false, reason: '', heartbeat_secs: 0, session: null },
    { op: 'heartbeat_reply' },
    { op: 'message', id: 2 ** 53 - 1, app: 'a', mode: 'at_most_once', body: Uint8Array.of(0, 0xff, 1) },
    { op: 'ack', ids: [] },
    { op: 'subscribe', apps: ['a', 'b'] },
    { op: 'unsubscribe', apps: ['a'] },
    { op: 'upstream', app: 'demo', type: 'chat', body: utf8('hi') },
    { op: 'upstream_reply', ok: true, reason: null },
    { op: 'kick', reason: 'bye' },
    { op: 'refresh', token: 'new' },
  ];
  for (const message of messages) {
    assert.deepEqual(decodeFrame(encodeFrame(7, message)), [{ seq: 7, message }], message.op);
    assert.deepEqual(decodeJson(encodeJson(7, message)), [{ seq: 7, message }], message.op);
  }
  assert.match(encodeJson(0, messages[3]), /"body":\{"base64":"AP8B"\}/);
  // An optional string set to "" is written (present), unlike a plain empty string.
  assert.equal(toHex(encodeBody(messages[1])), '12 00');
});

test('unknown fields of every wire type are skipped; ids are read packed and unpacked; the last scalar wins', () => {
  const message = hex('08 05 12 04 64 65 6d 6f 22 02 68 69');
  const extra = hex('f8 06 01 fa 06 02 68 69 fd 06 01 02 03 04 f9 06 01 02 03 04 05 06 07 08');
  const body = new Uint8Array([...message, ...extra]);
  assert.deepEqual(decodeBody('message', body), { op: 'message', id: 5, app: 'demo', mode: 'at_least_once', body: utf8('hi') });
  assert.deepEqual(decodeBody('ack', hex('08 05 0a 02 06 07 08 08')), { op: 'ack', ids: [5, 6, 7, 8] });
  assert.equal(decodeBody('message', new Uint8Array([...message, 0x08, 0x02])).id, 2);
  // An empty body is every field at its default.
  assert.deepEqual(decodeBody('kick', new Uint8Array()), { op: 'kick', reason: '' });
});

test('bad bodies are refused: wrong wire types, lengths past the end, bad varints, unknown enums, groups', () => {
  const cases = [
    ['auth', '0a 02 ff fe', /not UTF-8/],
    ['auth', '0a 01 75', /unknown network type 0/],
    ['auth', '18 09', /unknown network type 9/],
    ['message', '18 03', /unknown delivery mode 3/],
    ['message', '0a 01 00', /message.id: wire type 2/],
    ['message', '12 05 64', /length past the end/],
    ['ack', '0a 01 80', /truncated varint/],
    ['ack', '0d 01 02 03 04', /ack.ids: wire type 5/],
    ['error', '08 80 80 04', /above 65535/],
    ['reconnect', '10 80 80 80 80 10', /above 2\^32/],
    ['kick', '0a 09 78', /length past the end/],
    ['subscribe', '0b', /wire type 3/],
    ['message', '08 ff ff ff ff ff ff ff ff ff 01', /above 2\^53/],
    ['message', '08 ff ff ff ff ff ff ff ff ff ff 01', /longer than 10 bytes/],
  ];
  for (const [op, bytes, error] of cases) {
    assert.throws(() => decodeBody(op, hex(bytes)), error, `${op} ${bytes}`);
  }
});

test('frames are refused for another version, a short or overlong length, an unknown op, extra bytes', () => {
  const good = hex('00 00 00 10 00 10 00 02 00 00 00 03 00 00 00 04');
  assert.equal(decodeFrame(good).length, 1);
  const cases = [
    ['00 00 00 10 00 10 00 01 00 00 00 03 00 00 00 04', /version 1/],
    ['00 00 00 11 00 10 00 02 00 00 00 03 00 00 00 04', /17 bytes, 16 present/],
    ['00 00 00 10 00 0f 00 02 00 00 00 03 00 00 00 04', /header length 15/],
    ['00 00 00 10 00 10 00 02 00 00 00 63 00 00 00 04', /unknown op 99/],
    ['00 00 00 10 00 10 00 02 00 00 00 03 00 00 00 04 00', /1 bytes after the frame/],
    ['00 00 00 10 00 10 00 02 00 00', /shorter than its header/],
  ];
  for (const [bytes, error] of cases) assert.throws(() => decodeFrame(hex(bytes)), error, bytes);
  assert.throws(() => decodeFrame(good, 15), /exceeds limit 15/);
  // A longer header is accepted, its extra bytes skipped.
  assert.deepEqual(decodeFrame(hex('00 00 00 12 00 12 00 02 00 00 00 03 00 00 00 04 aa bb')), [{ seq: 4, message: { op: 'heartbeat' } }]);
});

test('a BATCH frame carries several frames; a batch in a batch is refused', () => {
  const a = encodeFrame(0, { op: 'kick', reason: 'x' });
  const b = encodeFrame(9, { op: 'heartbeat_reply' });
  const batch = (body) => {
    const f = new Uint8Array(16 + body.length);
    const v = new DataView(f.buffer);
    v.setUint32(0, f.length);
    v.setUint16(4, 16);
    v.setUint16(6, 2);
    v.setUint32(8, 14);
    f.set(body, 16);
    return f;
  };
  const inner = batch(new Uint8Array([...a, ...b]));
  assert.deepEqual(decodeFrame(inner).map((m) => [m.seq, m.message.op]), [[0, 'kick'], [9, 'heartbeat_reply']]);
  assert.throws(() => decodeFrame(batch(inner)), /batch inside a batch/);
});

test('the JSON form takes defaults for missing optional fields, ignores unknown ones, refuses bad ones', () => {
  assert.deepEqual(decodeJson('{"op":"auth_reply","ok":true,"extra":1}'), [
    { seq: 0, message: { op: 'auth_reply', ok: true, reason: null, heartbeat_secs: 0, session: null } },
  ]);
  assert.deepEqual(decodeJson('{"op":"message","id":1,"app":"a","body":{"base64":"AP8="}}')[0].message.body, Uint8Array.of(0, 0xff));
  for (const bad of ['[1', '{"op":"nope"}', '{"op":"message","id":-1,"app":"a","body":""}', '{"op":"kick"}', '{"op":"message","id":1,"app":"a","mode":"often","body":""}']) {
    assert.throws(() => decodeJson(bad), /./, bad);
  }
});
