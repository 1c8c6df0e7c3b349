//! The out-of-the-box rows: server and client each on tokio's default multi-thread runtime
//! (a worker per core), unpinned, through the typed API — how a user runs a service with
//! `#[tokio::main]` and `service!`. Both processes share the machine's cores, so these rows
//! include the cross-thread wake-ups and migrations that the pinned rows leave out.

use super::process::{Placement, header, print_row, run_client, start_server};
use super::suite::SuiteOptions;
use super::{ClientImpl, Flavor, RunResult, ServerImpl};

/// The callers of the out-of-the-box rows.
pub const OUT_OF_THE_BOX_CONCURRENCIES: [usize; 2] = [100, 400];

/// Runs the rows, prints them and their ratios; the results.
pub async fn run(opts: &SuiteOptions) -> Vec<RunResult> {
    println!(
        "\nout of the box: typed, server and client unpinned, each on the default multi-thread \
         runtime ({} workers each)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    header();
    let mut rows = Vec::new();
    for (server, clients) in [
        (
            ServerImpl::LonglinkTyped,
            &[
                ClientImpl::LonglinkMuxTyped,
                ClientImpl::LonglinkPooledTyped,
            ][..],
        ),
        (ServerImpl::Tarpc, &[ClientImpl::TarpcTyped][..]),
    ] {
        let _server = start_server(
            opts,
            Placement::Unpinned,
            server,
            Flavor::Multi,
            &["--max-concurrent", "20000"],
        )
        .await;
        for &client in clients {
            for c in OUT_OF_THE_BOX_CONCURRENCIES {
                let run = run_client(opts, Placement::Unpinned, client, Flavor::Multi, c, &[]);
                if let Some(r) = run.await {
                    print_row(client.name(), &r);
                    rows.push(r);
                }
            }
        }
    }
    let find = |client: ClientImpl, c: usize| {
        rows.iter()
            .find(|r| r.client == client && r.concurrency == c)
            .map(|r| r.qps)
    };
    println!("\nout-of-the-box ratios (typed mux over the others, same concurrency)");
    for c in OUT_OF_THE_BOX_CONCURRENCIES {
        let mux = find(ClientImpl::LonglinkMuxTyped, c);
        for (label, other) in [
            ("typed mux / tarpc sb", ClientImpl::TarpcTyped),
            ("typed mux / pooled", ClientImpl::LonglinkPooledTyped),
        ] {
            if let (Some(a), Some(b)) = (mux, find(other, c)) {
                println!("  c={c:<5} {label:<22} {:>6.2}×", a / b);
            }
        }
    }
    rows
}
