// The delivery scenarios, driven through the center's HTTP API against the real binary and
// watched through an SDK client. Each takes the system `s` and `open(uid, options)`, which
// starts a client wherever this run puts it (Node over WebSocket or SSE, or a Chromium page)
// and returns a handle whose methods may all be awaited:
//   connected() message(match) next(type, match) quiet(ms) ack(id) close() upstream(...)
//   subscribe(apps) state() transport()
// Every scenario uses its own uids, so they share one system.

import assert from 'node:assert/strict';
import { sleep } from './system.mjs';

let n = 0;
/** A uid of its own for a run of a scenario. */
export const uid = (name) => `${name}-${process.pid}-${++n}`;

export const scenarios = {
  async unicast(s, open) {
    const u = uid('uni');
    const c = await open(u);
    await c.connected();
    await s.waitSessions(u, 1);
    const id = await s.push('unicast', { uid: u, body: 'hello' });
    const m = await c.message();
    assert.deepEqual([m.id, m.app, m.mode, m.text], [id, 'demo', 'at_least_once', 'hello']);
    await s.waitStatus(id, u, 'acked');
    await c.close();
  },

  async offline_then_connect(s, open) {
    const u = uid('late');
    const id = await s.push('unicast', { uid: u, body: 'waiting for you' });
    assert.equal((await s.recipient(id, u)).status, 'stored');
    const c = await open(u);
    const m = await c.message();
    assert.deepEqual([m.id, m.text], [id, 'waiting for you']);
    await s.waitStatus(id, u, 'acked');
    await c.close();
  },

  async redelivery_until_ack(s, open) {
    const u = uid('redo');
    const first = await open(u, { ack: 'manual' });
    await first.connected();
    await s.waitSessions(u, 1);
    const id = await s.push('unicast', { uid: u, body: 'ack me' });
    assert.equal((await first.message()).id, id);
    await s.waitStatus(id, u, 'delivered');
    await first.close();
    await s.waitSessions(u, 0);

    // Not ACKed: it comes again on the next connection.
    const second = await open(u, { ack: 'manual' });
    assert.equal((await second.message()).id, id);
    await second.ack(id);
    await s.waitStatus(id, u, 'acked');
    await second.close();
    await s.waitSessions(u, 0);

    // ACKed: never again.
    const third = await open(u);
    await third.connected();
    await third.quiet(500);
    await third.close();
  },

  async at_most_once(s, open) {
    const u = uid('amo');
    const c = await open(u);
    await c.connected();
    await s.waitSessions(u, 1);
    const id = await s.push('unicast', { uid: u, body: 'typing…', mode: 'at_most_once' });
    const m = await c.message();
    assert.deepEqual([m.id, m.mode, m.text], [id, 'at_most_once', 'typing…']);
    // Not stored: no record, and a user who was offline never gets it.
    assert.equal((await s.request('GET', `/messages/${id}`)).status, 404);
    const offline = uid('amo-off');
    await s.push('unicast', { uid: offline, body: 'lost', mode: 'at_most_once' });
    const late = await open(offline);
    await late.connected();
    await late.quiet(300);
    await c.close();
    await late.close();
  },

  async notify_pull(s, open) {
    const u = uid('pull');
    const c = await open(u);
    await c.connected();
    await s.waitSessions(u, 1);
    const big = 'x'.repeat(10_000);
    const id = await s.push('unicast', { uid: u, body: big, mode: 'notify' });
    const m = await c.message();
    assert.deepEqual([m.id, m.mode, m.text.length], [id, 'notify', big.length]);
    assert.equal(m.text, big);
    await s.waitStatus(id, u, 'acked');
    await c.close();
    // With `notify: 'id'`, the client hands over the key itself.
    const keyOnly = await open(u, { notify: 'id' });
    await keyOnly.connected();
    const id2 = await s.push('unicast', { uid: u, body: 'pull me', mode: 'notify' });
    const k = await keyOnly.message();
    assert.deepEqual([k.id, k.text], [id2, String(id2)]);
    await keyOnly.close();
  },

  async multicast(s, open) {
    const [a, b] = [uid('mc-a'), uid('mc-b')];
    const ca = await open(a);
    const cb = await open(b);
    await ca.connected();
    await cb.connected();
    await s.waitSessions(a, 1);
    await s.waitSessions(b, 1);
    const id = await s.push('multicast', { uids: [a, b], body: 'to both' });
    assert.equal((await ca.message()).id, id);
    assert.equal((await cb.message()).id, id);
    await s.waitStatus(id, a, 'acked');
    await s.waitStatus(id, b, 'acked');
    await ca.quiet(200);
    await ca.close();
    await cb.close();
  },

  async group(s, open) {
    const [a, b, out] = [uid('g-a'), uid('g-b'), uid('g-out')];
    const group = uid('team');
    const bind = await s.request('POST', `/groups/${group}/bind`, { uids: [a, b] });
    assert.equal(bind.status, 200, JSON.stringify(bind.json));
    const clients = [];
    for (const u of [a, b, out]) {
      const c = await open(u);
      await c.connected();
      await s.waitSessions(u, 1);
      clients.push(c);
    }
    const id = await s.push('group', { group, body: 'team news' });
    assert.equal((await clients[0].message()).text, 'team news');
    assert.equal((await clients[1].message()).id, id);
    await clients[2].quiet(300);
    for (const c of clients) await c.close();
  },

  async broadcast(s, open) {
    const [a, b, other] = [uid('bc-a'), uid('bc-b'), uid('bc-other')];
    const ca = await open(a);
    const cb = await open(b);
    const co = await open(other, { apps: ['other'] });
    for (const [u, c] of [[a, ca], [b, cb], [other, co]]) {
      await c.connected();
      if (u !== other) await s.waitSessions(u, 1);
    }
    await sleep(100);
    const id = await s.push('broadcast', { body: 'everyone online' });
    assert.equal((await ca.message({ id })).text, 'everyone online');
    assert.equal((await cb.message({ id })).text, 'everyone online');
    await s.waitStatus(id, a, 'acked');
    // A connection that receives only another app does not get demo's broadcast.
    await co.quiet(300);
    for (const c of [ca, cb, co]) await c.close();
  },

  async kick(s, open) {
    const u = uid('kick');
    const c = await open(u);
    await c.connected();
    await s.waitSessions(u, 1);
    const kicked = await s.request('POST', `/users/${u}/kick`, { reason: 'account suspended' });
    assert.equal(kicked.status, 200, JSON.stringify(kicked.json));
    const end = await c.next('disconnected', { code: 'kicked' });
    assert.equal(end.reason, 'account suspended');
    assert.equal(end.reconnect, false);
    assert.equal(await c.state(), 'closed');
    // Stopped for good: nothing reconnects.
    await sleep(300);
    assert.equal((await s.request('GET', `/users/${u}`)).json.sessions.length, 0);
  },

  async upstream_and_subscribe(s, open) {
    const u = uid('up');
    const c = await open(u);
    await c.connected();
    await s.waitSessions(u, 1);
    // No webhook configured: the room answers, refusing, with the request's seq.
    const reply = await c.upstream('demo', 'chat', 'hi server');
    assert.equal(reply.ok, false);
    assert.equal(typeof reply.reason, 'string');
    // Subscribing another app on the live connection: its messages come too.
    await c.subscribe(['other']);
    await sleep(200);
    const { status, json } = await s.request('POST', '/push/unicast', { uid: u, body: 'from other' }, 'other-key-0123456789abcdef');
    assert.equal(status, 200, JSON.stringify(json));
    const m = await c.message({ app: 'other' });
    assert.equal(m.text, 'from other');
    await c.close();
  },
};

