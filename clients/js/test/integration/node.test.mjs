// The SDK in Node against the real `longlink-push all`: every delivery scenario over
// WebSocket (binary protobuf frames and JSON), over the SSE transport (forced), the
// fallback from a WebSocket that cannot connect to SSE, the drain, and token refresh.
// Node 20 has no global WebSocket without --experimental-websocket (npm test passes it).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { connect } from '../../dist/index.js';
import { Recorder } from '../support/recorder.mjs';
import { drainReconnect, scenarios, uid } from '../support/scenarios.mjs';
import { System, freePort, token } from '../support/system.mjs';

/** The WebSocket forms the integration tests run in; `binary` is the default. */
const FORMATS = (process.env.LONGLINK_JS_FORMATS ?? 'binary,json').split(',');

/** Starts SDK clients in this process; every one is closed after its test. */
function opener(s, base) {
  const clients = new Set();
  const open = async (u, options = {}) => {
    const client = connect({
      center: s.center,
      uid: u,
      token: token(u),
      backoffMinMs: 20,
      backoffMaxMs: 200,
      format: FORMATS[0],
      ...base,
      ...options,
    });
    clients.add(client);
    const r = new Recorder(client);
    return {
      client,
      recorder: r,
      connected: () => r.next('connected'),
      message: (match) => r.next('message', match),
      next: (type, match, ms) => r.next(type, match, ms),
      quiet: (ms) => r.quiet(ms),
      ack: (id) => client.ack(id),
      close: () => client.close(),
      upstream: (...args) => client.upstream(...args),
      subscribe: (apps) => client.subscribe(apps),
      state: () => client.state,
      transport: () => client.transport,
    };
  };
  open.closeAll = () => {
    for (const c of clients) c.close();
    clients.clear();
  };
  return open;
}

let s;
before(async () => {
  s = await System.start();
});
after(async () => {
  await s?.stop();
});

for (const format of FORMATS) {
  describe(`websocket (${format})`, () => {
    for (const [name, scenario] of Object.entries(scenarios)) {
      test(name, async () => {
        const open = opener(s, { transport: 'websocket', format });
        try {
          await scenario(s, open);
        } finally {
          open.closeAll();
        }
      });
    }

    test('the connected event and client.transport say websocket', async () => {
      const open = opener(s, { transport: 'websocket', format });
      try {
        const c = await open(uid('which'));
        const event = await c.connected();
        assert.equal(event.transport, 'websocket');
        assert.equal(c.transport(), 'websocket');
        assert.match(event.session, /:/);
        assert.equal(event.heartbeatSecs, 3);
      } finally {
        open.closeAll();
      }
    });
  });
}

describe('sse', () => {
  let skip = false;
  before(async () => {
    skip = !(await s.servesSse());
  });
  const why = 'the room does not serve SSE yet (POST /sse answers 404/405/426): the SSE transport lands on branch `sse`';

  for (const [name, scenario] of Object.entries(scenarios)) {
    test(name, async (t) => {
      if (skip) return t.skip(why);
      const open = opener(s, { transport: 'sse' });
      try {
        await scenario(s, open);
      } finally {
        open.closeAll();
      }
    });
  }

  test('a WebSocket that cannot connect falls back to SSE', async (t) => {
    if (skip) return t.skip(why);
    const refused = await freePort(); // nothing listens there
    const open = opener(s, { webSocketUrl: () => `ws://127.0.0.1:${refused}/` });
    try {
      const u = uid('fallback');
      const c = await open(u);
      const event = await c.connected();
      assert.equal(event.transport, 'sse');
      assert.equal(c.transport(), 'sse');
      assert.equal(c.recorder.all('disconnected').length, 0, 'the fallback happens within the attempt');
      await s.waitSessions(u, 1);
      const id = await s.push('unicast', { uid: u, body: 'over sse' });
      assert.equal((await c.message({ id })).text, 'over sse');
      await s.waitStatus(id, u, 'acked');
    } finally {
      open.closeAll();
    }
  });
});

test('without SSE in the room, a WebSocket that cannot connect keeps retrying and says why', async () => {
  const refused = await freePort();
  const open = opener(s, { webSocketUrl: () => `ws://127.0.0.1:${refused}/`, transport: 'websocket' });
  try {
    const c = await open(uid('refused'));
    const end = await c.next('disconnected', { code: 'connect_failed' });
    assert.equal(end.reconnect, true);
    assert.match(end.reason, /websocket ws:\/\/127\.0\.0\.1/);
    await c.next('connecting', { code: 'connect_failed' });
  } finally {
    open.closeAll();
  }
});

test('a token about to expire is refreshed on the live connection (REFRESH)', async () => {
  const open = opener(s, { transport: 'websocket' });
  try {
    const u = uid('refresh');
    let asked = 0;
    // Valid 8 s: the refresh is due 5 s before the end, 3 s from now.
    const c = await open(u, {
      token: token(u, 8),
      getToken: () => {
        asked++;
        return token(u, 600);
      },
    });
    const first = await c.connected();
    const refreshed = await c.next('refreshed', {}, 10_000);
    assert.ok(refreshed.expiresAt > Date.now() / 1000 + 500);
    assert.equal(asked, 1);
    // Still the same connection: no second connected event.
    assert.equal(c.recorder.all('connected').length, 1);
    assert.equal(first.transport, 'websocket');
  } finally {
    open.closeAll();
  }
});

test('a refused AUTH stops the client and says why', async () => {
  const open = opener(s, { transport: 'websocket' });
  try {
    const u = uid('bad');
    const c = await open(u, { token: token('someone-else') });
    const end = await c.next('disconnected', { code: 'auth_refused' });
    assert.equal(end.reconnect, false);
    assert.match(end.reason, /another user/);
    assert.equal(c.state(), 'closed');
  } finally {
    open.closeAll();
  }
});

test('ready() resolves once connected, and rejects once the client has stopped', async () => {
  const u = uid('ready');
  const client = connect({ center: s.center, uid: u, token: token(u), format: FORMATS[0] });
  try {
    const event = await client.ready();
    assert.equal(event.transport, 'websocket');
    assert.equal(client.state, 'connected');
    await client.ready(); // at once
  } finally {
    client.close();
  }
  await assert.rejects(client.ready(), { code: 'closed' });
  const refused = connect({ center: s.center, uid: u, token: token('not-me'), format: FORMATS[0] });
  await assert.rejects(refused.ready(), /another user/);
});

test('upstream while not connected is refused at once, nothing sent', async () => {
  const client = connect({ center: 'http://127.0.0.1:1', uid: 'nobody', token: 'x', backoffMinMs: 1000 });
  try {
    await assert.rejects(client.upstream('demo', 'chat', 'hi'), { code: 'not_connected' });
  } finally {
    client.close();
  }
});

describe('drain', () => {
  for (const format of FORMATS) {
    test(`a drained room's clients reconnect after the delay it gives (websocket ${format})`, async () => {
      const own = await System.start();
      const open = opener(own, { transport: 'websocket', format });
      try {
        await drainReconnect(own, open);
      } finally {
        open.closeAll();
        await own.stop();
      }
    });
  }

  test('a drained room\'s clients reconnect after the delay it gives (sse)', async (t) => {
    const own = await System.start();
    const open = opener(own, { transport: 'sse' });
    try {
      if (!(await own.servesSse())) return t.skip('the room does not serve SSE yet (POST /sse answers 404/405/426)');
      await drainReconnect(own, open);
    } finally {
      open.closeAll();
      await own.stop();
    }
  });
});
