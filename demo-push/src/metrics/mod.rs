//! The push system's metrics: typed families in a `prometheus-client` registry, served at
//! `/metrics` as OpenMetrics text. [`Metrics`] holds the counters every component bumps;
//! components with state worth a gauge (queues, rooms, pools) register a [`Computed`]
//! family read at each scrape; the RPC clients and servers add their latency histograms
//! through [`RpcLatency`]. Every name starts with `longlink_push_`.

mod rpc;

pub use self::rpc::RpcLatency;

use std::fmt::Write as _;
use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// A monotonic counter (`_total`).
pub type Counter = prometheus_client::metrics::counter::Counter;
/// A gauge of whole numbers.
pub type Gauge = prometheus_client::metrics::gauge::Gauge;

/// Increments a counter.
pub fn inc(counter: &Counter) {
    counter.inc();
}

/// Adds to a counter.
pub fn add(counter: &Counter, n: u64) {
    counter.inc_by(n);
}

/// Declares the counters once: the fields, and their registration with name and help.
macro_rules! metrics {
    ($( $(#[$doc:meta])* $field:ident: $kind:ident = $name:literal, $help:literal; )*) => {
        /// The metrics of one process: counters every component bumps, and the families
        /// components add for what they hold (read when scraped). Build the page with
        /// [`registry`](Metrics::registry).
        #[derive(Debug, Default)]
        pub struct Metrics {
            $( $(#[$doc])* pub $field: $kind, )*
            /// Worker-pool queues, by name (`queue_depth{queue}`; pools of one name in
            /// several components add up).
            queues: Queues,
            /// Families components added.
            families: Families,
            /// The latency histograms of the process's RPC clients and servers.
            rpc: RpcLatency,
        }

        impl Metrics {
            fn register_counters(&self, registry: &mut Registry) {
                $( registry.register($name, $help, self.$field.clone()); )*
            }
        }
    };
}

metrics! {
    /// Connections authenticated and open now.
    connections: Gauge = "connections", "Connections authenticated and open";
    /// Connections accepted in total.
    connections_accepted: Counter = "connections_accepted", "Connections accepted";
    /// AUTHs refused (bad or expired token, malformed).
    auth_failures: Counter = "auth_failures", "AUTHs refused";
    /// Connections refused over the per-IP limit.
    ip_limited: Counter = "ip_limited", "Connections refused by the per-IP limit";
    /// Connections dropped for missing two heartbeats (or AUTH in time).
    heartbeat_timeouts: Counter = "heartbeat_timeouts", "Connections dropped for silence";
    /// Connections closed because their token expired and no REFRESH replaced it.
    token_expired: Counter = "token_expired", "Connections closed because their token expired unrefreshed";
    /// REFRESHes taken (a new token on a live connection).
    token_refreshes: Counter = "token_refreshes", "Tokens refreshed on live connections";
    /// REFRESHes refused (the connection keeps its current token).
    token_refresh_failures: Counter = "token_refresh_failures", "REFRESHes refused";
    /// Connections closed for a bad or oversized frame.
    protocol_errors: Counter = "protocol_errors", "Connections closed for bad frames";
    /// Connections closed because their send queue was full.
    slow_consumers: Counter = "slow_consumers", "Connections closed with a full send queue";
    /// Connections kicked.
    kicked: Counter = "kicked", "Connections kicked";
    /// Pushes accepted by the API.
    messages_in: Counter = "messages_in", "Pushes accepted";
    /// Messages written to connections.
    messages_out: Counter = "messages_out", "Messages written to connections";
    /// Acknowledgements received.
    acks: Counter = "acks", "Acknowledgements received";
    /// Stored messages sent again (after a reconnect).
    redeliveries: Counter = "redeliveries", "Stored messages sent again";
    /// Deliveries given up (TTL or too many unacknowledged sends).
    expired: Counter = "expired", "Deliveries given up";
    /// Upstream messages received.
    upstream: Counter = "upstream", "Upstream messages received";
    /// Webhook calls that failed.
    webhook_errors: Counter = "webhook_errors", "Webhook calls that failed";
    /// Calls to a room process that failed (cluster).
    room_rpc_errors: Counter = "room_rpc_errors", "Calls to room processes that failed";
    /// Deliveries that asked every room because the register could not say (cluster).
    lookup_fallbacks: Counter = "lookup_fallbacks", "Deliveries that asked every room";
    /// Quick reconnects that resumed a session kept in its grace period (cluster room).
    resumed: Counter = "resumed", "Reconnects that resumed a kept session";
    /// Times a room re-flushed its sessions into a register that lost them (cluster room).
    reflushes: Counter = "reflushes", "Re-flushes of a room's sessions into the register";
    /// Pending lookups answered by the Redis index alone (cluster saver).
    hot_index_hits: Counter = "hot_index_hits", "Pending lookups answered by the Redis index";
    /// Pending lookups that went to MySQL (cluster saver).
    hot_index_misses: Counter = "hot_index_misses", "Pending lookups that read MySQL";
    /// Rebuilds of the Redis pending index from MySQL (cluster saver).
    hot_index_rebuilds: Counter = "hot_index_rebuilds", "Rebuilds of the pending index";
    /// Id lanes lost to another center (this center then issues no ids).
    id_lease_lost: Counter = "id_lease_lost", "Id lanes this center lost to another";
    /// Pushes refused because the id lane's lease was not known to be held.
    ids_refused: Counter = "ids_refused", "Pushes refused for want of a held id lane";
    /// Index writes that failed (the saver stops vouching; lookups use MySQL until rebuilt).
    hot_index_write_failures: Counter = "hot_index_write_failures", "Pending-index writes that failed";
    /// Stale index entries pruned (cluster saver).
    hot_index_pruned: Counter = "hot_index_pruned", "Stale pending-index entries pruned";
    /// Accepts that failed (`EMFILE` at the open-file limit, …); the loop backs off.
    accept_errors: Counter = "accept_errors", "Accepts that failed (the loop backs off)";
    /// WebSocket upgrades refused or failed (not a valid upgrade, timed out, hung up).
    upgrade_failures: Counter = "upgrade_failures", "WebSocket upgrades refused or failed";
    /// `POST /sse` refused at the room's SSE session limit (429).
    sse_refused: Counter = "sse_refused", "SSE sessions refused at the session limit";
    /// Messages POSTed to SSE sessions and handed to them (202).
    sse_posts: Counter = "sse_posts", "Messages POSTed to SSE sessions and handed over";
    /// POSTs to an SSE session whose inbox was full (429).
    sse_inbox_full: Counter = "sse_inbox_full", "POSTs refused because the SSE session's inbox was full";
    /// POSTs to an SSE session that does not exist (404: ended, or never was).
    sse_unknown_session: Counter = "sse_unknown_session", "POSTs to an SSE session that does not exist";
    /// SSE requests refused for their body: too large (413), no length (411), malformed
    /// or a server-only op (400).
    sse_bad_requests: Counter = "sse_bad_requests", "SSE requests refused for their body (400, 411, 413)";
    /// Retries of stored messages for recipients who may be online (center).
    retries: Counter = "retries", "Tries again of stored messages for recipients who may be online";
    /// Recipients reached by such a retry (center).
    retry_delivered: Counter = "retry_delivered", "Recipients reached on a retry";
    /// Recipients given up by the retries (past the TTL or the retry window): they get the
    /// message on their next connect (center).
    retries_given_up: Counter = "retries_given_up", "Recipients the retries gave up on (they get it on their next connect)";
    /// Retries not queued because too many were waiting (center).
    retries_dropped: Counter = "retries_dropped", "Retries dropped because too many were waiting";
    /// Rooms asked directly because membership did not list them (center, dispatcher).
    room_probes: Counter = "room_probes", "Rooms asked directly because membership did not list them";
    /// Pushes refused at once because the store had too much to do (center).
    store_overloaded: Counter = "store_overloaded", "Pushes refused at once because the store had too many waiting";
    /// TLS handshakes completed (rooms' `wss://` and TCP+TLS ports, HTTPS).
    tls_handshakes: Counter = "tls_handshakes", "TLS handshakes completed";
    /// TLS handshakes that failed (refused by rustls, cut short, timed out).
    tls_handshake_failures: Counter = "tls_handshake_failures", "TLS handshakes that failed (refused, cut short, timed out)";
    /// Plaintext clients on a TLS port (answered in plaintext that the port speaks TLS).
    tls_not_tls: Counter = "tls_not_tls", "Plaintext clients on a TLS port";
    /// Certificate reloads that took effect.
    tls_reloads: Counter = "tls_reloads", "TLS certificate reloads that took effect";
    /// Certificate reloads that failed (the certificate in use stays).
    tls_reload_failures: Counter = "tls_reload_failures", "TLS certificate reloads that failed (the one in use stays)";
    /// Times the room gave memory back after many connections closed.
    memory_trims: Counter = "memory_trims", "Times the room returned free memory after many connections closed";
    /// The open-file soft limit.
    fd_limit: Gauge = "fd_limit", "The process's open-file soft limit";
    /// Connections this room takes before it counts as full.
    capacity: Gauge = "capacity", "Connections the room takes before it counts as full";
}

/// One value of a [`Computed`] family: its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A value without labels.
    pub fn of(value: impl Into<f64>) -> Sample {
        Sample {
            labels: Vec::new(),
            value: value.into(),
        }
    }

    /// A value with one label.
    pub fn labelled(name: &'static str, label: impl Into<String>, value: impl Into<f64>) -> Sample {
        Sample {
            labels: vec![(name, label.into())],
            value: value.into(),
        }
    }
}

/// A family whose values are read when scraped (queue depths, rooms in membership, a
/// pool's counters): what the component knows, without a copy kept up to date.
///
/// ```
/// use prometheus_client::registry::Registry;
/// use longlink_push::metrics::{Computed, Sample, encode};
/// let mut registry = Registry::with_prefix("longlink_push");
/// registry.register_collector(Box::new(Computed::gauge("queue_depth", "Jobs waiting", || {
///     vec![Sample::labelled("queue", "acks", 3)]
/// })));
/// assert!(encode(&registry).contains("longlink_push_queue_depth{queue=\"acks\"} 3\n"));
/// ```
pub struct Computed {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    read: Box<dyn Fn() -> Vec<Sample> + Send + Sync>,
}

impl std::fmt::Debug for Computed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Computed")
            .field("name", &self.name)
            .finish()
    }
}

impl Computed {
    /// A gauge family.
    pub fn gauge(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> Vec<Sample> + Send + Sync + 'static,
    ) -> Computed {
        Computed {
            name,
            help,
            kind: MetricType::Gauge,
            read: Box::new(read),
        }
    }

    /// A counter family (its name gets `_total`).
    pub fn counter(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> Vec<Sample> + Send + Sync + 'static,
    ) -> Computed {
        Computed {
            name,
            help,
            kind: MetricType::Counter,
            read: Box::new(read),
        }
    }
}

/// The `(name, kind, help, value)` rows of a stats snapshot, as the database pool's
/// [`Stats::samples`](longlink_pool::Stats::samples) and the buffer pool's
/// [`BufPoolStats::samples`](longlink_codec::BufPoolStats::samples) give them.
pub type Rows = Vec<(&'static str, &'static str, &'static str, f64)>;

/// One family per row of a stats snapshot read at each scrape, each named `prefix_name`.
pub struct Snapshot {
    prefix: &'static str,
    read: Box<dyn Fn() -> Rows + Send + Sync>,
}

impl Snapshot {
    /// The rows `read` gives, under `prefix`.
    pub fn new(prefix: &'static str, read: impl Fn() -> Rows + Send + Sync + 'static) -> Snapshot {
        Snapshot {
            prefix,
            read: Box::new(read),
        }
    }
}

fn encode_value(
    kind: &MetricType,
    value: f64,
    encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    // Whole numbers stay whole on the page.
    let whole = value.fract() == 0.0 && value.abs() < 9.0e15;
    match (kind, whole) {
        (MetricType::Counter, true) => ConstCounter::new(value as u64).encode(encoder),
        (MetricType::Counter, false) => ConstCounter::new(value).encode(encoder),
        (_, true) => ConstGauge::new(value as i64).encode(encoder),
        (_, false) => ConstGauge::new(value).encode(encoder),
    }
}

impl Collector for Computed {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.encode_into(&mut encoder)
    }
}

impl Computed {
    fn encode_into(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let samples = (self.read)();
        let mut family = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        match samples.as_slice() {
            [one] if one.labels.is_empty() => encode_value(&self.kind, one.value, family)?,
            _ => {
                for sample in samples {
                    let labels: Vec<(String, String)> = sample
                        .labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect();
                    encode_value(&self.kind, sample.value, family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.encode_into(&mut encoder)
    }
}

impl Snapshot {
    fn encode_into(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, kind, help, value) in (self.read)() {
            let kind = if kind == "counter" {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let name = format!("{}_{name}", self.prefix);
            let family = encoder.encode_descriptor(&name, help, None, kind)?;
            encode_value(&kind, value, family)?;
        }
        Ok(())
    }
}

type QueueRead = Box<dyn Fn() -> Vec<(&'static str, usize)> + Send + Sync>;

/// The queue depths of every pool of a process, one family.
#[derive(Clone, Default)]
struct Queues(Arc<Mutex<Vec<QueueRead>>>);

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Queues").field(&self.0.lock().len()).finish()
    }
}

impl Collector for Queues {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut depths = std::collections::BTreeMap::<&'static str, usize>::new();
        for read in self.0.lock().iter() {
            for (name, depth) in read() {
                *depths.entry(name).or_default() += depth;
            }
        }
        let samples: Vec<Sample> = depths
            .into_iter()
            .map(|(name, depth)| Sample::labelled("queue", name, depth as f64))
            .collect();
        let mut encoder = encoder;
        Computed::gauge("queue_depth", "Jobs waiting in a worker pool", move || {
            samples.clone()
        })
        .encode_into(&mut encoder)
    }
}

/// A family a component adds to its process's page.
#[derive(Debug)]
pub enum Family {
    /// Values read at each scrape.
    Computed(Computed),
    /// The rows of a stats snapshot.
    Snapshot(Snapshot),
}

impl From<Computed> for Family {
    fn from(c: Computed) -> Family {
        Family::Computed(c)
    }
}

impl From<Snapshot> for Family {
    fn from(s: Snapshot) -> Family {
        Family::Snapshot(s)
    }
}

/// The families components added.
#[derive(Clone, Default)]
struct Families(Arc<Mutex<Vec<Family>>>);

impl std::fmt::Debug for Families {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Families")
            .field(&self.0.lock().len())
            .finish()
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in self.0.lock().iter() {
            match family {
                Family::Computed(c) => c.encode_into(&mut encoder)?,
                Family::Snapshot(s) => s.encode_into(&mut encoder)?,
            }
        }
        Ok(())
    }
}

impl Metrics {
    /// The RPC latency histograms on this page: clients record into
    /// [`peer`](RpcLatency::peer)'s, servers are added with [`server`](RpcLatency::server).
    pub fn rpc(&self) -> &RpcLatency {
        &self.rpc
    }

    /// Adds a pool's queues: `read` answers (name, depth) of each.
    pub fn add_queues(
        &self,
        read: impl Fn() -> Vec<(&'static str, usize)> + Send + Sync + 'static,
    ) {
        self.queues.0.lock().push(Box::new(read));
    }

    /// Adds a family read at each scrape (a component's gauges).
    pub fn add_family(&self, family: impl Into<Family>) {
        self.families.0.lock().push(family.into());
    }

    /// The page's registry: every counter, the families added (also those added later),
    /// the RPC latency histograms, the queue depths, the shared buffer pool's counters and the runtime's task count,
    /// every name under `longlink_push_`.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("longlink_push");
        self.register_counters(&mut registry);
        registry.register_collector(Box::new(self.queues.clone()));
        registry.register_collector(Box::new(self.families.clone()));
        registry.register_collector(Box::new(self.rpc.clone()));
        registry.register_collector(Box::new(Snapshot::new("bufpool", || {
            longlink_codec::BufPool::global().stats().samples().to_vec()
        })));
        registry.register_collector(Box::new(Computed::gauge(
            "tasks",
            "Tasks alive in the process's runtime",
            || match tokio::runtime::Handle::try_current() {
                Ok(runtime) => vec![Sample::of(runtime.metrics().num_alive_tasks() as f64)],
                Err(_) => Vec::new(),
            },
        )));
        registry
    }
}

/// The OpenMetrics text of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut page = String::new();
    if prometheus_client::encoding::text::encode(&mut page, registry).is_err() {
        let _ = writeln!(page, "# the metrics could not be encoded\n# EOF");
    }
    page
}

/// `registry` as a `/metrics` answer.
pub fn response(registry: &Registry) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        encode(registry),
    )
        .into_response()
}
