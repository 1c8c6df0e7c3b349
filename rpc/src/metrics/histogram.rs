//! A latency histogram with fixed buckets, recorded with relaxed atomics.
//!
//! The buckets are the same everywhere (every client, every server, every process), so
//! Prometheus can add them up across instances: 1-2-5 steps from 1 µs to 10 s, then `+Inf`.
//! A 1-2-5 layout puts the thresholds people write SLOs against (1 ms, 10 ms, 100 ms, 1 s)
//! on bucket bounds exactly, so `le="0.01"` answers "how many within 10 ms" without
//! interpolation; each bucket spans 2–2.5×, about what powers of two give, and the labels
//! stay readable (`le="0.002"`, not `le="0.002097152"`). Finding a bucket is a binary search
//! over 22 bounds (five comparisons) — nothing next to a call's own cost.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Buckets of a histogram: the 22 finite bounds of [`Histogram::BOUNDS`] and `+Inf`.
pub const BUCKETS: usize = 23;

const fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// The bounds in nanoseconds, for the recording path.
const BOUNDS_NANOS: [u64; BUCKETS - 1] = {
    let mut out = [0u64; BUCKETS - 1];
    let mut i = 0;
    while i < BUCKETS - 1 {
        out[i] = Histogram::BOUNDS[i].as_nanos() as u64;
        i += 1;
    }
    out
};

/// A histogram of durations with the fixed buckets of [`BOUNDS`](Histogram::BOUNDS).
///
/// [`record`](Histogram::record) is two relaxed `fetch_add`s (the bucket, the sum in
/// nanoseconds) and never allocates or locks; many threads record into one histogram at
/// once. The count is the sum of the buckets, so a snapshot's `+Inf` bucket always equals
/// its count.
///
/// ```
/// use std::time::Duration;
/// use longlink_rpc::metrics::Histogram;
///
/// let h = Histogram::new();
/// h.record(Duration::from_micros(300));
/// h.record(Duration::from_millis(3));
/// let s = h.snapshot();
/// assert_eq!(s.count(), 2);
/// assert_eq!(s.sum(), Duration::from_micros(3_300));
/// assert_eq!(s.count_within(Duration::from_millis(1)), 1); // the `le="0.001"` bucket
/// ```
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// The finite upper bounds (inclusive, as Prometheus's `le`): 1, 2, 5, 10, 20, 50 µs …
    /// 1, 2, 5, 10 s. Longer durations fall in the last bucket, `+Inf`.
    pub const BOUNDS: [Duration; BUCKETS - 1] = [
        us(1),
        us(2),
        us(5),
        us(10),
        us(20),
        us(50),
        us(100),
        us(200),
        us(500),
        us(1_000),
        us(2_000),
        us(5_000),
        us(10_000),
        us(20_000),
        us(50_000),
        us(100_000),
        us(200_000),
        us(500_000),
        us(1_000_000),
        us(2_000_000),
        us(5_000_000),
        us(10_000_000),
    ];

    /// An empty histogram.
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// The bucket `nanos` falls in: the first whose bound is at least `nanos`.
    fn bucket(nanos: u64) -> usize {
        BOUNDS_NANOS.partition_point(|&bound| bound < nanos)
    }

    /// Counts one duration. (The sum is kept in nanoseconds in a `u64`: it wraps after
    /// 584 years of total time, as a counter would reset.)
    pub fn record(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[Self::bucket(nanos)].fetch_add(1, Relaxed);
        if nanos > 0 {
            self.sum_nanos.fetch_add(nanos, Relaxed);
        }
    }

    /// The counts now. Taken bucket by bucket while others may record: a snapshot may miss
    /// a record in flight, or have its bucket and not yet its sum, never more.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_nanos: self.sum_nanos.load(Relaxed),
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// The counts of a [`Histogram`] at one moment: per bucket, and the sum.
///
/// ```
/// use std::time::Duration;
/// use longlink_rpc::metrics::Histogram;
///
/// let h = Histogram::new();
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let s = h.snapshot();
/// // Percentiles are estimated within a bucket, as Prometheus's `histogram_quantile` does.
/// assert!(s.p50().unwrap() > Duration::from_millis(20) && s.p50().unwrap() <= Duration::from_millis(50));
/// assert!(s.p99().unwrap() > Duration::from_millis(50) && s.p99().unwrap() <= Duration::from_millis(100));
/// // Prometheus's cumulative buckets: (le in seconds, count), the last one +Inf.
/// let (le, n) = s.buckets().last().unwrap();
/// assert_eq!((le, n), (f64::INFINITY, 100));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct HistogramSnapshot {
    counts: [u64; BUCKETS],
    sum_nanos: u64,
}

