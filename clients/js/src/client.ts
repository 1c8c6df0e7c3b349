/**
 * The client: dispatch, connect (WebSocket, or SSE where WebSocket fails), AUTH, the
 * heartbeat the room asks for, reconnect with full-jitter backoff, ACK (auto or manual,
 * batched), dedup, upstream with its reply, subscribe/unsubscribe, notify pull and token
 * refresh. It never gives up on its own: only `close()`, a KICK or a refused AUTH stop it.
 */

import { Backoff } from './backoff.js';
import { Dedup } from './dedup.js';
import { Dispatcher, type Room } from './dispatch.js';
import { Emitter } from './emitter.js';
import { PushError } from './errors.js';
import { DEFAULT_MAX_FRAME_BYTES } from './frame.js';
import type {
  ClientEvents,
  ClientState,
  ConnectedEvent,
  ConnectingEvent,
  DisconnectCode,
  DisconnectedEvent,
  ReceivedMessage,
  UpstreamReply,
} from './events.js';
import type { ConnectOptions } from './options.js';
import {
  text as textOf,
  utf8,
  type Auth,
  type Deliver,
  type Net,
  type PushMessage,
  type Sequenced,
} from './messages.js';
import { SseTransport, sseUrlOf, type FetchLike } from './sse.js';
import { refreshInSecs, tokenExpiry, tokenStale, unixNow } from './token.js';
import type { Transport, TransportClose, TransportName } from './transport.js';
import { WebSocketTransport, type WebSocketConstructor } from './websocket.js';

/** How long after a failed refresh `getToken` is asked again. */
const REFRESH_RETRY_MS = 5_000;
/** The least time between refreshes when the token in use already looks expired here. */
const REFRESH_FLOOR_MS = 60_000;
/** `getToken` must answer within this. */
const TOKEN_TIMEOUT_MS = 10_000;
/** Upstream requests waiting for answers at once. */
const MAX_WAITING = 256;
/** An ACK frame carries at most this many ids; more go in the next. */
const MAX_ACK_IDS = 512;
/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Waiting {
  resolve(reply: UpstreamReply): void;
  reject(error: PushError): void;
  timer: ReturnType<typeof setTimeout>;
}

/** How a session (or an attempt at one) ended, and what comes next. */
interface End {
  code: DisconnectCode;
  reason: string;
  closeCode?: number;
  /** Reconnect after this long; `null`: stop. */
  retryInMs: number | null;
}

/** One live connection: its transport and what belongs to it alone. */
interface Session {
  transport: Transport;
  room: Room;
  heartbeat?: ReturnType<typeof setInterval>;
  lastHeardMs: number;
  /** Messages that came before `serve` set the session up; `undefined` once it has. */
  backlog?: Sequenced[];
  /** A REFRESH sent: its seq and the token it carries. */
  refreshSent?: { seq: number; token: string };
  refreshTimer?: ReturnType<typeof setTimeout>;
  /** Resolves `run`'s wait for this session's end. */
  finish(end: End): void;
}

/**
 * A running client; {@link connect} makes one. Events: `connecting`, `connected`,
 * `disconnected`, `message`, `duplicate`, `refreshed`, `error`.
 */
export class PushClient extends Emitter<ClientEvents> {
  /** The user. */
  readonly uid: string;
  private readonly center: string;
  private readonly options: Required<
    Pick<
      ConnectOptions,
      | 'device'
      | 'transport'
      | 'format'
      | 'ack'
      | 'notify'
      | 'connectTimeoutMs'
      | 'requestTimeoutMs'
      | 'ackDelayMs'
      | 'maxFrameBytes'
      | 'sseStickyMs'
    >
  >;
  private readonly getToken: (() => string | Promise<string>) | undefined;
  private readonly WS: WebSocketConstructor | undefined;
  private readonly http: FetchLike;
  private readonly wsUrl: (room: Room) => string;
  private readonly sseUrl: (room: Room) => string;
  private readonly dispatcher: Dispatcher;
  private readonly backoff: Backoff;
  private readonly dedup: Dedup;
  // Ids handed over and ACKed (a redelivered one is ACKed again without a word).
  private readonly acked: Dedup;

