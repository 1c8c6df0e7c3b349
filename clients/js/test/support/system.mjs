// The real `longlink-push all` for the integration tests: a temporary data dir and config
// on free local ports, two apps with known keys, a known token secret (tokens are made
// here with node:crypto), 3 s heartbeats. The binary is LONGLINK_PUSH_BIN, by default the
// workspace's debug build (`cargo build -p longlink-push --bin longlink-push`).

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../../..');

export const KEY = 'demo-key-0123456789abcdef';
export const OTHER_KEY = 'other-key-0123456789abcdef';
export const SECRET = 'js-test-secret-0123456789abcdef0123456789abcdef';
/** Long enough for a loaded CI machine, short enough to fail fast. */
export const WAIT_MS = 10_000;

/** The binary the tests run. */
export function binary() {
  if (process.env.LONGLINK_PUSH_BIN) return process.env.LONGLINK_PUSH_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
  return join(target, 'debug', 'longlink-push');
}

/** A free port on 127.0.0.1 (closed again; the system binds it right after). */
export function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.unref();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

const b64 = (data) => Buffer.from(data).toString('base64url');

/** An HMAC token for `uid`, valid `ttlSecs` from now (docs/protocol.md#tokens). */
export function token(uid, ttlSecs = 600, secret = SECRET) {
  const head = `${b64(uid)}.${Math.floor(Date.now() / 1000) + ttlSecs}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` (async, truthy = done) until it is, or fails after WAIT_MS with `what`. */
export async function until(what, check, waitMs = WAIT_MS) {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await sleep(25);
  }
}

/** A running `longlink-push all`. */
export class System {
  static async start({ tweak = '' } = {}) {
    const bin = binary();
    if (!existsSync(bin)) {
      throw new Error(`no ${bin}: build it with \`cargo build -p longlink-push --bin longlink-push\` or set LONGLINK_PUSH_BIN`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'longlink-js-'));
    const [http, ws, tcp] = [await freePort(), await freePort(), await freePort()];
    const config = `data_dir = ${JSON.stringify(join(dir, 'data'))}
http_listen = "127.0.0.1:${http}"
token_secret = "${SECRET}"
dev_page = true
${tweak}
[[apps]]
name = "demo"
api_key = "${KEY}"

[[apps]]
name = "other"
api_key = "${OTHER_KEY}"

[room]
ws_listen = "127.0.0.1:${ws}"
tcp_listen = "127.0.0.1:${tcp}"
tick_ms = 50
heartbeats = { 2g = 3, 3g = 3, 4g = 3, 5g = 3, wifi = 3 }
`;
    writeFileSync(join(dir, 'config.toml'), config);
    const system = new System(bin, dir, { http, ws, tcp });
    await system.run();
    return system;
  }

  constructor(bin, dir, ports) {
    this.bin = bin;
    this.dir = dir;
    this.ports = ports;
    this.center = `http://127.0.0.1:${ports.http}`;
    this.wsUrl = `ws://127.0.0.1:${ports.ws}/`;
    this.output = '';
  }

  /** Starts the process (again, on the same ports and store) and waits for /healthz. */
  async run() {
    this.child = spawn(this.bin, ['all', '--config', join(this.dir, 'config.toml'), '--log', 'warn'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise((ok) => this.child.once('exit', ok));
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream.on('data', (chunk) => {
        this.output = (this.output + chunk).slice(-20_000);
      });
    }
    await until(`longlink-push listening (${this.output})`, async () => {
      if (this.child.exitCode !== null) throw new Error(`longlink-push exited: ${this.output}`);
      try {
        return (await fetch(`${this.center}/healthz`)).status === 200;
      } catch {
        return false;
      }
    }, 30_000);
  }

  /** Ctrl-C: the room drains (every client is told to RECONNECT), then the process exits. */
  async drain() {
    this.child.kill('SIGINT');
    await this.exited;
  }

  /** Stops it for good and removes its files. */
  async stop() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  async request(method, path, body, key = KEY) {
    const headers = { authorization: `Bearer ${key}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${this.center}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: response.status, json };
  }

  /** Pushes as `demo`; returns the id. */
  async push(kind, body) {
    const { status, json } = await this.request('POST', `/push/${kind}`, body);
    if (status !== 200) throw new Error(`push ${kind}: ${status} ${JSON.stringify(json)}`);
    return json.id;
  }

  /** `uid`'s delivery record of message `id`. */
  async recipient(id, uid) {
    const { status, json } = await this.request('GET', `/messages/${id}`);
    if (status !== 200) throw new Error(`message ${id}: ${status} ${JSON.stringify(json)}`);
    return json.recipients.find((r) => r.uid === uid) ?? null;
  }

  /** Waits until `uid`'s status for `id` is `status`. */
  async waitStatus(id, uid, status) {
    let last;
    return until(`message ${id} for ${uid} becomes ${status} (last: ${JSON.stringify(last)})`, async () => {
      last = await this.recipient(id, uid);
      return last?.status === status ? last : null;
    });
  }

  /** Waits until `uid` has `n` sessions in `demo`. */
  async waitSessions(uid, n) {
    return until(`${uid} has ${n} sessions`, async () => {
      const { json } = await this.request('GET', `/users/${encodeURIComponent(uid)}`);
      return Array.isArray(json.sessions) && json.sessions.length === n;
    });
  }

  /** Whether the room serves the SSE transport (`POST /sse` not answered 404/426/405). */
  async servesSse() {
    try {
      const response = await fetch(`http://127.0.0.1:${this.ports.ws}/sse`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: '{}',
      });
      await response.body?.cancel();
      return ![404, 405, 426].includes(response.status);
    } catch {
      return false;
    }
  }
}
