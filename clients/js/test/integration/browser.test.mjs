// The SDK in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core,
// which downloads nothing): a test page on the center's origin loads the bundle the center
// serves (GET /push-client.js) and runs every delivery scenario over WebSocket, in binary
// protobuf frames, plus the drain. The harness runs on the center's own page (`GET /`).
// Node drives: it pushes through the API and waits on the events the page records.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { drainReconnect, scenarios, uid } from '../support/scenarios.mjs';
import { System, freePort, token } from '../support/system.mjs';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const FORMAT = (process.env.LONGLINK_JS_FORMATS ?? 'binary,json').split(',')[0];

// The harness the page runs: the SDK as the center serves it, and the recorder (inlined).
const recorder = readFileSync(new URL('../support/recorder.mjs', import.meta.url), 'utf8').replace('export class', 'class');
const harness = `import * as sdk from '/push-client.js';
${recorder}
window.clients = {};
window.start = (name, { blockedWebSocket, ...options }) => {
  if (blockedWebSocket) options.webSocketUrl = () => blockedWebSocket;
  const client = sdk.connect(options);
  window.clients[name] = { client, recorder: new Recorder(client) };
};
window.ready = true;`;

let browser;
let s;
const skip = !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM} (Debian: apt-get install chromium; scripts/test.sh does it)`;

before(async () => {
  if (skip) return;
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  s = await System.start();
});
after(async () => {
  await browser?.close();
  await s?.stop();
});

/** A fresh page on `system`'s center origin with the SDK loaded; `open` starts clients in it. */
async function pageOn(system, defaults = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  // The center's own page, so the document comes from a loopback address (Chromium's local
  // network access checks block a page from elsewhere reaching the room on 127.0.0.1).
  await page.goto(`${system.center}/`);
  await page.addScriptTag({ type: 'module', content: harness });
  await page.waitForFunction(() => window.ready === true, null, { timeout: 10_000 }).catch((e) => {
    throw new Error(`the page did not load the SDK from ${system.center}/push-client.js: ${errors.join('; ') || e.message}`);
  });
  let n = 0;
  const open = async (u, options = {}) => {
    const name = `c${++n}`;
    const base = { center: system.center, uid: u, token: token(u), backoffMinMs: 20, backoffMaxMs: 200, transport: 'websocket', format: FORMAT, ...defaults };
    await page.evaluate(([name, o]) => window.start(name, o), [name, { ...base, ...options }]);
    const call = (fn, ...args) => page.evaluate(fn, [name, ...args]);
    return {
      connected: () => call(([n]) => window.clients[n].recorder.next('connected')),
      message: (match) => call(([n, m]) => window.clients[n].recorder.next('message', m), match ?? {}),
      next: (type, match, ms) => call(([n, t, m, ms]) => window.clients[n].recorder.next(t, m, ms), type, match ?? {}, ms ?? 10_000),
      quiet: (ms) => call(([n, ms]) => window.clients[n].recorder.quiet(ms), ms),
      ack: (id) => call(([n, id]) => window.clients[n].client.ack(id), id),
      close: () => call(([n]) => window.clients[n].client.close()),
      upstream: (app, type, body) => call(([n, a, t, b]) => window.clients[n].client.upstream(a, t, b), app, type, body),
      subscribe: (apps) => call(([n, a]) => window.clients[n].client.subscribe(a), apps),
      state: () => call(([n]) => window.clients[n].client.state),
      transport: () => call(([n]) => window.clients[n].client.transport),
    };
  };
  open.done = async () => {
    await page.evaluate(() => Object.values(window.clients).forEach(({ client }) => client.close()));
    await context.close();
    assert.deepEqual(errors.map(String), [], 'no uncaught errors on the page');
  };
  return open;
}

describe(`chromium: websocket (${FORMAT})`, { skip }, () => {
  for (const [name, scenario] of Object.entries(scenarios)) {
    test(name, async () => {
      const open = await pageOn(s);
      try {
        await scenario(s, open);
      } finally {
        await open.done();
      }
    });
  }

  test('the page says which transport it is on', async () => {
    const open = await pageOn(s);
    try {
      const c = await open(uid('which'));
      const event = await c.connected();
      assert.equal(event.transport, 'websocket');
      assert.equal(await c.transport(), 'websocket');
    } finally {
      await open.done();
    }
  });

  test('a drained room\'s clients reconnect after the delay it gives', async () => {
    const own = await System.start();
    const open = await pageOn(own);
    try {
      await drainReconnect(own, open);
    } finally {
      await open.done();
      await own.stop();
    }
  });
});

describe('chromium: sse', { skip }, () => {
  let noSse = false;
  before(async () => {
    noSse = !(await s.servesSse());
  });
  const why = 'the room does not serve SSE yet (POST /sse answers 404/405/426): the SSE transport lands on branch `sse`';

  for (const [name, scenario] of Object.entries(scenarios)) {
    test(name, async (t) => {
      if (noSse) return t.skip(why);
      const open = await pageOn(s, { transport: 'sse' });
      try {
        await scenario(s, open);
      } finally {
        await open.done();
      }
    });
  }

  test('a WebSocket that cannot connect falls back to SSE', async (t) => {
    if (noSse) return t.skip(why);
    const open = await pageOn(s, { transport: 'auto', blockedWebSocket: `ws://127.0.0.1:${await freePort()}/` });
    try {
      const u = uid('fallback');
      const c = await open(u);
      const event = await c.connected();
      assert.equal(event.transport, 'sse');
      assert.equal(await c.transport(), 'sse');
      const id = await s.push('unicast', { uid: u, body: 'over sse in chromium' });
      assert.equal((await c.message({ id })).text, 'over sse in chromium');
    } finally {
      await open.done();
    }
  });
});
