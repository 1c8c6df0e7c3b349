//! Recent latencies of one target, cheaply: for hedging "after the p95".
//!
//! A log-linear histogram (eight buckets per power of two of microseconds, so a value is
//! placed within 12.5%) of `AtomicU32`s. Recording is two `fetch_add`s; every 64th
//! recording recomputes the percentile into one atomic that hedging reads, and once 1024
//! recordings have come in since the last halving every bucket is halved, so the estimate
//! follows the last thousand or two calls, not the whole life of the client.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Sub-buckets per power of two.
const SUB: u32 = 8;
/// Values below 2 × SUB µs have a bucket each.
const LINEAR: u32 = 2 * SUB;
/// Powers of two above the linear part (up to ~2^30 µs, 18 minutes; longer is clamped).
const OCTAVES: u32 = 26;
const LEN: usize = (LINEAR + OCTAVES * SUB) as usize;
/// Recordings between two recomputations of the percentile.
const REFRESH_EVERY: u32 = 64;
/// Recordings after which the counts are halved.
const DECAY_AFTER: u32 = 1024;
/// Recordings before a percentile is given at all.
pub(crate) const MIN_SAMPLES: u32 = 100;

#[derive(Debug)]
pub(crate) struct Latency {
    /// Which percentile is tracked, in per-mille (950 = p95).
    per_mille: u32,
    buckets: Box<[AtomicU32]>,
    /// Recordings since the last halving.
    since_decay: AtomicU32,
    /// Recordings ever (saturating), for the warm-up.
    total: AtomicU32,
    /// The percentile in µs, or `u64::MAX` while warming up.
    cached_micros: AtomicU64,
}

fn index(micros: u64) -> usize {
    if micros < u64::from(LINEAR) {
        return micros as usize;
    }
    let msb = 63 - micros.leading_zeros(); // ≥ 4
    // `micros >> shift` is in [SUB, 2 × SUB): its low bits pick the sub-bucket.
    let shift = msb - SUB.trailing_zeros();
    let sub = (micros >> shift) as u32 - SUB;
    ((LINEAR + (shift - 1) * SUB + sub) as usize).min(LEN - 1)
}

/// The largest value that falls in bucket `i` (so the percentile errs on the late side).
fn upper_bound(i: usize) -> u64 {
    let i = i as u32;
    if i < LINEAR {
        return u64::from(i);
    }
    let shift = (i - LINEAR) / SUB + 1;
    let sub = (i - LINEAR) % SUB;
    // Bucket i holds [(SUB + sub) << shift, (SUB + sub + 1) << shift).
    (u64::from(SUB + sub + 1) << shift) - 1
}

impl Latency {
    /// Tracks the `percentile` (0–100, e.g. 95.0) of recent latencies.
    pub(crate) fn new(percentile: f64) -> Latency {
        Latency {
            per_mille: ((percentile * 10.0).round() as u32).clamp(1, 1000),
            buckets: (0..LEN).map(|_| AtomicU32::new(0)).collect(),
            since_decay: AtomicU32::new(0),
            total: AtomicU32::new(0),
            cached_micros: AtomicU64::new(u64::MAX),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        let micros = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.buckets[index(micros)].fetch_add(1, Relaxed);
        let _ = self
            .total
            .fetch_update(Relaxed, Relaxed, |t| t.checked_add(1));
        let n = self.since_decay.fetch_add(1, Relaxed) + 1;
        if n.is_multiple_of(REFRESH_EVERY) {
            self.refresh(n >= DECAY_AFTER);
        }
    }

    /// Recomputes the percentile; halves the counts when `decay` (racing recordings may
    /// lose a count or two: an estimate, not an account).
    fn refresh(&self, decay: bool) {
        if self.total.load(Relaxed) >= MIN_SAMPLES {
            let counts: u64 = self
                .buckets
                .iter()
                .map(|b| u64::from(b.load(Relaxed)))
                .sum();
            let rank = (counts * u64::from(self.per_mille)).div_ceil(1000).max(1);
            let mut seen = 0;
            for (i, b) in self.buckets.iter().enumerate() {
                seen += u64::from(b.load(Relaxed));
                if seen >= rank {
                    self.cached_micros.store(upper_bound(i), Relaxed);
                    break;
                }
            }
        }
        if decay {
            self.since_decay.store(0, Relaxed);
            for b in self.buckets.iter() {
                let _ = b.fetch_update(Relaxed, Relaxed, |c| Some(c / 2));
            }
        }
    }

    /// The tracked percentile of recent latencies; `None` until [`MIN_SAMPLES`] are in.
    pub(crate) fn percentile(&self) -> Option<Duration> {
        match self.cached_micros.load(Relaxed) {
            u64::MAX => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_within_an_eighth() {
        let mut last = 0;
        for micros in (0..100_000u64).chain([1 << 20, 1 << 29, u64::MAX / 2]) {
            let i = index(micros);
            assert!(i >= last, "{micros}");
            last = i;
            if micros < 1 << 29 {
                let upper = upper_bound(i);
                assert!(upper >= micros, "{micros} in {i} ≤ {upper}");
                assert!(
                    upper as f64 <= micros as f64 * 1.125 + 1.0,
                    "{micros}: {upper}"
                );
            }
        }
    }

    #[test]
    fn no_percentile_before_a_hundred_calls_then_about_the_p95() {
        let latency = Latency::new(95.0);
        for _ in 0..63 {
            latency.record(Duration::from_millis(1));
        }
        assert_eq!(latency.percentile(), None);
        // 96 fast calls in a hundred, 4 slow ones, repeated.
        for i in 0..2_000 {
            let ms = if i % 100 < 96 { 1 } else { 50 };
            latency.record(Duration::from_millis(ms));
        }
        let p95 = latency.percentile().expect("warmed up");
        assert!(
            p95 >= Duration::from_millis(1) && p95 <= Duration::from_micros(1_130),
            "{p95:?}"
        );
        // The target slows down: the estimate follows within a couple of thousand calls.
        for _ in 0..3_000 {
            latency.record(Duration::from_millis(20));
        }
        let p95 = latency.percentile().expect("warmed up");
        assert!(
            p95 >= Duration::from_millis(20) && p95 <= Duration::from_micros(22_600),
            "{p95:?}"
        );
    }
}
