// Backoff, dedup, the SSE parser and token expiry parsing.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';

import { Backoff, Dedup, SseParser, refreshInSecs, tokenExpiry, tokenStale } from '../../dist/index.js';

test('backoff: full jitter between the floor and a cap that doubles up to the max, reset after a good connection', () => {
  const top = new Backoff(200, 30_000, () => 0.999999);
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 9].map(() => top.next()), [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000]);
  assert.equal(top.next(), 30000);
  assert.equal(top.attempts, 10);
  top.reset();
  assert.equal(top.next(), 200);
  const bottom = new Backoff(200, 30_000, () => 0);
  for (let i = 0; i < 20; i++) assert.equal(bottom.next(), 200);
  // Random draws stay within the bounds and spread out.
  const spread = new Backoff(100, 1000);
  const draws = Array.from({ length: 200 }, () => spread.next()).slice(5);
  assert.ok(draws.every((d) => d >= 100 && d <= 1000));
  assert.ok(new Set(draws).size > 50, 'jittered');
  // Huge failure counts neither overflow nor pass the max.
  const many = new Backoff(1, 5000, () => 1);
  for (let i = 0; i < 100; i++) assert.ok(many.next() <= 5000);
});

test('dedup: remembers the last N ids, forgets the oldest', () => {
  const seen = new Dedup(2);
  assert.equal(seen.firstTime(1), true);
  assert.equal(seen.firstTime(1), false);
  assert.equal(seen.firstTime(2) && seen.firstTime(3), true); // 1 falls out
  assert.equal(seen.firstTime(1), true);
  assert.equal(seen.has(3), true);
  assert.equal(seen.has(2), false);
  assert.equal(seen.size, 2);
  const big = new Dedup(4096);
  for (let i = 0; i < 10_000; i++) big.firstTime(i);
  assert.equal(big.size, 4096);
  assert.equal(big.firstTime(9999), false);
  assert.equal(big.firstTime(0), true);
  assert.equal(new Dedup(0).capacity, 1);
});

test('sse parser: events split anywhere, CRLF/CR/LF, multi-line data, comments, fields, a BOM', () => {
  const stream = '\ufeff: hello\r\ndata: {"a":1}\r\n\r\nevent: x\nid: 7\nretry: 1500\ndata: line 1\ndata:line 2\n\n\rdata: cr\r\r:only a comment\n\ndata\n\n';
  const bytes = new TextEncoder().encode(stream);
  const expected = [
    { event: 'message', data: '{"a":1}', id: '' },
    { event: 'x', data: 'line 1\nline 2', id: '7', retry: 1500 },
    { event: 'message', data: 'cr', id: '7' },
    { event: 'message', data: '', id: '7' },
  ];
  // Whole, and in every split into two chunks (through CRLFs and UTF-8 sequences).
  assert.deepEqual(new SseParser().push(bytes), expected);
  for (let cut = 0; cut <= bytes.length; cut++) {
    const p = new SseParser();
    const got = [...p.push(bytes.subarray(0, cut)), ...p.push(bytes.subarray(cut))];
    assert.deepEqual(got, expected, `cut at ${cut}`);
  }
  // One byte at a time, with a multi-byte character in the data.
  const p = new SseParser();
  const got = [];
  for (const b of new TextEncoder().encode('data: héllo €\n\n')) got.push(...p.push(Uint8Array.of(b)));
  assert.deepEqual(got.map((e) => e.data), ['héllo €']);
  // No event without the blank line; an endless line is refused.
  assert.deepEqual(new SseParser().text('data: half'), []);
  assert.throws(() => new SseParser(10).text('data: far too long a line'), /longer than 10/);
});

test('token expiry: HMAC middle field, JWT exp, nothing from anything else', () => {
  const b64 = (s) => Buffer.from(s).toString('base64url');
  const head = `${b64('u1')}.1767225600`;
  const hmac = `${head}.${createHmac('sha256', 'secret').update(head).digest('base64url')}`;
  assert.equal(tokenExpiry(hmac), 1767225600);
  assert.equal(tokenExpiry(`eyJhbGciOiJIUzI1NiJ9.${b64('{"sub":"u1","exp":1800000000}')}.c2ln`), 1800000000);
  assert.equal(tokenExpiry(`h.${b64('{"sub":"u1"}')}.s`), null);
  assert.equal(tokenExpiry(`h.${b64('{"exp":"soon"}')}.s`), null);
  assert.equal(tokenExpiry('opaque'), null);
  assert.equal(tokenExpiry('a.b.c.d'), null);
  assert.equal(tokenExpiry('a.!!.c'), null);
  assert.equal(tokenExpiry(`h.${b64('not json')}.s`), null);
});

test('tokens as the tests make them match the vector in docs/protocol.md', () => {
  const head = `${Buffer.from('u1').toString('base64url')}.1767225600`;
  const secret = '6c6f6e676c696e6b2d746573742d736563726574';
  const made = `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
  assert.equal(made, 'dTE.1767225600.ZZYWXZD701wJPLbBB0WaufvUbLjTrSTAupgxkFFNyK0');
  assert.equal(tokenExpiry(made), 1767225600);
});

test('token refresh timing: a fifth of the time left, 5 s to 5 min ahead, at once when late', () => {
  assert.equal(refreshInSecs(3600, 0), 3300); // an hour left: five minutes' lead
  assert.equal(refreshInSecs(60, 0), 48); // a minute: twelve seconds
  assert.equal(refreshInSecs(10, 0), 5); // ten seconds: at least five
  assert.equal(refreshInSecs(10, 20), 0); // past: at once
  assert.equal(tokenStale('dTE.104.c2ln', 100), true);
  assert.equal(tokenStale('dTE.106.c2ln', 100), false);
  assert.equal(tokenStale('opaque', 100), false);
});
