//! The push system's counters, rendered as Prometheus text at `/metrics`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use longlink_codec::BufPool;
use longlink_pool::db::Db;

use crate::courier::Courier;
use crate::pusher::Pusher;
use crate::register::Register;

/// Counters shared by every service of a process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections authenticated and open now.
    pub connections: AtomicU64,
    /// Connections accepted in total.
    pub connections_total: AtomicU64,
    /// AUTHs refused (bad or expired token, malformed).
    pub auth_failures: AtomicU64,
    /// Connections refused over the per-IP limit.
    pub ip_limited: AtomicU64,
    /// Connections dropped for missing two heartbeats (or AUTH in time).
    pub heartbeat_timeouts: AtomicU64,
    /// Connections closed for a bad or oversized frame.
    pub protocol_errors: AtomicU64,
    /// Connections closed because their send queue was full.
    pub slow_consumers: AtomicU64,
    /// Connections kicked.
    pub kicked: AtomicU64,
    /// Pushes accepted by the API.
    pub messages_in: AtomicU64,
    /// Messages written to connections.
    pub messages_out: AtomicU64,
    /// Acknowledgements received.
    pub acks: AtomicU64,
    /// Stored messages sent again (after a reconnect).
    pub redeliveries: AtomicU64,
    /// Deliveries given up (TTL or too many unacknowledged sends).
    pub expired: AtomicU64,
    /// Upstream messages received.
    pub upstream: AtomicU64,
    /// Webhook calls that failed.
    pub webhook_errors: AtomicU64,
    /// Calls to a room process that failed (cluster).
    pub room_rpc_errors: AtomicU64,
    /// Deliveries that asked every room because the register could not say (cluster).
    pub lookup_fallbacks: AtomicU64,
    /// Quick reconnects that resumed a session kept in its grace period (cluster room).
    pub resumed: AtomicU64,
    /// Times a room re-flushed its sessions into a register that lost them (cluster room).
    pub reflushes: AtomicU64,
    /// Pending lookups answered by the Redis index alone (cluster saver).
    pub hot_index_hits: AtomicU64,
    /// Pending lookups that went to MySQL (cluster saver).
    pub hot_index_misses: AtomicU64,
    /// Rebuilds of the Redis pending index from MySQL (cluster saver).
    pub hot_index_rebuilds: AtomicU64,
    /// Stale index entries pruned (cluster saver).
    pub hot_index_pruned: AtomicU64,
    /// Accepts that failed (`EMFILE` at the open-file limit, …); the loop backs off.
    pub accept_errors: AtomicU64,
    /// WebSocket upgrades refused or failed (not a valid upgrade, timed out, hung up).
    pub upgrade_failures: AtomicU64,
    /// Times the room gave memory back after many connections closed.
    pub memory_trims: AtomicU64,
    /// The open-file soft limit (gauge).
    pub fd_limit: AtomicU64,
    /// Connections this room takes before it counts as full (gauge).
    pub capacity: AtomicU64,
}

/// Increments a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Adds to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Metrics {
    /// The counters in the Prometheus text format, plus `extra` lines (queue depths, pool
    /// stats) appended as they are.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(out, "# HELP longlink_push_{name} {help}");
            let _ = writeln!(out, "# TYPE longlink_push_{name} {kind}");
            let _ = writeln!(out, "longlink_push_{name} {}", value.load(Relaxed));
        };
        metric(
            "connections",
            "gauge",
            "Connections open.",
            &self.connections,
        );
        metric(
            "connections_total",
            "counter",
            "Connections accepted.",
            &self.connections_total,
        );
        metric(
            "auth_failures_total",
            "counter",
            "AUTHs refused.",
            &self.auth_failures,
        );
        metric(
            "ip_limited_total",
            "counter",
            "Connections refused by the per-IP limit.",
            &self.ip_limited,
        );
        metric(
            "heartbeat_timeouts_total",
            "counter",
            "Connections dropped for silence.",
            &self.heartbeat_timeouts,
        );
        metric(
            "protocol_errors_total",
            "counter",
            "Connections closed for bad frames.",
            &self.protocol_errors,
        );
        metric(
            "slow_consumers_total",
            "counter",
            "Connections closed with a full send queue.",
            &self.slow_consumers,
        );
        metric(
            "kicked_total",
            "counter",
            "Connections kicked.",
            &self.kicked,
        );
        metric(
            "messages_in_total",
            "counter",
            "Pushes accepted.",
            &self.messages_in,
        );
        metric(
            "messages_out_total",
            "counter",
            "Messages written to connections.",
            &self.messages_out,
        );
        metric(
            "acks_total",
            "counter",
            "Acknowledgements received.",
            &self.acks,
        );
        metric(
            "redeliveries_total",
            "counter",
            "Stored messages sent again.",
            &self.redeliveries,
        );
        metric(
            "expired_total",
            "counter",
            "Deliveries given up.",
            &self.expired,
        );
        metric(
            "upstream_total",
            "counter",
            "Upstream messages received.",
            &self.upstream,
        );
        metric(
            "webhook_errors_total",
            "counter",
            "Webhook calls that failed.",
            &self.webhook_errors,
        );
        metric(
            "room_rpc_errors_total",
            "counter",
            "Calls to room processes that failed.",
            &self.room_rpc_errors,
        );
        metric(
            "lookup_fallbacks_total",
            "counter",
            "Deliveries that asked every room.",
            &self.lookup_fallbacks,
        );
        metric(
            "resumed_total",
            "counter",
            "Reconnects that resumed a kept session.",
            &self.resumed,
        );
        metric(
            "reflushes_total",
            "counter",
            "Re-flushes of a room's sessions into the register.",
            &self.reflushes,
        );
        metric(
            "hot_index_hits_total",
            "counter",
            "Pending lookups answered by the Redis index.",
            &self.hot_index_hits,
        );
        metric(
            "hot_index_misses_total",
            "counter",
            "Pending lookups that read MySQL.",
            &self.hot_index_misses,
        );
        metric(
            "hot_index_rebuilds_total",
            "counter",
            "Rebuilds of the pending index.",
            &self.hot_index_rebuilds,
        );
        metric(
            "hot_index_pruned_total",
            "counter",
            "Stale pending-index entries pruned.",
            &self.hot_index_pruned,
        );
        metric(
            "accept_errors_total",
            "counter",
            "Accepts that failed (the loop backs off).",
            &self.accept_errors,
        );
        metric(
            "upgrade_failures_total",
            "counter",
            "WebSocket upgrades refused or failed.",
            &self.upgrade_failures,
        );
        metric(
            "memory_trims_total",
            "counter",
            "Times the room returned free memory after many connections closed.",
            &self.memory_trims,
        );
        metric(
            "fd_limit",
            "gauge",
            "The process's open-file soft limit.",
            &self.fd_limit,
        );
        metric(
            "capacity",
            "gauge",
            "Connections the room takes before it counts as full.",
            &self.capacity,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let _ = writeln!(
                out,
                "# HELP longlink_push_tasks Tasks alive in the process's runtime.\n\
                 # TYPE longlink_push_tasks gauge\nlonglink_push_tasks {}",
                runtime.metrics().num_alive_tasks()
            );
        }
        out.push_str(extra);
        out
    }
}

