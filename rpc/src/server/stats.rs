//! Server counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Shared;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) deadline_dropped: AtomicU64,
    pub(crate) deadline_abandoned: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) draining_refused: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, shared: &Shared) -> ServerStats {
        ServerStats {
            connections_open: self.connections_open.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            requests: self.requests.load(Relaxed),
            in_flight: (shared.config.max_concurrent - shared.global.available_permits()) as u64,
            rejected: self.rejected.load(Relaxed),
            deadline_dropped: self.deadline_dropped.load(Relaxed),
            deadline_abandoned: self.deadline_abandoned.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            draining_refused: self.draining_refused.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
        }
    }
}

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted in total.
    pub connections_total: u64,
    /// Requests received in total.
    pub requests: u64,
    /// Handlers running now.
    pub in_flight: u64,
    /// Requests refused over the limits (the handler did not run).
    pub rejected: u64,
    /// Requests whose deadline passed before they were dispatched.
    pub deadline_dropped: u64,
    /// Handlers abandoned when the deadline passed while they ran (the caller was told
    /// `DEADLINE_EXCEEDED`; the work may have been partly done).
    pub deadline_abandoned: u64,
    /// Requests the client cancelled before they finished (queued or running).
    pub cancelled: u64,
    /// Requests refused because the server was draining.
    pub draining_refused: u64,
    /// Connections closed for breaking the protocol (bad frames, wrong version).
    pub protocol_errors: u64,
}
