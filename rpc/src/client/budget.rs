//! The retry budget of one target: retries (and hedges) allowed as a share of the calls
//! made recently, plus a small floor, so a failing target is never met by a retry storm.
//!
//! Finagle's `RetryBudget`, without its lock: the window (10 s by default) is cut into ten
//! buckets, and each bucket is one `AtomicU64` for calls and one for retries, each packing
//! the bucket's epoch (which slice of time it counts) with its count. A call is one load
//! and one `fetch_add` (plus a compare-and-swap when it is the first of a new slice); a
//! retry sums the twenty counters. Nothing allocates, nothing blocks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window: a call stops counting between 90% and 100% of the window after it
/// was made.
const BUCKETS: usize = 10;

/// How many retries a target allows: `percent` of the calls made in the last `window`,
/// plus `min_per_second` × the window's seconds (the floor, for a client that has just
/// started or calls rarely). Retries and hedges count against it for a window too.
///
/// The default, 10% + 10 per second over 10 s, lets a target that fails everything see at
/// most 1.1 × the calls plus 100 retries per 10 s, whatever the callers do, while a target
/// that fails now and then gets every failure retried. (Finagle's default is 20% + 10/s;
/// these retries are of calls that did not run or that are idempotent, so a tighter share
/// is enough.)
///
/// ```
/// use std::time::Duration;
/// use longlink_rpc::client::RetryBudget;
///
/// let budget = RetryBudget::default();
/// assert_eq!((budget.percent, budget.min_per_second, budget.window), (10, 10, Duration::from_secs(10)));
/// // One retry for every five calls, a floor of one a second, over a minute.
/// let generous = RetryBudget::new(20, 1, Duration::from_secs(60));
/// assert_eq!(generous.percent, 20);
/// // No retries at all, not even the floor.
/// assert_eq!(RetryBudget::none().percent + RetryBudget::none().min_per_second, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryBudget {
    /// Retries allowed per 100 calls made in the window (may exceed 100).
    pub percent: u32,
    /// Retries allowed per second of the window whatever the traffic (the floor).
    pub min_per_second: u32,
    /// How long a call (and a retry) counts: between 1 s and 60 s.
    pub window: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            percent: 10,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

