//! The histograms in Prometheus's text exposition format (version 0.0.4).
//!
//! One family per histogram kind, each with `# HELP` and `# TYPE … histogram` once, then
//! for every (labels, method) the cumulative `_bucket{le="…"}` lines up to `le="+Inf"`,
//! `_sum` in seconds and `_count`. Several clients and servers go on one page through one
//! [`Exposition`], so that each family is written once (Prometheus refuses a family that
//! appears twice).

use std::fmt::Write as _;

use super::HistogramSnapshot;
use crate::{ClientStats, ServerStats};

/// The four families: name after the prefix, and help.
const FAMILIES: [(&str, &str); 4] = [
    (
        "client_queue_wait_seconds",
        "Time RPC calls waited for a flow-control permit, by method.",
    ),
    (
        "client_round_trip_seconds",
        "RPC calls from holding a permit to the answer, by method.",
    ),
    (
        "server_queue_seconds",
        "RPC requests from arrival to dispatch, by method.",
    ),
    (
        "server_handler_seconds",
        "RPC handlers from dispatch to the answer being ready, by method.",
    ),
];

/// A Prometheus text page of the latency histograms of any number of clients and servers,
/// each with its own labels (`peer="saver"`).
///
/// ```
/// use longlink_rpc::metrics::Exposition;
/// use longlink_rpc::{ClientStats, ServerStats};
/// # let (saver, register, served) = (ClientStats::default(), ClientStats::default(), ServerStats::default());
/// // saver = saver_client.stats(), served = server_handle.stats(), …
/// let mut page = Exposition::new("longlink_rpc");
/// page.client(&[("peer", "saver")], &saver)
///     .client(&[("peer", "register")], &register)
///     .server(&[], &served);
/// let text: String = page.finish();
/// # assert!(text.is_empty()); // nothing was called
/// ```
///
/// What a family looks like:
///
/// ```text
/// # HELP longlink_rpc_client_round_trip_seconds RPC calls from holding a permit to the answer, by method.
/// # TYPE longlink_rpc_client_round_trip_seconds histogram
/// longlink_rpc_client_round_trip_seconds_bucket{peer="saver",method="saver.put",le="0.000001"} 0
/// …
/// longlink_rpc_client_round_trip_seconds_bucket{peer="saver",method="saver.put",le="+Inf"} 42
/// longlink_rpc_client_round_trip_seconds_sum{peer="saver",method="saver.put"} 0.0123
/// longlink_rpc_client_round_trip_seconds_count{peer="saver",method="saver.put"} 42
/// ```
#[derive(Debug, Clone)]
pub struct Exposition {
    prefix: String,
    /// The series lines of each family of [`FAMILIES`], written as they are added.
    series: [String; 4],
}

impl Exposition {
    /// A page whose names start with `prefix_` (characters a name may not hold become `_`).
    pub fn new(prefix: &str) -> Exposition {
        let mut prefix = sanitize(prefix);
        if !prefix.is_empty() {
            prefix.push('_');
        }
        Exposition {
            prefix,
            series: Default::default(),
        }
    }

    /// Adds a client's histograms (queue wait, round trip), each series with `labels` and
    /// `method`.
    pub fn client(&mut self, labels: &[(&str, &str)], stats: &ClientStats) -> &mut Exposition {
        for row in &stats.latency {
            let labels = label_set(labels, &row.label());
            self.write(0, &labels, &row.queue_wait);
            self.write(1, &labels, &row.round_trip);
        }
        self
    }

    /// Adds a server's histograms (queue, handler), each series with `labels` and
    /// `method`.
    pub fn server(&mut self, labels: &[(&str, &str)], stats: &ServerStats) -> &mut Exposition {
        for row in &stats.latency {
            let labels = label_set(labels, &row.label());
            self.write(2, &labels, &row.queue);
            self.write(3, &labels, &row.handler);
        }
        self
    }

    /// The text: every family that has a series (none: an empty string).
    pub fn finish(&self) -> String {
        let mut out = String::new();
        for ((name, help), series) in FAMILIES.iter().zip(&self.series) {
            if series.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {}{name} {help}", self.prefix);
            let _ = writeln!(out, "# TYPE {}{name} histogram", self.prefix);
            out.push_str(series);
        }
        out
    }

    fn write(&mut self, family: usize, labels: &str, h: &HistogramSnapshot) {
        let name = format!("{}{}", self.prefix, FAMILIES[family].0);
        let out = &mut self.series[family];
        let sep = if labels.is_empty() { "" } else { "," };
        for (le, n) in h.buckets() {
            let le = if le.is_infinite() {
                "+Inf".to_owned()
            } else {
                le.to_string()
            };
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum().as_secs_f64());
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
    }
}

/// `k="v",…,method="m"`, names sanitized and values escaped.
fn label_set(labels: &[(&str, &str)], method: &str) -> String {
    let mut out = String::new();
    for (name, value) in labels.iter().chain([&("method", method)]) {
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{}=\"{}\"", sanitize(name), escape(value));
    }
    out
}

/// A valid metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (`:` is kept; label names may
/// not hold it, and callers do not pass one).
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label value: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl ClientStats {
    /// The latency histograms in Prometheus text, names under `prefix`, every series with
    /// `labels` and `method` (to put several clients on one page, use an [`Exposition`]).
    ///
    /// ```
    /// let stats = longlink_rpc::ClientStats::default(); // client.stats()
    /// let text = stats.render_prometheus("longlink_rpc", &[("peer", "saver")]);
    /// assert!(text.is_empty()); // no call yet: no series
    /// ```
    pub fn render_prometheus(&self, prefix: &str, labels: &[(&str, &str)]) -> String {
        Exposition::new(prefix).client(labels, self).finish()
    }
}

impl ServerStats {
    /// The latency histograms in Prometheus text, names under `prefix`, every series with
    /// `labels` and `method` (to put several servers or clients on one page, use an
    /// [`Exposition`]).
    ///
    /// ```
    /// let stats = longlink_rpc::ServerStats::default(); // handle.stats()
    /// assert!(stats.render_prometheus("longlink_rpc", &[]).is_empty());
    /// ```
    pub fn render_prometheus(&self, prefix: &str, labels: &[(&str, &str)]) -> String {
        Exposition::new(prefix).server(labels, self).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_names_sanitized() {
        assert_eq!(
            label_set(&[("peer-role", "a\"b\\c\nd")], "x"),
            r#"peer_role="a\"b\\c\nd",method="x""#
        );
        assert_eq!(sanitize("9lives.x"), "_9lives_x");
    }

    #[test]
    fn le_values_are_plain_decimals() {
        let les: Vec<String> = HistogramSnapshot::default()
            .buckets()
            .map(|(le, _)| le.to_string())
            .collect();
        assert_eq!(les[0], "0.000001");
        assert_eq!(les[9], "0.001");
        assert_eq!(les[21], "10");
    }
}
