// Records a client's events so a test can wait for the next one of a kind. No Node APIs:
// the browser tests load this same file into the page.

const EVENTS = ['connecting', 'connected', 'disconnected', 'message', 'duplicate', 'refreshed', 'error'];

/** A plain copy of an event (messages with their text, errors with code and message). */
function plain(type, event) {
  if (type === 'message') return { id: event.id, app: event.app, mode: event.mode, text: event.text };
  if (type === 'error') return { code: event.error.code, status: event.error.status, message: event.error.message };
  return { ...event };
}

/** Whether `event` has every field of `match` equal. */
function matches(event, match) {
  return Object.entries(match ?? {}).every(([k, v]) => event[k] === v);
}

export class Recorder {
  constructor(client) {
    this.client = client;
    this.events = [];
    this.taken = new Set();
    this.waiters = new Set();
    for (const type of EVENTS) {
      client.on(type, (event) => {
        this.events.push({ type, ...plain(type, event) });
        for (const wake of [...this.waiters]) wake();
      });
    }
  }

  /** The next event of `type` matching `match` not taken before (waits up to `waitMs`). */
  next(type, match = {}, waitMs = 10_000) {
    return new Promise((resolve, reject) => {
      const look = () => {
        const i = this.events.findIndex((e, i) => !this.taken.has(i) && e.type === type && matches(e, match));
        if (i < 0) return false;
        this.taken.add(i);
        cleanup();
        resolve(this.events[i]);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        const seen = JSON.stringify(this.events.slice(-8).map((e) => ({ ...e, text: e.text?.slice(0, 60) })));
        reject(new Error(`no ${type} event ${JSON.stringify(match)} within ${waitMs} ms; last events: ${seen}`));
      }, waitMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(look);
      };
      if (!look()) this.waiters.add(look);
    });
  }

  /** Fails if a `type` event not taken yet arrives within `ms` (or is already there). */
  async quiet(ms, type = 'message') {
    await new Promise((r) => setTimeout(r, ms));
    const extra = this.events.filter((e, i) => !this.taken.has(i) && e.type === type);
    if (extra.length > 0) throw new Error(`expected no ${type}, got ${JSON.stringify(extra)}`);
  }

  /** Every event of `type` so far. */
  all(type) {
    return this.events.filter((e) => e.type === type);
  }
}