impl RetryBudget {
    /// A budget of `percent` of the calls plus `min_per_second`, counted over `window`
    /// (clamped to 1–60 s).
    pub fn new(percent: u32, min_per_second: u32, window: Duration) -> RetryBudget {
        RetryBudget {
            percent,
            min_per_second,
            window: window.clamp(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }

    /// A budget that allows nothing: every retry and hedge is refused (and counted).
    pub fn none() -> RetryBudget {
        RetryBudget::new(0, 0, Duration::from_secs(10))
    }

    /// The floor: retries allowed per window without any calls.
    fn reserve(&self) -> u64 {
        (u64::from(self.min_per_second) * self.window.as_millis() as u64) / 1000
    }
}

/// The counters behind a [`RetryBudget`], shared by every clone of a client.
#[derive(Debug)]
pub(crate) struct Budget {
    config: RetryBudget,
    start: Instant,
    /// `window / BUCKETS`, in nanoseconds (at least 1).
    slice_nanos: u64,
    calls: [AtomicU64; BUCKETS],
    retries: [AtomicU64; BUCKETS],
}

/// The high half of a bucket is its epoch, the low half its count.
fn pack(epoch: u32, count: u32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(count)
}

fn epoch_of(v: u64) -> u32 {
    (v >> 32) as u32
}

fn count_of(v: u64) -> u32 {
    v as u32
}

impl Budget {
    pub(crate) fn new(config: RetryBudget) -> Budget {
        Budget {
            slice_nanos: ((config.window.as_nanos() / BUCKETS as u128) as u64).max(1),
            config,
            start: Instant::now(),
            calls: Default::default(),
            retries: Default::default(),
        }
    }

    /// The slice of time now (wraps after 2³² slices: centuries at the default).
    fn epoch(&self) -> u32 {
        (self.start.elapsed().as_nanos() as u64 / self.slice_nanos) as u32
    }

    /// Counts one into the bucket of `epoch`, starting the bucket over if it still holds
    /// an older slice.
    fn bump(bucket: &AtomicU64, epoch: u32) {
        let mut v = bucket.load(Relaxed);
        loop {
            if epoch_of(v) == epoch {
                if count_of(v) < u32::MAX {
                    // A bucket restarted between the load and here takes this one too:
                    // off by one at a slice's edge, never more.
                    bucket.fetch_add(1, Relaxed);
                }
                return;
            }
            if epoch.wrapping_sub(epoch_of(v)) > u32::MAX / 2 {
                // Our clock read is older than the bucket's slice (a slow thread): count
                // it there rather than wipe a newer slice.
                bucket.fetch_add(1, Relaxed);
                return;
            }
            match bucket.compare_exchange_weak(v, pack(epoch, 1), Relaxed, Relaxed) {
                Ok(_) => return,
                Err(now) => v = now,
            }
        }
    }

    /// Takes back one counted by [`bump`](Self::bump) at `epoch`, if the bucket still holds
    /// that slice.
    fn unbump(bucket: &AtomicU64, epoch: u32) {
        let _ = bucket.fetch_update(Relaxed, Relaxed, |v| {
            (epoch_of(v) == epoch && count_of(v) > 0).then(|| v - 1)
        });
    }

    /// The counts of the slices within the window ending at `epoch`.
    fn sum(buckets: &[AtomicU64; BUCKETS], epoch: u32) -> u64 {
        buckets
            .iter()
            .map(|b| b.load(Relaxed))
            .filter(|v| epoch.wrapping_sub(epoch_of(*v)) < BUCKETS as u32)
            .map(|v| u64::from(count_of(v)))
            .sum()
    }

    /// Counts a call: it earns `percent`/100 of a retry for the window.
    pub(crate) fn deposit(&self) {
        let epoch = self.epoch();
        Self::bump(&self.calls[epoch as usize % BUCKETS], epoch);
    }

    /// Takes one retry if the budget has one. The retry is counted first and taken back
    /// when over, so callers racing for the last retry cannot all get it.
    pub(crate) fn try_withdraw(&self) -> bool {
        let epoch = self.epoch();
        let bucket = &self.retries[epoch as usize % BUCKETS];
        Self::bump(bucket, epoch);
        let calls = Self::sum(&self.calls, epoch);
        let retries = Self::sum(&self.retries, epoch);
        let allowed = calls * u64::from(self.config.percent) / 100 + self.config.reserve();
        if retries <= allowed {
            true
        } else {
            Self::unbump(bucket, epoch);
            false
        }
    }

    /// Retries the budget allows now.
    pub(crate) fn available(&self) -> u64 {
        let epoch = self.epoch();
        let calls = Self::sum(&self.calls, epoch);
        let retries = Self::sum(&self.retries, epoch);
        (calls * u64::from(self.config.percent) / 100 + self.config.reserve())
            .saturating_sub(retries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_then_a_share_of_the_calls() {
        let budget = Budget::new(RetryBudget::new(10, 2, Duration::from_secs(10)));
        // The floor: 2 a second over 10 s.
        assert_eq!(budget.available(), 20);
        assert_eq!((0..100).filter(|_| budget.try_withdraw()).count(), 20);
        assert!(
            !budget.try_withdraw(),
            "refusals are not counted as retries"
        );
        // Every ten calls earn one more.
        for _ in 0..95 {
            budget.deposit();
        }
        assert_eq!(budget.available(), 9);
        assert_eq!((0..100).filter(|_| budget.try_withdraw()).count(), 9);
    }

    #[test]
    fn no_budget_refuses_everything() {
        let budget = Budget::new(RetryBudget::none());
        for _ in 0..1000 {
            budget.deposit();
        }
        assert!(!budget.try_withdraw());
    }

    #[test]
    fn racing_withdrawals_never_overspend() {
        let budget = std::sync::Arc::new(Budget::new(RetryBudget::new(
            10,
            0,
            Duration::from_secs(60),
        )));
        for _ in 0..1000 {
            budget.deposit();
        }
        let taken: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..100).filter(|_| budget.try_withdraw()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(taken, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_and_retries_stop_counting_after_the_window() {
        let budget = Budget::new(RetryBudget::new(50, 0, Duration::from_secs(10)));
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!((0..10).filter(|_| budget.try_withdraw()).count(), 5);
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..10 {
            budget.deposit();
        }
        // Half way: both slices count; the five retries taken still do.
        assert_eq!(budget.available(), 5);
        tokio::time::advance(Duration::from_secs(6)).await;
        // The first calls and their retries are gone; the later calls remain.
        assert_eq!(budget.available(), 5);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(budget.available(), 0);
    }
}
