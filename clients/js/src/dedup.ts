/**
 * The last `capacity` message ids seen: at-least-once delivery means duplicates (a
 * redelivery after a reconnect that came before the ACK was recorded), and the client
 * drops them.
 */
export class Dedup {
  private readonly seen = new Set<number>();
  readonly capacity: number;

  constructor(capacity = 4096) {
    this.capacity = Math.max(1, Math.floor(capacity));
  }

  /** `true` the first time `id` is seen within the window; records it. */
  firstTime(id: number): boolean {
    if (this.seen.has(id)) return false;
    if (this.seen.size >= this.capacity) {
      // A Set iterates in insertion order: the first is the oldest.
      const oldest = this.seen.values().next().value as number;
      this.seen.delete(oldest);
    }
    this.seen.add(id);
    return true;
  }

  /** Whether `id` is remembered (without recording it). */
  has(id: number): boolean {
    return this.seen.has(id);
  }

  /** Ids remembered. */
  get size(): number {
    return this.seen.size;
  }
}
