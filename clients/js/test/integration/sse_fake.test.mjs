// The SSE transport against a small stand-in room written to the transport's spec (the
// real room's SSE lands separately; node.test.mjs runs the same scenarios against it once
// it does). The stand-in is also the dispatcher, and answers WebSocket upgrades by closing
// the socket, so a client on `transport: 'auto'` falls back to SSE by itself.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { connect } from '../../dist/index.js';
import { Recorder } from '../support/recorder.mjs';

class FakeRoom {
  constructor() {
    this.sessions = new Map();
    this.posted = [];
    this.dispatches = [];
    this.busyOnce = false;
    this.next = 0;
    this.server = createServer((req, res) => this.handle(req, res));
    this.server.on('upgrade', (_req, socket) => socket.destroy());
  }

  listen() {
    return new Promise((ok) => this.server.listen(0, '127.0.0.1', () => ok(this.server.address().port)));
  }

  async handle(req, res) {
    const url = new URL(req.url, 'http://x');
    let body = '';
    for await (const chunk of req) body += chunk;
    if (req.method === 'GET' && url.pathname === '/dispatch') {
      this.dispatches.push(url.searchParams.get('failed'));
      const port = this.server.address().port;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ uid: url.searchParams.get('uid'), net: url.searchParams.get('net'), heartbeat_secs: 1, rooms: [{ name: 'fake', ws: `ws://127.0.0.1:${port}/`, tcp: `127.0.0.1:${port}` }] }));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/sse') {
      assert.match(req.headers['content-type'], /^text\/plain/);
      const auth = JSON.parse(body);
      assert.equal(auth.op, 'auth');
      if (auth.token === 'draining') {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ seq: auth.seq, op: 'auth_reply', ok: false, reason: 'the room is draining', heartbeat_secs: 0, session: null }));
        return;
      }
      if (auth.token === 'bad') {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ seq: auth.seq, op: 'auth_reply', ok: false, reason: 'bad token signature', heartbeat_secs: 0, session: null }));
        return;
      }
      const session = `fake:${++this.next}`;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
      this.sessions.set(session, { res, auth });
      res.write(`: welcome\n\ndata: ${JSON.stringify({ seq: auth.seq, op: 'auth_reply', ok: true, reason: null, heartbeat_secs: 1, session })}\n\n`);
      req.on('close', () => this.sessions.delete(session));
      return;
    }
    const m = /^\/sse\/(.+)$/.exec(url.pathname);
    if (req.method === 'POST' && m) {
      const session = this.sessions.get(decodeURIComponent(m[1]));
      if (!session) {
        res.writeHead(404).end('{"error":{"code":"not_found","message":"no such session"}}');
        return;
      }
      if (this.busyOnce) {
        this.busyOnce = false;
        res.writeHead(429).end('busy');
        return;
      }
      const message = JSON.parse(body);
      this.posted.push(message);
      res.writeHead(202).end();
      if (message.op === 'heartbeat') this.send(session, { seq: message.seq, op: 'heartbeat_reply' });
      if (message.op === 'upstream') this.send(session, { seq: message.seq, op: 'upstream_reply', ok: true, reason: null });
      return;
    }
    res.writeHead(404).end();
  }

  send(session, message) {
    // Split in two writes, to cross a chunk boundary inside the event.
    const text = `data: ${JSON.stringify(message)}\n\n`;
    session.res.write(text.slice(0, 7));
    session.res.write(text.slice(7));
  }

  only() {
    assert.equal(this.sessions.size, 1);
    return [...this.sessions.values()][0];
  }

  /** Ends every stream (the room forgets the sessions). */
  drop() {
    for (const { res } of this.sessions.values()) res.end();
    this.sessions.clear();
  }
}

let room;
let center;
before(async () => {
  room = new FakeRoom();
  center = `http://127.0.0.1:${await room.listen()}`;
});
after(() => {
  room.drop();
  room.server.close();
});