  private token: string;
  private net: Net;
  private appList: string[];
  private stateNow: ClientState = 'connecting';
  private current: Session | null = null;
  private seq = 0;
  private readonly waiting = new Map<number, Waiting>();
  private acks: number[] = [];
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  // Messages are handed over in order, a notify pull included.
  private inbox: Promise<void> = Promise.resolve();
  // Until when WebSocket is skipped (it failed where SSE worked).
  private wsSkippedUntil = 0;
  // AUTHs refused in a row.
  private refusals = 0;
  private wake: (() => void) | null = null;
  // The transport being opened (closed by `close()` so the attempt ends at once).
  private opening: Transport | null = null;
  private readonly stopped = new AbortController();

  constructor(options: ConnectOptions) {
    super();
    if (!options.center) throw new TypeError('connect: `center` is required');
    if (!options.uid) throw new TypeError('connect: `uid` is required');
    if (!options.token && !options.getToken) throw new TypeError('connect: `token` or `getToken` is required');
    this.center = options.center.replace(/\/+$/, '');
    this.uid = options.uid;
    this.token = options.token ?? '';
    this.getToken = options.getToken;
    this.net = options.net ?? 'wifi';
    this.appList = [...(options.apps ?? ['demo'])];
    this.options = {
      device: options.device ?? 'web',
      transport: options.transport ?? 'auto',
      format: options.format ?? 'binary',
      ack: options.ack ?? 'auto',
      notify: options.notify ?? 'pull',
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      ackDelayMs: options.ackDelayMs ?? 20,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      sseStickyMs: options.sseStickyMs ?? 300_000,
    };
    this.WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    const f = options.fetch ?? globalThis.fetch;
    if (!f) throw new TypeError('connect: no `fetch` here; pass one');
    this.http = (input, init) => f(input, init);
    if (!this.WS && this.options.transport === 'websocket') {
      throw new TypeError(
        'connect: no WebSocket here; pass `WebSocket` (on Node 20 run with --experimental-websocket)',
      );
    }
    this.wsUrl = options.webSocketUrl ?? ((room) => room.ws);
    this.sseUrl = options.sseUrl ?? ((room) => sseUrlOf(room.ws));
    this.dispatcher = new Dispatcher(this.center, this.uid, this.http);
    this.backoff = new Backoff(options.backoffMinMs ?? 200, options.backoffMaxMs ?? 30_000);
    this.dedup = new Dedup(options.dedupWindow ?? 4096);
    this.acked = new Dedup(options.dedupWindow ?? 4096);
    queueMicrotask(() => void this.run());
  }

  /** `connecting`, `connected` or `closed`. */
  get state(): ClientState {
    return this.stateNow;
  }

  /** The transport of the live connection (`websocket` or `sse`), or `null`. */
  get transport(): TransportName | null {
    return this.stateNow === 'connected' ? (this.current?.transport.name ?? null) : null;
  }

  /** Where the live connection goes (its WebSocket URL or SSE endpoint), or `null`. */
  get url(): string | null {
    return this.stateNow === 'connected' ? (this.current?.transport.url ?? null) : null;
  }

  /** The apps this client receives (and names in every AUTH). */
  get apps(): readonly string[] {
    return this.appList;
  }

  /** Resolves once connected (at once if it is); rejects if the client stops first. */
  ready(): Promise<ConnectedEvent | void> {
    if (this.stateNow === 'connected') return Promise.resolve();
    if (this.stateNow === 'closed') return Promise.reject(new PushError('closed', 'the client has stopped'));
    return new Promise((resolve, reject) => {
      const offConnected = this.once('connected', (event) => {
        offDisconnected();
        resolve(event);
      });
      const offDisconnected = this.on('disconnected', (event) => {
        if (event.reconnect) return;
        offConnected();
        offDisconnected();
        reject(new PushError('closed', `the client has stopped: ${event.reason}`));
      });
    });
  }

