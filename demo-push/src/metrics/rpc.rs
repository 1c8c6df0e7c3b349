//! The latency histograms of a process's RPC clients and servers on its page, per method:
//!
//! | family | labels |
//! |---|---|
//! | `longlink_push_rpc_client_queue_wait_seconds` | `peer` (the role called), `method` |
//! | `longlink_push_rpc_client_round_trip_seconds` | `peer`, `method` |
//! | `longlink_push_rpc_server_queue_seconds` | `service` (the role served), `method` |
//! | `longlink_push_rpc_server_handler_seconds` | `service`, `method` |
//!
//! Every client of one peer role — each instance behind a balancer, each room the center
//! reaches — records into one set of histograms ([`RpcLatency::peer`]), so a series is one
//! (peer, method) however many instances there are, and instances that come and go leave no
//! series behind. Which instance is slow shows on that instance's own server histograms.
//! What each histogram measures is in `longlink_rpc::metrics`.

use std::sync::Arc;

use longlink_rpc::ServerHandle;
use longlink_rpc::metrics::{CallHistograms, Histogram, HistogramSnapshot};
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// The RPC histograms a process shows: its clients by peer, its servers by service. Cheap
/// to clone (clones share); [`Metrics`](super::Metrics) has one and puts it on its page.
#[derive(Clone, Default)]
pub struct RpcLatency {
    sources: Arc<Mutex<Sources>>,
}

#[derive(Default)]
struct Sources {
    peers: Vec<(&'static str, CallHistograms)>,
    servers: Vec<(&'static str, ServerHandle)>,
}

impl std::fmt::Debug for RpcLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources = self.sources.lock();
        let peers: Vec<&str> = sources.peers.iter().map(|(p, _)| *p).collect();
        let servers: Vec<&str> = sources.servers.iter().map(|(s, _)| *s).collect();
        f.debug_struct("RpcLatency")
            .field("peers", &peers)
            .field("servers", &servers)
            .finish()
    }
}

impl RpcLatency {
    /// The histograms every client of `peer` records into (made on the first ask, the same
    /// ones after): give them to each client with `Client::builder(..).histograms(..)`.
    ///
    /// ```
    /// use longlink_push::metrics::RpcLatency;
    /// let latency = RpcLatency::default();
    /// let saver = longlink_rpc::Client::builder("127.0.0.1:7811")
    ///     .histograms(latency.peer("saver"))
    ///     .build();
    /// # drop(saver);
    /// ```
    pub fn peer(&self, peer: &'static str) -> CallHistograms {
        let mut sources = self.sources.lock();
        if let Some((_, h)) = sources.peers.iter().find(|(p, _)| *p == peer) {
            return h.clone();
        }
        let h = CallHistograms::new();
        sources.peers.push((peer, h.clone()));
        h
    }

    /// Shows the histograms of the server `handle` controls, labelled `service`.
    pub fn server(&self, service: &'static str, handle: ServerHandle) {
        self.sources.lock().servers.push((service, handle));
    }
}

/// The page's families: name (before `_seconds`), help, label name.
const FAMILIES: [(&str, &str, &str); 4] = [
    (
        "rpc_client_queue_wait",
        "Time RPC calls waited for a flow-control permit",
        "peer",
    ),
    (
        "rpc_client_round_trip",
        "RPC calls from holding a permit to the answer",
        "peer",
    ),
    (
        "rpc_server_queue",
        "RPC requests from arrival to dispatch",
        "service",
    ),
    (
        "rpc_server_handler",
        "RPC handlers from dispatch to the answer being ready",
        "service",
    ),
];

/// One series: its labels and counts.
type Series = (Vec<(String, String)>, HistogramSnapshot);

impl Collector for RpcLatency {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Read under the lock, encoded after it.
        let mut families: [Vec<Series>; 4] = Default::default();
        {
            let sources = self.sources.lock();
            for (peer, histograms) in &sources.peers {
                for row in histograms.snapshot() {
                    let labels = labels(FAMILIES[0].2, peer, &row.label());
                    families[0].push((labels.clone(), row.queue_wait));
                    families[1].push((labels, row.round_trip));
                }
            }
            for (service, handle) in &sources.servers {
                for row in handle.stats().latency {
                    let labels = labels(FAMILIES[2].2, service, &row.label());
                    families[2].push((labels.clone(), row.queue));
                    families[3].push((labels, row.handler));
                }
            }
        }
        for ((name, help, _), series) in FAMILIES.iter().zip(&families) {
            if series.is_empty() {
                continue;
            }
            let mut family = encoder.encode_descriptor(
                name,
                help,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (labels, h) in series {
                let buckets: Vec<(f64, u64)> = Histogram::BOUNDS
                    .iter()
                    .map(|b| b.as_secs_f64())
                    // prometheus-client writes `+Inf` for f64::MAX.
                    .chain([f64::MAX])
                    .zip(h.counts().iter().copied())
                    .collect();
                family
                    .encode_family(labels)?
                    .encode_histogram::<NoLabelSet>(
                        h.sum().as_secs_f64(),
                        h.count(),
                        &buckets,
                        None,
                    )?;
            }
        }
        Ok(())
    }
}

fn labels(role_label: &str, role: &str, method: &str) -> Vec<(String, String)> {
    vec![
        (role_label.to_owned(), role.to_owned()),
        ("method".to_owned(), method.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn a_peer_gets_the_same_histograms_every_time() {
        let latency = RpcLatency::default();
        latency
            .peer("saver")
            .record(7, Duration::ZERO, Duration::from_micros(30));
        latency
            .peer("saver")
            .record(7, Duration::ZERO, Duration::from_micros(30));
        assert_eq!(latency.peer("saver").snapshot()[0].round_trip.count(), 2);
        assert!(latency.peer("register").snapshot().is_empty());
    }

    #[test]
    fn the_page_has_cumulative_buckets_a_sum_and_a_count_per_peer_and_method() {
        let latency = RpcLatency::default();
        longlink_rpc::metrics::name_method(0x5eed, "saver_svc.test_put");
        let saver = latency.peer("saver");
        saver.record(0x5eed, Duration::ZERO, Duration::from_micros(300));
        saver.record(0x5eed, Duration::ZERO, Duration::from_secs(20));
        let mut registry = Registry::with_prefix("longlink_push");
        registry.register_collector(Box::new(latency));
        let page = super::super::encode(&registry);
        let series = "longlink_push_rpc_client_round_trip_seconds";
        let labels = "peer=\"saver\",method=\"saver_svc.test_put\"";
        for line in [
            format!("# TYPE {series} histogram"),
            format!("# UNIT {series} seconds"),
            format!("{series}_count{{{labels}}} 2"),
            format!("{series}_bucket{{le=\"0.0002\",{labels}}} 0"),
            format!("{series}_bucket{{le=\"0.0005\",{labels}}} 1"),
            format!("{series}_bucket{{le=\"10.0\",{labels}}} 1"),
            format!("{series}_bucket{{le=\"+Inf\",{labels}}} 2"),
        ] {
            assert!(page.lines().any(|l| l == line), "no {line:?} in\n{page}");
        }
        assert!(
            !page.contains("rpc_server_handler"),
            "no family without series: {page}"
        );
    }
}