impl HistogramSnapshot {
    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their sum.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }

    /// The count in each bucket (not cumulative), the bucket of [`Histogram::BOUNDS`]`[i]`
    /// at `i` and `+Inf` last — what `prometheus-client`'s `encode_histogram` takes.
    pub fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// Prometheus's buckets: `(le, cumulative count)` for each bound in seconds, the last
    /// `(f64::INFINITY, count)`.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = Histogram::BOUNDS
            .iter()
            .map(Duration::as_secs_f64)
            .chain([f64::INFINITY]);
        bounds.zip(self.counts.iter().scan(0u64, |total, n| {
            *total += n;
            Some(*total)
        }))
    }

    /// Durations counted at or under `bound`, when `bound` is one of the
    /// [bounds](Histogram::BOUNDS) (otherwise those in the buckets wholly under it).
    pub fn count_within(&self, bound: Duration) -> u64 {
        let buckets = Histogram::BOUNDS.partition_point(|b| *b <= bound);
        self.counts[..buckets].iter().sum()
    }

    /// The `q` quantile (0 ≤ q ≤ 1), interpolated linearly within its bucket as
    /// Prometheus's `histogram_quantile` does; the largest finite bound (10 s) when it falls
    /// in `+Inf`; `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(upper) = Histogram::BOUNDS.get(i) else {
                    return Some(Histogram::BOUNDS[BUCKETS - 2]);
                };
                let lower = if i == 0 {
                    Duration::ZERO
                } else {
                    Histogram::BOUNDS[i - 1]
                };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + (*upper - lower).mul_f64(within));
            }
            below += n;
        }
        Some(Histogram::BOUNDS[BUCKETS - 2])
    }

    /// The median (see [`quantile`](HistogramSnapshot::quantile)).
    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.5)
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Option<Duration> {
        self.quantile(0.9)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }

    /// Adds `other`'s counts to these (several clients of one service shown as one).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.sum_nanos = self.sum_nanos.saturating_add(other.sum_nanos);
    }
}

/// Short: the count, the sum and two percentiles (the buckets are in
/// [`counts`](HistogramSnapshot::counts)), so a `{:?}` of stats stays readable.
impl fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count())
            .field("sum", &self.sum())
            .field("p50", &self.p50())
            .field("p99", &self.p99())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_like_le() {
        let h = Histogram::new();
        h.record(Duration::from_millis(1));
        h.record(Duration::from_nanos(1_000_001));
        h.record(Duration::ZERO);
        let s = h.snapshot();
        assert_eq!(s.counts()[0], 1, "zero lands in the first bucket");
        assert_eq!(s.counts()[9], 1, "1 ms exactly is in le=0.001");
        assert_eq!(s.counts()[10], 1, "just over 1 ms is in le=0.002");
    }

    #[test]
    fn durations_past_the_last_bound_land_in_inf() {
        let h = Histogram::new();
        h.record(Duration::from_secs(11));
        h.record(Duration::from_secs(3600));
        let s = h.snapshot();
        assert_eq!(s.counts()[BUCKETS - 1], 2);
        assert_eq!(s.quantile(0.5), Some(Duration::from_secs(10)));
        assert_eq!(s.sum(), Duration::from_secs(3611));
    }

    #[test]
    fn bounds_are_one_two_five_steps() {
        let micros: Vec<u128> = Histogram::BOUNDS.iter().map(|b| b.as_micros()).collect();
        for pair in micros.windows(2) {
            let ratio = pair[1] as f64 / pair[0] as f64;
            assert!(ratio == 2.0 || ratio == 2.5, "{pair:?}");
        }
        assert_eq!((micros[0], *micros.last().unwrap()), (1, 10_000_000));
    }

    #[test]
    fn cumulative_buckets_end_with_the_count() {
        let h = Histogram::new();
        for us in [3, 30, 300, 3_000, 30_000] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        let cumulative: Vec<u64> = s.buckets().map(|(_, n)| n).collect();
        assert!(cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*cumulative.last().unwrap(), s.count());
        assert_eq!(s.count_within(Duration::from_micros(500)), 3);
    }

    #[test]
    fn quantile_of_one_bucket_interpolates_within_it() {
        let h = Histogram::new();
        for _ in 0..10 {
            h.record(Duration::from_micros(30)); // the (20 µs, 50 µs] bucket
        }
        let s = h.snapshot();
        assert_eq!(s.p50(), Some(Duration::from_micros(35)));
        assert_eq!(s.quantile(1.0), Some(Duration::from_micros(50)));
        assert_eq!(HistogramSnapshot::default().p99(), None);
    }

    #[test]
    fn merged_snapshots_add_up() {
        let (a, b) = (Histogram::new(), Histogram::new());
        a.record(Duration::from_micros(10));
        b.record(Duration::from_secs(1));
        let mut s = a.snapshot();
        s.merge(&b.snapshot());
        assert_eq!(s.count(), 2);
        assert_eq!(s.sum(), Duration::from_micros(1_000_010));
    }
}