/// What one process's `/metrics` shows: its counters, and the gauges of the components it
/// runs, read at each scrape.
#[derive(Clone)]
pub struct Scrape {
    metrics: Arc<Metrics>,
    sources: Vec<Source>,
}

#[derive(Clone)]
enum Source {
    Text(Arc<dyn Fn() -> String + Send + Sync>),
    Register(Arc<dyn Register>),
    Queues(Arc<dyn Fn() -> Vec<(&'static str, usize)> + Send + Sync>),
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape")
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl Scrape {
    /// The counters of `metrics`, and the buffer pool's.
    pub fn new(metrics: Arc<Metrics>) -> Scrape {
        Scrape {
            metrics,
            sources: Vec::new(),
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Adds lines `render` writes at each scrape.
    pub fn with_text(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Scrape {
        self.sources.push(Source::Text(Arc::new(render)));
        self
    }

    /// Adds the register's counts.
    pub fn with_register(mut self, register: Arc<dyn Register>) -> Scrape {
        self.sources.push(Source::Register(register));
        self
    }

    /// Adds the database pool's counters.
    pub fn with_db(self, db: Db) -> Scrape {
        self.with_text(move || db.stats().to_prometheus("longlink_push_db", &[]))
    }

    /// Adds the pusher's queue depths.
    pub fn with_pusher(mut self, pusher: Arc<Pusher>) -> Scrape {
        let weak = Arc::downgrade(&pusher);
        self.sources.push(Source::Queues(Arc::new(move || {
            weak.upgrade()
                .map(|p| p.records().queues().to_vec())
                .unwrap_or_default()
        })));
        self
    }

    /// Adds the courier's queue depths.
    pub fn with_courier(mut self, courier: Arc<Courier>) -> Scrape {
        let weak = Arc::downgrade(&courier);
        self.sources.push(Source::Queues(Arc::new(move || {
            weak.upgrade()
                .map(|c| c.queues().to_vec())
                .unwrap_or_default()
        })));
        self
    }

    /// Adds the coordinator's queue of webhooks.
    pub fn with_coordinator(mut self, coordinator: crate::coordinator::Coordinator) -> Scrape {
        self.sources.push(Source::Queues(Arc::new(move || {
            vec![("webhooks", coordinator.queued())]
        })));
        self
    }

    /// The page.
    pub async fn render(&self) -> String {
        let mut extra = String::new();
        // Pools of the same name in several components of this process add up.
        let mut queues = std::collections::BTreeMap::<&'static str, usize>::new();
        for source in &self.sources {
            match source {
                Source::Text(render) => extra.push_str(&render()),
                Source::Queues(q) => {
                    for (name, depth) in q() {
                        *queues.entry(name).or_default() += depth;
                    }
                }
                Source::Register(register) => {
                    if let Ok(c) = register.counts().await {
                        let _ = write!(
                            extra,
                            "# HELP longlink_push_register_sessions Users with a session in the register.\n# TYPE longlink_push_register_sessions gauge\nlonglink_push_register_sessions {}\n# HELP longlink_push_register_groups Groups in the register.\n# TYPE longlink_push_register_groups gauge\nlonglink_push_register_groups {}\n",
                            c.users, c.groups
                        );
                    }
                }
            }
        }
        if !queues.is_empty() {
            extra.push_str("# HELP longlink_push_queue_depth Jobs waiting in a worker pool.\n# TYPE longlink_push_queue_depth gauge\n");
            for (name, depth) in queues {
                let _ = writeln!(
                    extra,
                    "longlink_push_queue_depth{{queue=\"{name}\"}} {depth}"
                );
            }
        }
        extra.push_str(
            &BufPool::global()
                .stats()
                .to_prometheus("longlink_push_bufpool"),
        );
        self.metrics.render(&extra)
    }

    /// The page as an HTTP response.
    pub async fn response(&self) -> Response {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            self.render().await,
        )
            .into_response()
    }
}
