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
    /// Every counter as `(name, kind, help, value)` — the name without a prefix (counters
    /// without `_total`), the kind `"gauge"` or `"counter"`: what
    /// [`to_prometheus`](Stats::to_prometheus) writes, for a metrics library's own registry.
    ///
    /// ```
    /// let stats = longlink_pool::Stats::default();
    /// assert!(stats.samples().contains(&("open_connections", "gauge", "Open connections.", 0.0)));
    /// ```
    pub fn samples(&self) -> [(&'static str, &'static str, &'static str, f64); 15] {
        let n = |v: usize| v as f64;
        let c = |v: u64| v as f64;
        [
            (
                "max_open_connections",
                "gauge",
                "Maximum open connections.",
                n(self.max_open),
            ),
            (
                "open_connections",
                "gauge",
                "Open connections.",
                n(self.open),
            ),
            (
                "in_use_connections",
                "gauge",
                "Connections in use.",
                n(self.in_use),
            ),
            (
                "idle_connections",
                "gauge",
                "Idle connections.",
                n(self.idle),
            ),
            ("waiting", "gauge", "Acquires waiting.", n(self.waiting)),
            (
                "wait_count",
                "counter",
                "Acquires that waited.",
                c(self.wait_count),
            ),
            (
                "wait_seconds",
                "counter",
                "Time spent waiting.",
                self.wait_duration.as_secs_f64(),
            ),
            (
                "connects",
                "counter",
                "Connections opened.",
                c(self.connects),
            ),
            (
                "connect_errors",
                "counter",
                "Failed connects.",
                c(self.connect_errors),
            ),
            (
                "timeouts",
                "counter",
                "Acquires that timed out.",
                c(self.timeouts),
            ),
            (
                "max_idle_closed",
                "counter",
                "Closed by max_idle.",
                c(self.max_idle_closed),
            ),
            (
                "max_idle_time_closed",
                "counter",
                "Closed by max_idle_time.",
                c(self.max_idle_time_closed),
            ),
            (
                "max_lifetime_closed",
                "counter",
                "Closed by max_lifetime.",
                c(self.max_lifetime_closed),
            ),
            ("broken", "counter", "Closed as broken.", c(self.broken)),
            (
                "leaks",
                "counter",
                "Held past the leak threshold.",
                c(self.leaks),
            ),
        ]
    }

    /// Renders the counters in the Prometheus text format; each metric is named
    /// `{prefix}_{name}` (counters with `_total`) and carries `labels`.
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
        for (name, kind, help, value) in self.samples() {
            let name = if kind == "counter" {
                format!("{prefix}_{name}_total")
            } else {
                format!("{prefix}_{name}")
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            if value.fract() == 0.0 {
                let _ = writeln!(out, "{name}{labels} {}", value as u64);
            } else {
                let _ = writeln!(out, "{name}{labels} {value:.6}");
            }
        }
        out
    }
}