  /** ACKs messages (with `ack: 'manual'`). Sent in a batch shortly; dropped while offline (they come again). */
  ack(ids: number | readonly number[]): void {
    for (const id of typeof ids === 'number' ? [ids] : ids) {
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
  upstream(
    app: string,
    type: string,
    body: string | Uint8Array,
    options: { timeoutMs?: number } = {},
  ): Promise<UpstreamReply> {
    const session = this.live();
    if (!session) return Promise.reject(new PushError('not_connected', 'not connected: nothing was sent'));
    if (this.waiting.size >= MAX_WAITING) {
      return Promise.reject(new PushError('overloaded', `${MAX_WAITING} upstream requests are waiting: nothing was sent`));
    }
    const seq = this.nextSeq();
    const bytes = typeof body === 'string' ? utf8(body) : body;
    return new Promise<UpstreamReply>((resolve, reject) => {
      const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
      const timer = setTimeout(() => {
        this.waiting.delete(seq);
        reject(new PushError('timeout', `no upstream reply within ${timeoutMs} ms; it may have been taken`));
      }, Math.min(timeoutMs, MAX_TIMER_MS));
      this.waiting.set(seq, { resolve, reject, timer });
      if (!this.sendOn(session, seq, { op: 'upstream', app, type, body: bytes })) {
        this.settle(seq, new PushError('not_connected', 'the connection failed as the upstream was sent'));
      }
    });
  }

  /**
   * Receives `apps` too, from now on and in every later AUTH. Past the room's limit of
   * apps per connection an `error` event (400) says so and the connection keeps its apps.
   */
  subscribe(apps: readonly string[]): void {
    const added = apps.filter((a) => !this.appList.includes(a));
    this.appList.push(...added);
    const session = this.live();
    if (session && apps.length > 0) this.sendOn(session, this.nextSeq(), { op: 'subscribe', apps: [...apps] });
  }

  /** Stops receiving `apps` (now and in every later AUTH). */
  unsubscribe(apps: readonly string[]): void {
    this.appList = this.appList.filter((a) => !apps.includes(a));
    const session = this.live();
    if (session && apps.length > 0) this.sendOn(session, this.nextSeq(), { op: 'unsubscribe', apps: [...apps] });
  }

  /** The network type changed: reconnect with the rooms and heartbeat for `net`. */
  setNet(net: Net): void {
    if (net === this.net) return;
    this.net = net;
    this.current?.finish({ code: 'network_changed', reason: `network changed to ${net}`, retryInMs: 0 });
  }

  /** Pulls the body of a notify message from the center. */
  async pull(id: number): Promise<Uint8Array> {
    const url = `${this.center}/messages/${id}/body?uid=${encodeURIComponent(this.uid)}&token=${encodeURIComponent(this.token)}`;
    let response: Response;
    try {
      response = await this.http(url, { cache: 'no-store' });
    } catch (error) {
      throw new PushError('http', `pull ${id}: ${(error as Error).message}`);
    }
    const body = new Uint8Array(await response.arrayBuffer());
    if (response.status !== 200) {
      throw new PushError('http', `pull ${id}: ${response.status} ${textOf(body).slice(0, 200)}`, response.status);
    }
    return body;
  }

  /** Closes the connection and stops; requests waiting fail with `closed`. */
  close(): void {
    if (this.stateNow === 'closed') return;
    this.stop({ code: 'closed', reason: 'closed by the client', retryInMs: null });
  }

  // ---- the connection loop ----

  private async run(): Promise<void> {
    let why: ConnectingEvent = { code: 'connect', reason: 'starting', attempt: 0 };
    while (this.stateNow !== 'closed') {
      this.setState('connecting');
      this.emit('connecting', why);
      const end = await this.attempt();
      if (this.isStopped()) return;
      if (end.retryInMs === null) {
        this.stop(end);
        return;
      }
      const retryInMs = end.retryInMs;
      const event: DisconnectedEvent = { code: end.code, reason: end.reason, reconnect: true, retryInMs };
      if (end.closeCode !== undefined) event.closeCode = end.closeCode;
      this.emit('disconnected', event);
      why = { code: end.code, reason: end.reason, attempt: this.backoff.attempts };
      await this.sleep(retryInMs);
    }
  }

  // One connection, from dispatch to its end.
  private async attempt(): Promise<End> {
    const token = await this.freshToken();
    if (token) return token;
    let rooms: Room[];
    try {
      rooms = await this.dispatcher.rooms(this.net, this.stopped.signal);
    } catch (error) {
      return { code: 'dispatch_failed', reason: (error as Error).message, retryInMs: this.backoff.next() };
    }
    if (this.isStopped()) return { code: 'closed', reason: 'closed', retryInMs: null };
    const room = this.dispatcher.pick(rooms);
    const kinds: TransportName[] =
      this.options.transport !== 'auto'
        ? [this.options.transport]
        : !this.WS || Date.now() < this.wsSkippedUntil
          ? ['sse']
          : ['websocket', 'sse'];
    let failure: End | null = null;
    for (const kind of kinds) {
      const outcome = await this.open(kind, room);
      if (this.isStopped()) {
        if (outcome.kind === 'open') outcome.session.transport.close(1000, 'closed by the client');
        return { code: 'closed', reason: 'closed', retryInMs: null };
      }
      if (outcome.kind === 'open') {
        if (kind === 'sse' && kinds[0] === 'websocket') this.wsSkippedUntil = Date.now() + this.options.sseStickyMs;
        return this.serve(outcome.session, outcome.heartbeatSecs, outcome.sessionKey);
      }
      if (outcome.kind === 'refused') return this.refused(outcome.reason);
      failure = {
        code: 'connect_failed',
        // Both transports' reasons when the fallback failed too.
        reason: `${failure ? `${failure.reason}; then ` : ''}${kind} ${outcome.url}: ${outcome.close.reason}`,
        retryInMs: 0,
      };
      if (outcome.close.code !== undefined) failure.closeCode = outcome.close.code;
    }
    // Neither transport got through: WebSocket is tried first again next time.
    this.wsSkippedUntil = 0;
    this.dispatcher.failedAt(room.ws, this.net);
    return { ...failure!, retryInMs: this.backoff.next() };
  }

  // Opens `kind` to `room` and waits for the AUTH_REPLY, within the connect timeout.
  private open(
    kind: TransportName,
    room: Room,
  ): Promise<
    | { kind: 'open'; session: Session; heartbeatSecs: number; sessionKey: string | null }
    | { kind: 'refused'; reason: string }
    | { kind: 'failed'; url: string; close: TransportClose }
  > {
    return new Promise((resolve) => {
      const url = kind === 'websocket' ? this.wsUrl(room) : this.sseUrl(room);
      let authed = false;
      const session: Session = {
        transport: undefined as unknown as Transport,
        room,
        lastHeardMs: Date.now(),
        finish: () => {},
      };
      const fail = (close: TransportClose) => {
        clearTimeout(timer);
        if (this.opening === session.transport) this.opening = null;
        resolve({ kind: 'failed', url, close });
      };
      const handlers = {
        onMessages: (messages: Sequenced[]) => {
          session.lastHeardMs = Date.now();
          if (authed) {
            // Until `serve` has set the session up, what comes is kept for it (a runtime
            // may hand over several messages in one turn, before the AUTH's await resumes).
            if (session.backlog) session.backlog.push(...messages);
            else this.onMessages(session, messages);
            return;
          }
          const [first, ...rest] = messages;
          if (!first || first.message.op !== 'auth_reply') {
            fail({ reason: `expected auth_reply, got ${first?.message.op}`, authenticated: false });
            session.transport.close(1000, 'expected auth_reply');
            return;
          }
          clearTimeout(timer);
          if (this.opening === session.transport) this.opening = null;
          const reply = first.message;
          if (!reply.ok) {
            resolve({ kind: 'refused', reason: reply.reason ?? 'refused' });
            session.transport.close(1000, 'auth refused');
            return;
          }
          authed = true;
          session.backlog = rest;
          resolve({ kind: 'open', session, heartbeatSecs: reply.heartbeat_secs, sessionKey: reply.session });
        },
        onError: (error: Error) => {
          if (authed) this.report(new PushError('protocol', error.message));
        },
        onClose: (close: TransportClose) => {
          if (authed) {
            session.finish({
              code: 'transport_closed',
              reason: close.reason,
              ...(close.code !== undefined ? { closeCode: close.code } : {}),
              retryInMs: this.backoff.next(),
            });
          } else {
            fail(close);
          }
        },
      };
      const auth: { seq: number; message: Auth } = {
        seq: this.nextSeq(),
        message: { op: 'auth', uid: this.uid, device: this.options.device, net: this.net, token: this.token, apps: [...this.appList] },
      };
      const timer = setTimeout(() => {
        fail({ reason: `connect timed out after ${this.options.connectTimeoutMs} ms`, authenticated: false });
        session.transport.close(1000, 'connect timed out');
      }, this.options.connectTimeoutMs);
      try {
        session.transport =
          kind === 'websocket'
            ? new WebSocketTransport(url, this.WS!, this.options.format, this.options.maxFrameBytes, auth, handlers)
            : new SseTransport(url, this.http, auth, handlers);
        this.opening = session.transport;
      } catch (error) {
        // A malformed URL, or a WebSocket constructor that throws.
        session.transport = { name: kind, url, send() {}, close() {} };
        fail({ reason: (error as Error).message, authenticated: false });
      }
    });
  }

  // Runs an authenticated session until it ends.
  private serve(session: Session, heartbeatSecs: number, sessionKey: string | null): Promise<End> {
    return new Promise<End>((resolve) => {
      let done = false;
      session.finish = (end: End) => {
        if (done) return;
        done = true;
        clearInterval(session.heartbeat);
        clearTimeout(session.refreshTimer);
        if (this.current === session) this.current = null;
        this.flushAcks(session);
        session.transport.close(1000, end.reason);
        for (const seq of [...this.waiting.keys()]) {
          this.settle(seq, new PushError('connection_lost', 'the connection closed before the answer; the upstream may have been taken'));
        }
        resolve(end);
      };
      this.current = session;
      this.refusals = 0;
      this.backoff.reset();
      this.dispatcher.connected();
      this.setState('connected');
      const intervalMs = Math.max(1, heartbeatSecs) * 1000;
      session.heartbeat = setInterval(() => {
        // The room drops a client silent for two intervals; the client gives up on a
        // room silent for as long.
        if (Date.now() - session.lastHeardMs > 2 * intervalMs + 1000) {
          session.finish({ code: 'heartbeat_timeout', reason: 'the room stopped answering heartbeats', retryInMs: this.backoff.next() });
          return;
        }
        this.sendOn(session, this.nextSeq(), { op: 'heartbeat' });
      }, intervalMs);
      this.scheduleRefresh(session);
      this.emit('connected', {
        transport: session.transport.name,
        room: session.room.name,
        url: session.transport.url,
        session: sessionKey,
        heartbeatSecs,
      });
      const backlog = session.backlog ?? [];
      session.backlog = undefined;
      this.onMessages(session, backlog);
    });
  }

  private onMessages(session: Session, messages: Sequenced[]): void {
    for (const { seq, message } of messages) {
      if (this.current !== session) return;
      this.onMessage(session, seq, message);
    }
  }

  private onMessage(session: Session, seq: number, message: PushMessage): void {
    switch (message.op) {
      case 'message':
        this.deliver(message);
        return;
      case 'heartbeat_reply':
        return;
      case 'auth_reply': {
        const sent = session.refreshSent;
        if (!sent || sent.seq !== seq) return;
        session.refreshSent = undefined;
        if (message.ok) {
          this.token = sent.token;
          this.emit('refreshed', { expiresAt: tokenExpiry(sent.token) });
          this.scheduleRefresh(session);
        } else {
          this.report(new PushError('refresh_failed', `the room refused the new token: ${message.reason ?? 'refused'}`));
          this.refreshLater(session, REFRESH_RETRY_MS);
        }
        return;
      }
      case 'upstream_reply':
        this.settle(seq, { ok: message.ok, reason: message.reason });
        return;
      case 'kick':
        session.finish({ code: 'kicked', reason: message.reason, retryInMs: null });
        return;
      case 'reconnect':
        this.dispatcher.forgetRooms();
        session.finish({ code: 'reconnect', reason: `the room asked to reconnect: ${message.reason}`, retryInMs: message.after_ms });
        return;
      case 'error': {
        const error = new PushError('room_error', `room error ${message.code}: ${message.reason}`, message.code);
        if (this.waiting.has(seq)) this.settle(seq, error);
        this.report(error);
        return;
      }
      default:
        session.finish({ code: 'transport_closed', reason: `the room sent ${message.op}`, retryInMs: this.backoff.next() });
    }
  }

  // A MESSAGE: dedup, pull (notify), hand over, ACK — in arrival order.
  private deliver(m: Deliver): void {
    const stored = m.mode !== 'at_most_once';
    if (!this.dedup.firstTime(m.id)) {
      // Seen before: a redelivery. Once ACKed (by the client or by you), ACK it again.
      if (stored && (this.options.ack === 'auto' || this.acked.has(m.id))) {
        this.acks.push(m.id);
        this.scheduleAcks();
      }
      this.emit('duplicate', { id: m.id, app: m.app });
      return;
    }
    this.inbox = this.inbox.then(async () => {
      let body = m.body;
      if (m.mode === 'notify' && this.options.notify === 'pull') {
        try {
          body = await this.pull(m.id);
        } catch (error) {
          // Not ACKed: it comes again on the next connection.
          this.report(error as PushError);
          return;
        }
      }
      if (this.stateNow === 'closed') return;
      this.emit('message', this.received(m, body));
      if (stored && this.options.ack === 'auto') {
        this.acked.firstTime(m.id);
        this.acks.push(m.id);
        this.scheduleAcks();
      }
    });
  }

  private received(m: Deliver, body: Uint8Array): ReceivedMessage {
    let text: string | undefined;
    return {
      id: m.id,
      app: m.app,
      mode: m.mode,
      body,
      get text() {
        return (text ??= textOf(body));
      },
      json<T>(): T {
        return JSON.parse(this.text) as T;
      },
      ack: () => this.ack(m.id),
    };
  }

  // ---- ACKs ----

  private scheduleAcks(): void {
    if (this.acks.length >= MAX_ACK_IDS) {
      this.flushAcks(this.live());
      return;
    }
    if (this.ackTimer === undefined) {
      this.ackTimer = setTimeout(() => this.flushAcks(this.live()), this.options.ackDelayMs);
    }
  }

  private flushAcks(session: Session | null): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const ids = this.acks;
    this.acks = [];
    // Offline, ACKs are dropped: the messages stay pending in the store and come again.
    if (!session) return;
    for (let i = 0; i < ids.length; i += MAX_ACK_IDS) {
      this.sendOn(session, this.nextSeq(), { op: 'ack', ids: ids.slice(i, i + MAX_ACK_IDS) });
    }
  }

  // ---- tokens ----

  // A token before connecting: the first, or a new one for an expired token.
  private async freshToken(): Promise<End | null> {
    if (!this.getToken) return null;
    if (this.token !== '' && !tokenStale(this.token, unixNow())) return null;
    try {
      this.token = await this.fetchToken();
      return null;
    } catch (error) {
      this.report(new PushError('refresh_failed', `no token: ${(error as Error).message}`));
      return { code: 'token_failed', reason: `no token: ${(error as Error).message}`, retryInMs: this.backoff.next() };
    }
  }

  private async fetchToken(): Promise<string> {
    const getToken = this.getToken!;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const token = await Promise.race([
        Promise.resolve().then(getToken),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`getToken did not answer within ${TOKEN_TIMEOUT_MS} ms`)), TOKEN_TIMEOUT_MS);
        }),
      ]);
      if (typeof token !== 'string' || token === '') throw new Error('getToken gave no token');
      return token;
    } finally {
      clearTimeout(timer);
    }
  }

  // The room refused the AUTH: with `getToken`, once more with a new token; else stop.
  private async refused(reason: string): Promise<End> {
    this.refusals++;
    if (this.getToken && this.refusals === 1) {
      try {
        this.token = await this.fetchToken();
        return { code: 'auth_refused', reason: `refused (${reason}); again with a new token`, retryInMs: 0 };
      } catch (error) {
        this.refusals = 0;
        this.report(new PushError('refresh_failed', `no new token: ${(error as Error).message}`));
        return { code: 'auth_refused', reason: `refused (${reason}); no new token`, retryInMs: this.backoff.next() };
      }
    }
    return { code: 'auth_refused', reason, retryInMs: null };
  }

  // When to send the next REFRESH on `session` (with `getToken` and a token that says when it ends).
  private scheduleRefresh(session: Session): void {
    if (!this.getToken) return;
    const expiresAt = tokenExpiry(this.token);
    if (expiresAt === null) return;
    const dueMs = refreshInSecs(expiresAt, Date.now() / 1000) * 1000;
    // Due at once for a token the room has just accepted: its clock disagrees; not again for a while.
    this.refreshLater(session, dueMs === 0 ? REFRESH_FLOOR_MS : dueMs);
  }

  private refreshLater(session: Session, delayMs: number): void {
    clearTimeout(session.refreshTimer);
    session.refreshTimer = setTimeout(async () => {
      if (this.current !== session) return;
      let token: string;
      try {
        token = await this.fetchToken();
      } catch (error) {
        this.report(new PushError('refresh_failed', (error as Error).message));
        if (this.current === session) this.refreshLater(session, REFRESH_RETRY_MS);
        return;
      }
      if (this.current !== session) return;
      const seq = this.nextSeq();
      session.refreshSent = { seq, token };
      this.sendOn(session, seq, { op: 'refresh', token });
    }, Math.min(delayMs, MAX_TIMER_MS));
  }

  // ---- plumbing ----

  private live(): Session | null {
    return this.stateNow === 'connected' ? this.current : null;
  }

  // Sends on `session`; a failed send ends it (and says so).
  private sendOn(session: Session, seq: number, message: PushMessage): boolean {
    try {
      session.transport.send(seq, message);
      return true;
    } catch (error) {
      session.finish({ code: 'transport_closed', reason: `send: ${(error as Error).message}`, retryInMs: this.backoff.next() });
      return false;
    }
  }

  private settle(seq: number, outcome: UpstreamReply | PushError): void {
    const waiting = this.waiting.get(seq);
    if (!waiting) return;
    this.waiting.delete(seq);
    clearTimeout(waiting.timer);
    if (outcome instanceof PushError) waiting.reject(outcome);
    else waiting.resolve(outcome);
  }

  private report(error: PushError): void {
    this.emit('error', { error });
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0xffffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  // Whether the client has stopped (read afresh after each await).
  private isStopped(): boolean {
    return this.stateNow === 'closed';
  }

  private setState(state: ClientState): void {
    this.stateNow = state;
  }

  private sleep(ms: number): Promise<void> {
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
  private stop(end: End): void {
    if (this.stateNow === 'closed') return;
    const session = this.current;
    this.stateNow = 'closed';
    if (session) {
      // Flush what the application ACKed before the connection goes.
      this.flushAcks(session);
      session.finish(end);
    }
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.stopped.abort();
    this.opening?.close(1000, 'closed by the client');
    this.opening = null;
    for (const seq of [...this.waiting.keys()]) this.settle(seq, new PushError('closed', 'the client was closed'));
    this.wake?.();
    const event: DisconnectedEvent = { code: end.code, reason: end.reason, reconnect: false };
    if (end.closeCode !== undefined) event.closeCode = end.closeCode;
    this.emit('disconnected', event);
  }
}

/** Starts a client: it dispatches and connects in the background; listen with `on`. */
export function connect(options: ConnectOptions): PushClient {
  return new PushClient(options);
}
