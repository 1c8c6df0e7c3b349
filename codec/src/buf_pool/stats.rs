//! Counters of a [`BufPool`](super::BufPool).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a [`BufPool`](super::BufPool)'s counters, from [`BufPool::stats`](super::BufPool::stats).
///
/// The `*_total`-style fields only grow; `retained_*` go up and down. Two identities hold
/// once every handle has been dropped and can be used to check the pool: every handle is
/// either taken back or let go exactly once (`gets == returned + dropped`), and every
/// buffer the pool took back is either still held or was handed out again
/// (`returned == retained_buffers + hits + trimmed`).
///
/// ```
/// use longlink_codec::BufPool;
///
/// let pool = BufPool::new();
/// drop(pool.get(1000)); // miss: allocated, then returned
/// drop(pool.get(1000)); // hit: the same buffer again
/// let stats = pool.stats();
/// assert_eq!((stats.gets, stats.hits, stats.misses), (2, 1, 1));
/// assert_eq!((stats.returned, stats.dropped), (2, 0));
/// assert_eq!(stats.retained_bytes, 1024);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufPoolStats {
    /// Buffers handed out by `get`.
    pub gets: u64,
    /// Gets served from a thread cache or the shared free list.
    pub hits: u64,
    /// Gets that allocated a new buffer (including requests larger than the largest class).
    pub misses: u64,
    /// Buffers taken back into the pool when their handle dropped.
    pub returned: u64,
    /// Buffers let go instead of taken back: grown past their class, still shared with a
    /// `Bytes`, larger than the largest class, arriving when their class was full, or
    /// detached with `into_inner`.
    pub dropped: u64,
    /// Buffers the pool held and then freed in [`BufPool::trim`](super::BufPool::trim).
    pub trimmed: u64,
    /// Bytes held right now by free lists and thread caches (capacity, not length).
    pub retained_bytes: u64,
    /// Buffers held right now by free lists and thread caches.
    pub retained_buffers: u64,
    /// An upper bound on the peak of `retained_bytes`: the sum of each free list's and each
    /// thread cache's own peak. Exact when one thread uses the pool.
    pub high_water_bytes: u64,
}

impl BufPoolStats {
    /// Renders the counters in the Prometheus text format, each metric prefixed with `prefix`.
    ///
    /// ```
    /// use longlink_codec::BufPool;
    /// let text = BufPool::new().stats().to_prometheus("bufpool");
    /// assert!(text.contains("bufpool_gets_total 0\n"));
    /// ```
    pub fn to_prometheus(&self, prefix: &str) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            use std::fmt::Write;
            let _ = writeln!(out, "# HELP {prefix}_{name} {help}");
            let _ = writeln!(out, "# TYPE {prefix}_{name} {kind}");
            let _ = writeln!(out, "{prefix}_{name} {value}");
        };
        metric("gets_total", "counter", "Buffers handed out.", self.gets);
        metric(
            "hits_total",
            "counter",
            "Gets served from the pool.",
            self.hits,
        );
        metric(
            "misses_total",
            "counter",
            "Gets that allocated.",
            self.misses,
        );
        metric(
            "returned_total",
            "counter",
            "Buffers taken back.",
            self.returned,
        );
        metric(
            "dropped_total",
            "counter",
            "Buffers let go instead of kept.",
            self.dropped,
        );
        metric(
            "trimmed_total",
            "counter",
            "Held buffers freed by trim.",
            self.trimmed,
        );
        metric(
            "retained_bytes",
            "gauge",
            "Bytes held for reuse.",
            self.retained_bytes,
        );
        metric(
            "retained_buffers",
            "gauge",
            "Buffers held for reuse.",
            self.retained_buffers,
        );
        metric(
            "high_water_bytes",
            "gauge",
            "Upper bound on peak retained bytes.",
            self.high_water_bytes,
        );
        out
    }
}

impl fmt::Display for BufPoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gets={} hits={} misses={} returned={} dropped={} trimmed={} retained={}B/{} high_water={}B",
            self.gets,
            self.hits,
            self.misses,
            self.returned,
            self.dropped,
            self.trimmed,
            self.retained_bytes,
            self.retained_buffers,
            self.high_water_bytes
        )
    }
}

/// One thread's counters. Only the owning thread writes them (plain load + store, no
/// read-modify-write, so two threads never fight over a cache line); `stats()` reads them
/// from anywhere. Aligned so two threads' counters never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct ThreadCounters {
    pub(super) gets: AtomicU64,
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) returned: AtomicU64,
    pub(super) dropped: AtomicU64,
    /// Bytes in this thread's cache right now.
    pub(super) cached_bytes: AtomicU64,
    /// Buffers in this thread's cache right now.
    pub(super) cached_buffers: AtomicU64,
    /// Peak of `cached_bytes`.
    pub(super) peak_bytes: AtomicU64,
}

/// Adds to a counter only its owning thread writes.
#[inline]
pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtracts from a counter only its owning thread writes.
#[inline]
pub(super) fn drain(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}

impl ThreadCounters {
    pub(super) fn add_to(&self, stats: &mut BufPoolStats) {
        stats.gets += self.gets.load(Relaxed);
        stats.hits += self.hits.load(Relaxed);
        stats.misses += self.misses.load(Relaxed);
        stats.returned += self.returned.load(Relaxed);
        stats.dropped += self.dropped.load(Relaxed);
        stats.retained_bytes += self.cached_bytes.load(Relaxed);
        stats.retained_buffers += self.cached_buffers.load(Relaxed);
        stats.high_water_bytes += self.peak_bytes.load(Relaxed);
    }

    #[inline]
    pub(super) fn cache_in(&self, bytes: u64, buffers: u64) {
        bump(&self.cached_bytes, bytes);
        bump(&self.cached_buffers, buffers);
        let now = self.cached_bytes.load(Relaxed);
        if now > self.peak_bytes.load(Relaxed) {
            self.peak_bytes.store(now, Relaxed);
        }
    }

    #[inline]
    pub(super) fn cache_out(&self, bytes: u64, buffers: u64) {
        drain(&self.cached_bytes, bytes);
        drain(&self.cached_buffers, buffers);
    }
}
