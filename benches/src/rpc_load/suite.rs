//! The whole RPC comparison: every client against its server, each in its own process
//! pinned to its own core (`taskset`), both tokio runtime flavors — longlink's strategies
//! in plaintext and over TLS, raw and typed, in the same run; then the out-of-the-box rows
//! (unpinned, a worker per core), the head-of-line, overload and compression scenarios. Prints tables
//! with ratios and writes the results as JSON.

use std::path::PathBuf;

use serde::Serialize;

use super::process::{Placement, header, print_row, run_client, start_server, taskset_available};
use super::{ClientImpl, Flavor, RunResult, ServerImpl, TlsFiles};

/// Suite options.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Concurrency levels.
    pub concurrencies: Vec<usize>,
    /// Measured seconds per run.
    pub seconds: f64,
    /// Flavors to run.
    pub flavors: Vec<Flavor>,
    /// Pin server and client to cores 0 and 1.
    pub pin: bool,
    /// Where to write the JSON.
    pub out: PathBuf,
    /// Server address.
    pub addr: String,
    /// Where the TLS runs' CA and certificate are made (`tls/` under it).
    pub tls_data_dir: PathBuf,
}

#[derive(Debug, Serialize)]
struct Report {
    throughput: Vec<RunResult>,
    out_of_the_box: Vec<RunResult>,
    head_of_line: Vec<(String, RunResult)>,
    overload: Vec<(String, RunResult)>,
    compression: Vec<RunResult>,
}

