//! The compression row: a 1 MiB JSON-like body echoed over one multiplexed connection, by a
//! client with zstd (level 1, 8 KiB threshold) and one without, against the same server
//! with zstd on — so the plain client shows what the negotiation leaves uncompressed.
//! Calls/s and the payload bytes on the wire per call (from the client's counters).

use super::process::{Placement, run_client, start_server};
use super::suite::SuiteOptions;
use super::{ClientImpl, Flavor, RunResult, ServerImpl};

/// The body size of the row.
pub const BODY_BYTES: usize = 1 << 20;
/// Concurrent callers: enough to keep both cores busy, few enough that 1 MiB bodies in
/// flight stay well within the default byte budgets.
pub const CONCURRENCY: usize = 16;

/// Runs the row, prints it and the ratios; the results.
pub async fn run(opts: &SuiteOptions) -> Vec<RunResult> {
    println!(
        "\ncompression: 1 MiB JSON-like echo, longlink mux, c={CONCURRENCY}, server with zstd on \
         (level 1, ≥ 8 KiB); payload bytes on the wire per call, both ways"
    );
    println!(
        "{:<22} {:>8} {:>6} {:>11} {:>9} {:>9} {:>14} {:>9}",
        "client", "flavor", "c", "calls/s", "p50 µs", "p99 µs", "wire B/call", "errors"
    );
    let placement = Placement::of(opts);
    let _server = start_server(
        opts,
        placement,
        ServerImpl::LonglinkZstd,
        Flavor::Multi,
        &["--max-concurrent", "20000"],
    )
    .await;
    let extra: Vec<String> = [
        "--body-bytes",
        &BODY_BYTES.to_string(),
        "--body-kind",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    for client in [ClientImpl::LonglinkMux, ClientImpl::LonglinkMuxZstd] {
        let run = run_client(opts, placement, client, Flavor::Multi, CONCURRENCY, &extra);
        if let Some(r) = run.await {
            let errors: u64 = r.errors.values().sum();
            println!(
                "{:<22} {:>8} {:>6} {:>11.0} {:>9} {:>9} {:>14.0} {:>9}",
                client.name(),
                "multi",
                r.concurrency,
                r.qps,
                r.p50_us,
                r.p99_us,
                r.wire_bytes_per_call.unwrap_or(f64::NAN),
                errors
            );
            rows.push(r);
        }
    }
    if let [plain, zstd] = &rows[..] {
        println!(
            "  zstd / plain: calls/s {:.2}×, wire bytes per call {:.3}× ({:.1}× fewer)",
            zstd.qps / plain.qps,
            zstd.wire_bytes_per_call.unwrap_or(f64::NAN)
                / plain.wire_bytes_per_call.unwrap_or(f64::NAN),
            plain.wire_bytes_per_call.unwrap_or(f64::NAN)
                / zstd.wire_bytes_per_call.unwrap_or(f64::NAN)
        );
    }
    rows
}
