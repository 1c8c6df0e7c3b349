//! Server counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Shared;
use crate::metrics::HandlerLatency;

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
    #[cfg(feature = "tls")]
    pub(crate) tls_handshakes: AtomicU64,
    #[cfg(feature = "tls")]
    pub(crate) tls_handshake_failures: AtomicU64,
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
            #[cfg(feature = "tls")]
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            #[cfg(feature = "tls")]
            tls_handshake_failures: self.tls_handshake_failures.load(Relaxed),
            latency: shared
                .latency
                .snapshot()
                .into_iter()
                .map(HandlerLatency::from_row)
                .collect(),
            #[cfg(feature = "compression")]
            compression: shared.config.compression.stats(),
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
    /// TLS handshakes completed (feature `tls`).
    #[cfg(feature = "tls")]
    pub tls_handshakes: u64,
    /// TLS handshakes that failed (feature `tls`): refused by rustls (a client certificate
    /// missing or from another CA), a plaintext client, a client that went away or stayed
    /// silent past the handshake timeout. (Handshakes cut short by a shutdown are not
    /// counted.)
    #[cfg(feature = "tls")]
    pub tls_handshake_failures: u64,
    /// Latency histograms per method — queue and handler — by method id, the `other` row
    /// last ([`metrics`](crate::metrics) says what is measured where). Not in
    /// [`samples`](ServerStats::samples): render them with
    /// [`render_prometheus`](ServerStats::render_prometheus).
    pub latency: Vec<HandlerLatency>,
    /// Requests decompressed, answers compressed, compressed requests refused (feature
    /// `compression`).
    #[cfg(feature = "compression")]
    pub compression: crate::CompressionStats,
}

impl ServerStats {
    /// Every counter as `(name, kind, help, value)` — the name without a prefix (counters
    /// without `_total`), the kind `"gauge"` or `"counter"` — for a metrics library's own
    /// registry.
    ///
    /// ```
    /// let stats = longlink_rpc::ServerStats::default();
    /// assert!(stats.samples().contains(&("connections_open", "gauge", "Connections open.", 0.0)));
    /// ```
    pub fn samples(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        let c = |v: u64| v as f64;
        #[allow(unused_mut)] // more rows with the `tls` and `compression` features
        let mut rows = vec![
            (
                "connections_open",
                "gauge",
                "Connections open.",
                c(self.connections_open),
            ),
            (
                "connections",
                "counter",
                "Connections accepted.",
                c(self.connections_total),
            ),
            (
                "requests",
                "counter",
                "Requests received.",
                c(self.requests),
            ),
            ("in_flight", "gauge", "Handlers running.", c(self.in_flight)),
            (
                "rejected",
                "counter",
                "Requests refused over the limits (not run).",
                c(self.rejected),
            ),
            (
                "deadline_dropped",
                "counter",
                "Requests whose deadline passed before dispatch.",
                c(self.deadline_dropped),
            ),
            (
                "deadline_abandoned",
                "counter",
                "Handlers abandoned at their deadline.",
                c(self.deadline_abandoned),
            ),
            (
                "cancelled",
                "counter",
                "Requests the client cancelled.",
                c(self.cancelled),
            ),
            (
                "draining_refused",
                "counter",
                "Requests refused while draining (not run).",
                c(self.draining_refused),
            ),
            (
                "protocol_errors",
                "counter",
                "Connections closed for breaking the protocol.",
                c(self.protocol_errors),
            ),
        ];
        #[cfg(feature = "tls")]
        rows.extend([
            (
                "tls_handshakes",
                "counter",
                "TLS handshakes completed.",
                c(self.tls_handshakes),
            ),
            (
                "tls_handshake_failures",
                "counter",
                "TLS handshakes that failed (refused, plaintext, cut short, timed out).",
                c(self.tls_handshake_failures),
            ),
        ]);
        #[cfg(feature = "compression")]
        {
            let z = &self.compression;
            rows.extend([
                (
                    "compressed_sent",
                    "counter",
                    "Answers sent compressed.",
                    c(z.sent),
                ),
                (
                    "compressed_sent_body_bytes",
                    "counter",
                    "Bytes of the answers sent compressed, before compression.",
                    c(z.sent_body_bytes),
                ),
                (
                    "compressed_sent_wire_bytes",
                    "counter",
                    "Bytes of the answers sent compressed, on the wire.",
                    c(z.sent_wire_bytes),
                ),
                (
                    "compression_sent_as_is",
                    "counter",
                    "Answers over the threshold sent uncompressed (compressing saved too little).",
                    c(z.sent_as_is),
                ),
                (
                    "compressed_received",
                    "counter",
                    "Compressed requests decompressed.",
                    c(z.received),
                ),
                (
                    "compressed_received_wire_bytes",
                    "counter",
                    "Bytes of the compressed requests, on the wire.",
                    c(z.received_wire_bytes),
                ),
                (
                    "compressed_received_body_bytes",
                    "counter",
                    "Bytes of the compressed requests, decompressed.",
                    c(z.received_body_bytes),
                ),
                (
                    "compressed_refused",
                    "counter",
                    "Compressed requests refused (corrupt, over the limit, not negotiated; not run).",
                    c(z.refused),
                ),
            ]);
        }
        rows
    }
}