/// Runs the suite; prints tables; writes `opts.out`.
pub async fn run(opts: SuiteOptions) {
    if opts.pin && !taskset_available() {
        eprintln!("taskset not found: running unpinned");
    }
    // Made once here, before any process starts: the servers and clients find them.
    if let Err(e) = TlsFiles::under(&opts.tls_data_dir) {
        eprintln!("the TLS runs need a certificate: {e}");
        return;
    }
    let clients = [
        ClientImpl::LonglinkMux,
        ClientImpl::LonglinkMux4,
        ClientImpl::LonglinkPooled,
        ClientImpl::LonglinkShort,
        ClientImpl::LonglinkMuxTls,
        ClientImpl::LonglinkPooledTls,
        ClientImpl::LonglinkShortTls,
        ClientImpl::LonglinkMuxTyped,
        ClientImpl::LonglinkPooledTyped,
        ClientImpl::Tarpc,
        ClientImpl::TarpcTyped,
        ClientImpl::Tonic,
    ];
    let placement = Placement::of(&opts);
    let mut throughput = Vec::new();
    println!(
        "\n1 KiB echo, server and client in separate processes{}",
        if opts.pin {
            " pinned to cores 0 and 1"
        } else {
            ""
        }
    );
    header();
    for &flavor in &opts.flavors {
        for server in [
            ServerImpl::Longlink,
            ServerImpl::LonglinkTls,
            ServerImpl::LonglinkTyped,
            ServerImpl::Tarpc,
            ServerImpl::Tonic,
        ] {
            let _server = start_server(
                &opts,
                placement,
                server,
                flavor,
                &["--max-concurrent", "20000"],
            )
            .await;
            for &client in clients.iter().filter(|c| c.server() == server) {
                for &c in &opts.concurrencies {
                    // Connect-per-call above 100 callers only measures TIME_WAIT exhaustion.
                    let short = matches!(
                        client,
                        ClientImpl::LonglinkShort | ClientImpl::LonglinkShortTls
                    );
                    if short && c > 100 {
                        continue;
                    }
                    if let Some(r) = run_client(&opts, placement, client, flavor, c, &[]).await {
                        print_row(client.name(), &r);
                        throughput.push(r);
                    }
                }
            }
        }
    }

    let find = |client: ClientImpl, flavor: Flavor, c: usize| {
        throughput
            .iter()
            .find(|r| r.client == client && r.flavor == flavor && r.concurrency == c)
            .map(|r| r.qps)
    };
    println!("\nratios (calls/s of the first over the second, same flavor and concurrency)");
    for &flavor in &opts.flavors {
        for &c in opts.concurrencies.iter().filter(|&&c| c >= 100) {
            let mux = find(ClientImpl::LonglinkMux, flavor, c);
            for (label, other) in [
                ("mux / pooled", ClientImpl::LonglinkPooled),
                ("mux / short", ClientImpl::LonglinkShort),
                ("mux / tonic", ClientImpl::Tonic),
                ("mux / tarpc", ClientImpl::Tarpc),
                ("mux / mux×4", ClientImpl::LonglinkMux4),
            ] {
                if let (Some(a), Some(b)) = (mux, find(other, flavor, c)) {
                    println!(
                        "  {:<8} c={c:<5} {label:<14} {:>6.2}×",
                        format!("{flavor:?}").to_lowercase(),
                        a / b
                    );
                }
            }
        }
    }

    print_typed_ratios(&opts, &throughput);

    let out_of_the_box = super::out_of_box::run(&opts).await;

    println!(
        "\nTLS (calls/s in plaintext over the same strategy over TLS, and the strategies over \
         TLS against each other; short pays a TCP connect and a TLS handshake per call)"
    );
    for &flavor in &opts.flavors {
        for &c in &opts.concurrencies {
            let flavor_name = format!("{flavor:?}").to_lowercase();
            for plain in [
                ClientImpl::LonglinkMux,
                ClientImpl::LonglinkPooled,
                ClientImpl::LonglinkShort,
            ] {
                let tls = plain.over_tls().expect("a TLS twin");
                if let (Some(a), Some(b)) = (find(plain, flavor, c), find(tls, flavor, c)) {
                    let label = format!(
                        "{}: plain / TLS",
                        plain.name().trim_start_matches("longlink ")
                    );
                    println!("  {flavor_name:<8} c={c:<5} {label:<20} {:>6.2}×", a / b);
                }
            }
            let mux = find(ClientImpl::LonglinkMuxTls, flavor, c);
            for (label, other) in [
                ("TLS mux / pooled", ClientImpl::LonglinkPooledTls),
                ("TLS mux / short", ClientImpl::LonglinkShortTls),
            ] {
                if let (Some(a), Some(b)) = (mux, find(other, flavor, c)) {
                    println!("  {flavor_name:<8} c={c:<5} {label:<20} {:>6.2}×", a / b);
                }
            }
        }
    }

    // Head-of-line: 1% of calls sleep 5 ms in the handler, or carry 1 MiB; p99 of the rest.
    let mut head_of_line = Vec::new();
    println!("\nhead-of-line, longlink mux, c=100 (p99 of the normal 1 KiB calls)");
    header();
    {
        let _server = start_server(
            &opts,
            placement,
            ServerImpl::Longlink,
            Flavor::Multi,
            &["--slow-ms", "5", "--max-concurrent", "20000"],
        )
        .await;
        for (label, extra) in [
            ("baseline", vec![]),
            (
                "1% slow (5 ms)",
                vec!["--slow-permille".to_owned(), "10".to_owned()],
            ),
            (
                "1% 1 MiB bodies",
                vec![
                    "--big-permille".to_owned(),
                    "10".to_owned(),
                    "--big-bytes".to_owned(),
                    "1048576".to_owned(),
                ],
            ),
            // Open loop, well under capacity: 5,000 calls/s offered whatever the answers
            // do, latency from when each call was due (no coordinated omission).
            (
                "open 5k/s baseline",
                vec!["--rate".to_owned(), "5000".to_owned()],
            ),
            (
                "open 5k/s, 1% 1 MiB",
                vec![
                    "--rate".to_owned(),
                    "5000".to_owned(),
                    "--big-permille".to_owned(),
                    "10".to_owned(),
                    "--big-bytes".to_owned(),
                    "1048576".to_owned(),
                ],
            ),
        ] {
            if let Some(r) = run_client(
                &opts,
                placement,
                ClientImpl::LonglinkMux,
                Flavor::Multi,
                100,
                &extra,
            )
            .await
            {
                print_row(label, &r);
                head_of_line.push((label.to_owned(), r));
            }
        }
    }

    // Overload: a server that can run 32 requests of 1 ms at once (capacity ~32k/s),
    // offered its capacity and then twice that.
    let mut overload = Vec::new();
    println!("\noverload, longlink mux against max_concurrent=32 and 1 ms of work per call");
    println!(
        "{:<22} {:>8} {:>6} {:>11} {:>9} {:>9} {:>11} {:>12}",
        "run", "flavor", "c", "goodput/s", "p50 µs", "p99 µs", "refused", "refuse p99 µs"
    );
    {
        let _server = start_server(
            &opts,
            placement,
            ServerImpl::Longlink,
            Flavor::Multi,
            &["--work-us", "1000", "--max-concurrent", "32"],
        )
        .await;
        for (label, c) in [("at capacity", 32usize), ("at 2× capacity", 64)] {
            if let Some(r) = run_client(
                &opts,
                placement,
                ClientImpl::LonglinkMux,
                Flavor::Multi,
                c,
                &[],
            )
            .await
            {
                let refused: u64 = r.errors.values().sum();
                println!(
                    "{label:<22} {:>8} {:>6} {:>11.0} {:>9} {:>9} {:>11} {:>12}",
                    "multi", c, r.qps, r.p50_us, r.p99_us, refused, r.error_p99_us
                );
                overload.push((label.to_owned(), r));
            }
        }
    }

    let compression = super::compression::run(&opts).await;

    if let Some(dir) = opts.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let report = Report {
        throughput,
        out_of_the_box,
        head_of_line,
        overload,
        compression,
    };
    std::fs::write(&opts.out, serde_json::to_vec_pretty(&report).expect("json"))
        .expect("write the results");
    println!("\nresults written to {}", opts.out.display());
}

