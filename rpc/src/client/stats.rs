//! What a client reports: flow control, connections, retries and hedges.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Backend, Client};
use crate::metrics::CallLatency;

/// A snapshot of a client's state.
///
/// ```
/// let client = longlink_rpc::Client::new("127.0.0.1:7000");
/// let stats = client.stats();
/// assert_eq!((stats.in_flight, stats.overloaded), (0, 0));
/// assert!(stats.latency.is_empty()); // a row per method once called
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Calls holding an in-flight slot.
    pub in_flight: usize,
    /// Request bytes in flight.
    pub in_flight_bytes: usize,
    /// Calls waiting for a slot.
    pub queued: usize,
    /// Calls refused with `Overloaded`, in total.
    pub overloaded: u64,
    /// Open connections.
    pub open_connections: usize,
    /// Calls registered on multiplexed connections, awaiting an answer.
    pub pending: usize,
    /// Attempts sent to this target as retries (of calls that failed here or, behind a
    /// balancer, on another instance).
    pub retries: u64,
    /// Retries the budget of this target refused (the call failed with its error).
    pub retries_refused: u64,
    /// Hedges sent to this target (second copies of slow idempotent calls).
    pub hedges: u64,
    /// Hedges sent here that answered first.
    pub hedges_won: u64,
    /// Hedges the budget of this target refused.
    pub hedges_refused: u64,
    /// Retries (or hedges) the budget allows now.
    pub retry_budget: u64,
    /// Latency histograms per method — queue wait and round trip — by method id, the
    /// `other` row last ([`metrics`](crate::metrics) says what is measured where). Shared
    /// with other clients built with the same [`histograms`](super::Builder::histograms).
    pub latency: Vec<CallLatency>,
    /// Request bodies compressed, answers decompressed (feature `compression`).
    #[cfg(feature = "compression")]
    pub compression: crate::CompressionStats,
}

impl Client {
    /// The counters.
    pub fn stats(&self) -> ClientStats {
        let limits = &self.inner.limits;
        let (open_connections, pending) = match &self.inner.backend {
            Backend::Multiplexed(slots) => (slots.open(), slots.pending()),
            Backend::Pooled(pool) => (pool.stats().open, 0),
            Backend::Short => (0, 0),
        };
        let retry = &self.inner.retry;
        let load = |counter: &AtomicU64| counter.load(Relaxed);
        ClientStats {
            in_flight: limits.in_flight(),
            in_flight_bytes: limits.in_flight_bytes(),
            queued: limits.queued(),
            overloaded: load(&limits.overloaded),
            open_connections,
            pending,
            retries: load(&retry.retries),
            retries_refused: load(&retry.retries_refused),
            hedges: load(&retry.hedges),
            hedges_won: load(&retry.hedges_won),
            hedges_refused: load(&retry.hedges_refused),
            retry_budget: retry.budget.available(),
            latency: self.inner.histograms.snapshot(),
            #[cfg(feature = "compression")]
            compression: self.inner.config.compression.stats(),
        }
    }
}
