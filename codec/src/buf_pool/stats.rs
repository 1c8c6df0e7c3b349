//! Counters of a [`BufPool`](super::BufPool).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::MAX_SIZE_CLASSES;

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
    /// Buffers the pool held and then freed: by [`BufPool::trim`](super::BufPool::trim), or
    /// because the thread whose cache held them exited.
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
    /// Every counter as `(name, kind, help, value)` — the name without a prefix (counters
    /// without `_total`), the kind `"gauge"` or `"counter"`: what
    /// [`to_prometheus`](BufPoolStats::to_prometheus) writes, for a metrics library's own
    /// registry.
    pub fn samples(&self) -> [(&'static str, &'static str, &'static str, f64); 9] {
        let v = |n: u64| n as f64;
        [
            ("gets", "counter", "Buffers handed out.", v(self.gets)),
            (
                "hits",
                "counter",
                "Gets served from the pool.",
                v(self.hits),
            ),
            ("misses", "counter", "Gets that allocated.", v(self.misses)),
            (
                "returned",
                "counter",
                "Buffers taken back.",
                v(self.returned),
            ),
            (
                "dropped",
                "counter",
                "Buffers let go instead of kept.",
                v(self.dropped),
            ),
            (
                "trimmed",
                "counter",
                "Held buffers freed by trim.",
                v(self.trimmed),
            ),
            (
                "retained_bytes",
                "gauge",
                "Bytes held for reuse.",
                v(self.retained_bytes),
            ),
            (
                "retained_buffers",
                "gauge",
                "Buffers held for reuse.",
                v(self.retained_buffers),
            ),
            (
                "high_water_bytes",
                "gauge",
                "Upper bound on peak retained bytes.",
                v(self.high_water_bytes),
            ),
        ]
    }

    /// Renders the counters in the Prometheus text format, each metric prefixed with `prefix`.
    ///
    /// ```
    /// use longlink_codec::BufPool;
    /// let text = BufPool::new().stats().to_prometheus("bufpool");
    /// assert!(text.contains("bufpool_gets_total 0\n"));
    /// ```
    pub fn to_prometheus(&self, prefix: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (name, kind, help, value) in self.samples() {
            let suffix = if kind == "counter" { "_total" } else { "" };
            let _ = writeln!(out, "# HELP {prefix}_{name}{suffix} {help}");
            let _ = writeln!(out, "# TYPE {prefix}_{name}{suffix} {kind}");
            let _ = writeln!(out, "{prefix}_{name}{suffix} {}", value as u64);
        }
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

/// One thread's counters for one size class.
///
/// Only the owning thread writes them (plain load + store, no read-modify-write, so two
/// threads never fight over a cache line); `stats()` reads them from anywhere. The hot path
/// touches one of them per operation (`pops` on a get, `pushes` on a put): measured here,
/// every further counter updated per operation cost several nanoseconds, so everything else
/// is derived or counted on the slow paths.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct ClassCounters {
    /// Buffers handed out from this thread's cache (every hit is one).
    pub(super) pops: AtomicU64,
    /// Buffers taken back into this thread's cache.
    pub(super) pushes: AtomicU64,
    /// Buffers moved from the shared list into this thread's cache.
    pub(super) refilled: AtomicU64,
    /// Buffers moved from this thread's cache to the shared list.
    pub(super) spilled: AtomicU64,
    /// Buffers taken back straight into the shared list (a cache too small to hold any).
    pub(super) returned_shared: AtomicU64,
    /// Buffers freed from this thread's cache by `trim`.
    pub(super) trimmed: AtomicU64,
    /// Most buffers this thread's cache has held at once.
    pub(super) peak_len: AtomicU64,
}

impl ClassCounters {
    /// Buffers in this thread's cache right now.
    pub(super) fn cached(&self) -> u64 {
        let r = |c: &AtomicU64| c.load(Relaxed);
        (r(&self.pushes) + r(&self.refilled))
            .wrapping_sub(r(&self.pops) + r(&self.spilled) + r(&self.trimmed))
    }
}

/// One thread's counters for one pool.
#[derive(Debug)]
pub(super) struct ThreadCounters {
    pub(super) classes: [ClassCounters; MAX_SIZE_CLASSES],
    pub(super) misses: AtomicU64,
    pub(super) dropped: AtomicU64,
}

/// Adds to a counter only its owning thread writes.
#[inline]
pub(super) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

impl ThreadCounters {
    pub(super) fn new() -> ThreadCounters {
        ThreadCounters {
            classes: std::array::from_fn(|_| ClassCounters::default()),
            misses: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Adds this thread's counters to `stats`; `sizes` are the class sizes.
    pub(super) fn add_to(&self, stats: &mut BufPoolStats, sizes: impl Iterator<Item = usize>) {
        stats.misses += self.misses.load(Relaxed);
        stats.dropped += self.dropped.load(Relaxed);
        for (c, size) in self.classes.iter().zip(sizes) {
            let cached = c.cached();
            stats.hits += c.pops.load(Relaxed);
            stats.returned += c.pushes.load(Relaxed) + c.returned_shared.load(Relaxed);
            stats.trimmed += c.trimmed.load(Relaxed);
            stats.retained_buffers += cached;
            stats.retained_bytes += cached * size as u64;
            stats.high_water_bytes += c.peak_len.load(Relaxed) * size as u64;
        }
    }
}
