/**
 * Reconnect delays: exponential with full jitter (a crowd that lost its room does not come
 * back in step). The n-th delay in a row is uniform in [min, min(max, min·2ⁿ)].
 */
export class Backoff {
  private failures = 0;

  /**
   * @param minMs the first delay's floor and scale
   * @param maxMs the longest delay
   * @param random a source of [0, 1) (tests pin it)
   */
  constructor(
    readonly minMs: number,
    readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The next delay, in milliseconds; each call counts one more failure in a row. */
  next(): number {
    const exp = Math.min(this.failures, 16);
    this.failures++;
    const cap = Math.max(this.minMs, Math.min(this.maxMs, this.minMs * 2 ** exp));
    return Math.round(this.minMs + this.random() * (cap - this.minMs));
  }

  /** A good connection: the next failure starts from the bottom again. */
  reset(): void {
    this.failures = 0;
  }

  /** Failures in a row so far. */
  get attempts(): number {
    return this.failures;
  }
}