const until = async (what, check) => {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

test('auto: the WebSocket is refused, the client falls back to SSE and says so; messages, ACKs, upstream, heartbeats flow', async () => {
  const client = connect({ center, uid: 'u1', token: 't', backoffMinMs: 10, backoffMaxMs: 50, ackDelayMs: 0 });
  const r = new Recorder(client);
  try {
    const connected = await r.next('connected');
    assert.deepEqual([connected.transport, connected.session, client.transport], ['sse', 'fake:1', 'sse']);
    assert.equal(room.only().auth.uid, 'u1');
    room.send(room.only(), { seq: 0, op: 'message', id: 41, app: 'demo', mode: 'at_least_once', body: 'over sse' });
    room.send(room.only(), { seq: 0, op: 'message', id: 42, app: 'demo', mode: 'at_least_once', body: { base64: 'AP8=' } });
    assert.equal((await r.next('message', { id: 41 })).text, 'over sse');
    await r.next('message', { id: 42 });
    await until('the ACKs', () => room.posted.filter((m) => m.op === 'ack').flatMap((m) => m.ids).length === 2);
    // A redelivered id is not handed over again, and is ACKed again.
    room.send(room.only(), { seq: 0, op: 'message', id: 41, app: 'demo', mode: 'at_least_once', body: 'over sse' });
    await r.next('duplicate', { id: 41 });
    // Upstream: the reply comes down the stream with the request's seq; a 429 is retried.
    room.busyOnce = true;
    const reply = await client.upstream('demo', 'chat', 'hi');
    assert.deepEqual(reply, { ok: true, reason: null });
    const sent = room.posted.find((m) => m.op === 'upstream');
    assert.deepEqual([sent.app, sent.type, sent.body], ['demo', 'chat', 'hi']);
    // The heartbeat the room asked for (1 s).
    await until('a heartbeat', () => room.posted.some((m) => m.op === 'heartbeat'));
    assert.equal(r.all('disconnected').length, 0);
  } finally {
    client.close();
  }
});

test('sse: a session the room no longer knows (stream ended, 404) means reconnect', async () => {
  room.drop();
  const client = connect({ center, uid: 'u2', token: 't', transport: 'sse', backoffMinMs: 10, backoffMaxMs: 50 });
  const r = new Recorder(client);
  try {
    await r.next('connected');
    room.drop();
    const end = await r.next('disconnected');
    assert.equal(end.code, 'transport_closed');
    assert.equal(end.reconnect, true);
    const again = await r.next('connected');
    assert.equal(again.transport, 'sse');
  } finally {
    client.close();
  }
});

test('sse: a refused AUTH (401 with the auth_reply) stops the client with the room\'s reason', async () => {
  room.drop();
  const client = connect({ center, uid: 'u3', token: 'bad', transport: 'sse' });
  const r = new Recorder(client);
  const end = await r.next('disconnected');
  assert.deepEqual([end.code, end.reason, end.reconnect, client.state], ['auth_refused', 'bad token signature', false, 'closed']);
});

test('sse: a draining room\'s 503 (with an auth_reply) is a failed attempt, tried again, not a refusal', async () => {
  const client = connect({ center, uid: 'u5', token: 'draining', transport: 'sse', backoffMinMs: 10, backoffMaxMs: 20 });
  const r = new Recorder(client);
  try {
    const end = await r.next('disconnected');
    assert.deepEqual([end.code, end.reconnect, end.closeCode], ['connect_failed', true, 503]);
    assert.match(end.reason, /503: the room is draining/);
    await r.next('connecting', { code: 'connect_failed' });
  } finally {
    client.close();
  }
});

test('websocket only: the refused address is named in failed= at the next dispatch', async () => {
  room.dispatches.length = 0;
  const client = connect({ center, uid: 'u4', token: 't', transport: 'websocket', backoffMinMs: 10, backoffMaxMs: 20, WebSocket: globalThis.WebSocket });
  const r = new Recorder(client);
  try {
    await r.next('disconnected', { code: 'connect_failed' });
    await until('a second dispatch', () => room.dispatches.length >= 2);
    const port = new URL(center).port;
    assert.deepEqual(room.dispatches.slice(0, 2), ['', `ws://127.0.0.1:${port}/`]);
  } finally {
    client.close();
  }
});