/// The typed rows against their raw twins (what `service!` and postcard cost) and against
/// each other (the typed lead over tarpc and over longlink's own pool).
fn print_typed_ratios(opts: &SuiteOptions, throughput: &[RunResult]) {
    let find = |client: ClientImpl, flavor: Flavor, c: usize| {
        throughput
            .iter()
            .find(|r| r.client == client && r.flavor == flavor && r.concurrency == c)
            .map(|r| r.qps)
    };
    println!(
        "\ntyped (service! with a serde_bytes body; tarpc: serde_bytes, and its Vec<u8> row \
         as the raw twin)"
    );
    for &flavor in &opts.flavors {
        let flavor_name = format!("{flavor:?}").to_lowercase();
        for &c in opts.concurrencies.iter().filter(|&&c| c >= 100) {
            let mux = find(ClientImpl::LonglinkMuxTyped, flavor, c);
            let mut pairs = vec![
                ("typed mux / tarpc sb", mux, ClientImpl::TarpcTyped),
                ("typed mux / pooled", mux, ClientImpl::LonglinkPooledTyped),
            ];
            for raw in [
                ClientImpl::LonglinkMux,
                ClientImpl::LonglinkPooled,
                ClientImpl::Tarpc,
            ] {
                let typed = raw.typed().expect("a typed twin");
                pairs.push((typed_over_raw(raw), find(typed, flavor, c), raw));
            }
            for (label, a, other) in pairs {
                if let (Some(a), Some(b)) = (a, find(other, flavor, c)) {
                    println!("  {flavor_name:<8} c={c:<5} {label:<22} {:>6.2}×", a / b);
                }
            }
        }
    }
}

fn typed_over_raw(raw: ClientImpl) -> &'static str {
    match raw {
        ClientImpl::LonglinkMux => "mux: typed / raw",
        ClientImpl::LonglinkPooled => "pooled: typed / raw",
        _ => "tarpc: sb / Vec<u8>",
    }
}