/**
 * The drain: the room tells its clients to RECONNECT (the process is stopped with Ctrl-C),
 * the client waits the delay it was given and comes back to the restarted system (same
 * ports, same store). A message it had not ACKed comes again, and its dedup window reports
 * it as a duplicate instead of handing it over twice; what is pushed next arrives. Needs a
 * system of its own (it restarts it).
 */
export async function drainReconnect(s, open) {
  const u = uid('drain');
  const c = await open(u, { ack: 'manual' });
  await c.connected();
  await s.waitSessions(u, 1);
  const before = await s.push('unicast', { uid: u, body: 'before the drain' });
  assert.equal((await c.message({ id: before })).text, 'before the drain');
  await s.waitStatus(before, u, 'delivered');
  const stopping = s.drain();
  const end = await c.next('disconnected', { code: 'reconnect' });
  assert.equal(end.reconnect, true);
  assert.ok(end.retryInMs >= 0 && end.retryInMs <= 5_000, `retry in ${end.retryInMs} ms`);
  await stopping;
  await s.run();
  const again = await c.next('connected', {}, 20_000);
  assert.ok(again.room);
  // Redelivered (not ACKed), dropped as a duplicate; ACKed now, it is recorded.
  await c.next('duplicate', { id: before });
  await c.ack(before);
  await s.waitStatus(before, u, 'acked');
  await s.waitSessions(u, 1);
  const id = await s.push('unicast', { uid: u, body: 'after the drain' });
  assert.equal((await c.message({ id })).text, 'after the drain');
  await c.close();
}
