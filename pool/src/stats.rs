//! Pool counters.

use std::fmt::Write;
use std::time::Duration;

/// A snapshot of a pool's counters (Go's `sql.DBStats`, plus what a pool operator asks for).
///
/// ```
/// # use longlink_pool::Manager;
/// # struct M;
/// # impl Manager for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// #     async fn check(&self, _: &mut ()) -> Result<(), std::io::Error> { Ok(()) }
/// # }
/// let pool = longlink_pool::Pool::builder().max_open(4).build(M);
/// let stats = pool.stats();
/// assert_eq!((stats.max_open, stats.open, stats.idle, stats.in_use), (4, 0, 0, 0));
/// assert!(stats.to_prometheus("db", &[("pool", "main")]).contains("db_open_connections{pool=\"main\"} 0"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The `max_open` limit.
    pub max_open: usize,
    /// Connections open now (in use, idle, or being opened).
    pub open: usize,
    /// Connections handed out now.
    pub in_use: usize,
    /// Connections idle now.
    pub idle: usize,
    /// Acquires waiting now.
    pub waiting: usize,
    /// Acquires that had to wait, in total.
    pub wait_count: u64,
    /// Time acquires spent waiting, in total.
    pub wait_duration: Duration,
    /// Connections opened, in total.
    pub connects: u64,
    /// Connects that failed, in total.
    pub connect_errors: u64,
    /// Acquires that timed out, in total.
    pub timeouts: u64,
    /// Connections closed because `max_idle` was reached.
    pub max_idle_closed: u64,
    /// Connections closed because they were idle longer than `max_idle_time`.
    pub max_idle_time_closed: u64,
    /// Connections closed because they lived longer than `max_lifetime`.
    pub max_lifetime_closed: u64,
    /// Connections closed because they were found broken (a failed check or reset, a
    /// broken mark, or a dropped acquire that was using them).
    pub broken: u64,
    /// Connections held longer than the leak threshold.
    pub leaks: u64,
}

impl Stats {
    /// Renders the counters in the Prometheus text format; each metric is named
    /// `{prefix}_{name}` and carries `labels`.
    pub fn to_prometheus(&self, prefix: &str, labels: &[(&str, &str)]) -> String {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\"")))
                .collect();
            format!("{{{}}}", inner.join(","))
        };
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {prefix}_{name} {help}");
            let _ = writeln!(out, "# TYPE {prefix}_{name} {kind}");
            let _ = writeln!(out, "{prefix}_{name}{labels} {value}");
        };
        metric(
            "max_open_connections",
            "gauge",
            "Maximum open connections.",
            self.max_open.to_string(),
        );
        metric(
            "open_connections",
            "gauge",
            "Open connections.",
            self.open.to_string(),
        );
        metric(
            "in_use_connections",
            "gauge",
            "Connections in use.",
            self.in_use.to_string(),
        );
        metric(
            "idle_connections",
            "gauge",
            "Idle connections.",
            self.idle.to_string(),
        );
        metric(
            "waiting",
            "gauge",
            "Acquires waiting.",
            self.waiting.to_string(),
        );
        metric(
            "wait_count_total",
            "counter",
            "Acquires that waited.",
            self.wait_count.to_string(),
        );
        metric(
            "wait_seconds_total",
            "counter",
            "Time spent waiting.",
            format!("{:.6}", self.wait_duration.as_secs_f64()),
        );
        metric(
            "connects_total",
            "counter",
            "Connections opened.",
            self.connects.to_string(),
        );
        metric(
            "connect_errors_total",
            "counter",
            "Failed connects.",
            self.connect_errors.to_string(),
        );
        metric(
            "timeouts_total",
            "counter",
            "Acquires that timed out.",
            self.timeouts.to_string(),
        );
        metric(
            "max_idle_closed_total",
            "counter",
            "Closed by max_idle.",
            self.max_idle_closed.to_string(),
        );
        metric(
            "max_idle_time_closed_total",
            "counter",
            "Closed by max_idle_time.",
            self.max_idle_time_closed.to_string(),
        );
        metric(
            "max_lifetime_closed_total",
            "counter",
            "Closed by max_lifetime.",
            self.max_lifetime_closed.to_string(),
        );
        metric(
            "broken_total",
            "counter",
            "Closed as broken.",
            self.broken.to_string(),
        );
        metric(
            "leaks_total",
            "counter",
            "Held past the leak threshold.",
            self.leaks.to_string(),
        );
        out
    }
}
