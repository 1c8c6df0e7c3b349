/**
 * The SSE transport, for where WebSocket does not get through: `POST {room}/sse` with the
 * AUTH as JSON opens a `text/event-stream`, each event `data: <push message JSON>`, the
 * first the AUTH_REPLY whose `session` names the stream. The client's messages go as
 * `POST {room}/sse/{session}`, one JSON message each, answered `202`. Bodies are
 * `text/plain` so a browser sends them without a CORS preflight; the AUTH is a POST body,
 * so the token stays out of URLs and logs. JSON form only.
 */

import { decodeJson, encodeJson, fromJsonObject } from './json.js';
import type { Auth, PushMessage } from './messages.js';
import { SseParser } from './sse_parser.js';
import type { Transport, TransportHandlers } from './transport.js';

/** `fetch` as the client uses it. */
export type FetchLike = typeof globalThis.fetch;

/** Attempts for a message the room answered 429 (its queue for the session is full). */
const BUSY_ATTEMPTS = 5;
/** The first wait after a 429; doubles per attempt. */
const BUSY_WAIT_MS = 100;

/** The SSE endpoint of a room whose WebSocket URL is `ws`: same host and port, http(s). */
export function sseUrlOf(ws: string): string {
  const url = new URL(ws);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.pathname = '/sse';
  url.search = '';
  url.hash = '';
  return url.toString();
}

/** A session key as a path segment (`room-1:7` stays readable; anything odder is escaped). */
function segment(session: string): string {
  return /^[A-Za-z0-9._~:-]+$/.test(session) ? session : encodeURIComponent(session);
}

export class SseTransport implements Transport {
  readonly name = 'sse' as const;
  private readonly abort = new AbortController();
  private session: string | null = null;
  private ended = false;
  private authenticated = false;
  // Messages waiting to be POSTed, in order; one POST is in flight at a time.
  private readonly queue: string[] = [];
  private sending = false;

  constructor(
    readonly url: string,
    private readonly fetch: FetchLike,
    auth: { seq: number; message: Auth },
    private readonly handlers: TransportHandlers,
  ) {
    void this.open(encodeJson(auth.seq, auth.message));
  }

  send(seq: number, message: PushMessage): void {
    if (this.ended || this.session === null) throw new Error('the SSE stream is not open');
    this.queue.push(encodeJson(seq, message));
    void this.drain();
  }

  close(_code?: number, reason = 'closed by the client'): void {
    this.end({ reason });
  }

  private async open(auth: string): Promise<void> {
    let response: Response;
    try {
      response = await this.fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'text/plain;charset=UTF-8', accept: 'text/event-stream' },
        body: auth,
        signal: this.abort.signal,
        cache: 'no-store',
      });
    } catch (error) {
      this.end({ reason: `POST /sse: ${(error as Error).message}` });
      return;
    }
    if (response.status !== 200 || !response.body) {
      await this.refused(response);
      return;
    }
    const parser = new SseParser();
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (this.ended) return;
        for (const event of parser.push(value)) this.event(event.data);
        if (this.ended) return;
      }
      this.end({ reason: 'the room ended the event stream' });
    } catch (error) {
      this.end({ reason: `event stream: ${(error as Error).message}` });
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
  private async refused(response: Response): Promise<void> {
    const status = response.status;
    const text = await response.text().catch(() => '');
    if (status === 404 || status === 426 || status === 405) {
      this.end({ reason: `the room serves no SSE (POST /sse answered ${status})`, code: status, unsupported: true });
      return;
    }
    let reason = text.slice(0, 200);
    try {
      const [first] = decodeJson(text);
      if (first?.message.op === 'auth_reply') {
        if ((status === 401 || status === 403) && !this.ended) {
          this.handlers.onMessages([first]);
          return;
        }
        reason = first.message.reason ?? reason;
      } else if (first?.message.op === 'error') {
        reason = first.message.reason;
      }
    } catch {
      // Not a push message: the text says why.
    }
    this.end({ reason: `POST /sse answered ${status}: ${reason}`, code: status });
  }

  private event(data: string): void {
    if (data === '') return;
    let message;
    try {
      message = fromJsonObject(JSON.parse(data));
    } catch (error) {
      this.handlers.onError(error as Error);
      this.end({ reason: `unreadable event: ${(error as Error).message}` });
      return;
    }
    if (message.message.op === 'auth_reply' && !this.authenticated) {
      if (message.message.ok) {
        this.authenticated = true;
        this.session = message.message.session;
        if (this.session === null) {
          this.end({ reason: 'the auth_reply named no session' });
          return;
        }
      }
    }
    this.handlers.onMessages([message]);
  }

  private async drain(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0 && !this.ended) {
        await this.post(this.queue[0]!);
        this.queue.shift();
      }
    } finally {
      this.sending = false;
    }
  }

  // POSTs one message; a 429 is tried again after a growing wait, then given up.
  private async post(body: string): Promise<void> {
    const url = `${this.url}/${segment(this.session!)}`;
    for (let attempt = 0; attempt < BUSY_ATTEMPTS && !this.ended; attempt++) {
      let response: Response;
      try {
        response = await this.fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'text/plain;charset=UTF-8' },
          body,
          signal: this.abort.signal,
          cache: 'no-store',
        });
      } catch (error) {
        this.end({ reason: `POST /sse/{session}: ${(error as Error).message}` });
        return;
      }
      const status = response.status;
      const text = await response.text().catch(() => '');
      if (status === 202 || status === 200 || status === 204) return;
      if (status === 404) {
        this.end({ reason: 'the room no longer knows this SSE session', code: 404 });
        return;
      }
      if (status === 429) {
        await new Promise((resolve) => setTimeout(resolve, BUSY_WAIT_MS * 2 ** attempt));
        continue;
      }
      this.handlers.onError(new Error(`POST /sse/{session} answered ${status}: ${text.slice(0, 200)}`));
      return;
    }
    if (!this.ended) this.handlers.onError(new Error('the room stayed busy (429): a message was dropped'));
  }

  private end(close: { reason: string; code?: number; unsupported?: boolean }): void {
    if (this.ended) return;
    this.ended = true;
    this.abort.abort();
    this.queue.length = 0;
    this.handlers.onClose({ ...close, authenticated: this.authenticated });
  }
}
