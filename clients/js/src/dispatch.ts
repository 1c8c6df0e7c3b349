/**
 * `GET {center}/dispatch?uid=&net=&failed=`: which rooms to try, best first. Answers are
 * cached per network type; addresses that failed lately are named in `failed`
 * (comma-separated; the dispatcher matches them against each room's `ws` and `tcp`) so
 * they come last, and are forgotten after a minute.
 */

import { PushError } from './errors.js';
import type { Net } from './messages.js';
import type { FetchLike } from './sse.js';

/** A room as the dispatcher lists it. */
export interface Room {
  name: string;
  /** WebSocket URL, `ws://host:port/` (or `wss://`). */
  ws: string;
  /** Raw TCP `host:port` (native clients). */
  tcp: string;
  /** Whether `tcp` speaks TLS. */
  tcp_tls?: boolean;
}

/** The dispatcher's answer. */
export interface DispatchAnswer {
  uid: string;
  net: Net;
  heartbeat_secs: number;
  rooms: Room[];
}

/** How long a failed address is remembered, in milliseconds. */
export const FORGET_FAILURES_AFTER_MS = 60_000;

/** Rooms per network type, and the addresses that failed. */
export class Dispatcher {
  private readonly cache = new Map<Net, Room[]>();
  // Address → when it failed (ms).
  private readonly failed = new Map<string, number>();

  constructor(
    private readonly center: string,
    private readonly uid: string,
    private readonly fetch: FetchLike,
    private readonly now: () => number = Date.now,
  ) {}

  /** The rooms for `net`, from the cache or the dispatcher. */
  async rooms(net: Net, signal?: AbortSignal): Promise<Room[]> {
    this.forgetOld();
    const cached = this.cache.get(net);
    if (cached) return cached;
    const url = `${this.center}/dispatch?uid=${encodeURIComponent(this.uid)}&net=${net}` +
      `&failed=${encodeURIComponent([...this.failed.keys()].join(','))}`;
    let response: Response;
    try {
      response = await this.fetch(url, { signal: signal ?? null, cache: 'no-store' });
    } catch (error) {
      throw new PushError('http', `dispatch: ${(error as Error).message}`);
    }
    const text = await response.text();
    if (response.status !== 200) {
      throw new PushError('http', `dispatch: ${response.status} ${text.slice(0, 200)}`, response.status);
    }
    let answer: DispatchAnswer;
    try {
      answer = JSON.parse(text) as DispatchAnswer;
    } catch {
      throw new PushError('http', 'dispatch: the answer is not JSON');
    }
    if (!Array.isArray(answer.rooms) || answer.rooms.length === 0) {
      throw new PushError('http', 'dispatch: no rooms');
    }
    this.cache.set(net, answer.rooms);
    return answer.rooms;
  }

  /**
   * The room to try: the first whose address has not failed lately; when every one has
   * (the only room restarting, say), the one that failed longest ago — never giving up.
   */
  pick(rooms: readonly Room[]): Room {
    const fresh = rooms.find((r) => !this.failed.has(r.ws));
    if (fresh) return fresh;
    return [...rooms].sort((a, b) => (this.failed.get(a.ws) ?? 0) - (this.failed.get(b.ws) ?? 0))[0]!;
  }

  /** `address` failed: the next dispatch names it, and the cached answer for `net` is dropped. */
  failedAt(address: string, net: Net): void {
    this.failed.delete(address);
    this.failed.set(address, this.now());
    this.cache.delete(net);
  }

  /** A good connection: past failures no longer count. */
  connected(): void {
    this.failed.clear();
  }

  /** The room asked everyone to move (RECONNECT): ask the dispatcher again. */
  forgetRooms(): void {
    this.cache.clear();
  }

  /** Addresses reported as failed now. */
  failures(): string[] {
    this.forgetOld();
    return [...this.failed.keys()];
  }

  private forgetOld(): void {
    const now = this.now();
    for (const [address, at] of this.failed) {
      if (now - at >= FORGET_FAILURES_AFTER_MS) this.failed.delete(address);
    }
  }
}
