//! `longlink-bench`: load tools that compare longlink with the crates users would pick
//! instead. See `docs/benchmarks.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use longlink_benches::rpc_load::clients::{self, Caller, Limits, Load};
use longlink_benches::rpc_load::servers::{self, EchoBehaviour};
use longlink_benches::rpc_load::{
    BodyKind, ClientImpl, DEFAULT_ADDR, Flavor, ServerImpl, TlsFiles, suite,
};

#[derive(Parser)]
#[command(name = "longlink-bench", about = "Load tools for longlink", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The RPC comparison: longlink (mux, mux×4, pooled, short; mux, pooled and short again
    /// over TLS; mux and pooled typed through `service!`) vs tarpc vs tonic, each client and
    /// server in its own process pinned to its own core, both runtime flavors; then the
    /// out-of-the-box rows (typed, unpinned, a worker per core), head-of-line and overload
    /// runs. Prints tables with ratios (TLS against plaintext, typed against raw among them).
    Rpc {
        /// Every concurrency (1, 10, 100, 200, 400, 1000) for 5 s each; the default is a
        /// short run (1, 100, 1000 for 2 s).
        #[arg(long)]
        full: bool,
        /// These concurrencies instead (comma-separated), e.g. `100,400`.
        #[arg(long, value_delimiter = ',')]
        concurrencies: Vec<usize>,
        /// Measured seconds per run instead of 2 (5 with `--full`).
        #[arg(long)]
        seconds: Option<f64>,
        /// Do not pin to cores with taskset.
        #[arg(long)]
        no_pin: bool,
        /// Where to write the JSON results.
        #[arg(long, default_value = "target/longlink-bench/rpc.json")]
        out: PathBuf,
        /// Address for the servers.
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: String,
        /// Where the TLS runs' development CA and certificate are made (`tls/` under it).
        #[arg(long, default_value = "target/longlink-bench/rpc-tls")]
        tls_data_dir: PathBuf,
    },
    /// Only the compression row of `rpc`: a 1 MiB JSON-like echo over one multiplexed
    /// connection, with zstd and without, against a server with zstd on; calls/s and
    /// payload bytes on the wire per call.
    RpcCompression {
        /// Measured seconds per run.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Do not pin to cores with taskset.
        #[arg(long)]
        no_pin: bool,
        /// Where to write the JSON results.
        #[arg(long, default_value = "target/longlink-bench/rpc-compression.json")]
        out: PathBuf,
        /// Address for the server.
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: String,
    },
    /// Unicast through the push system end to end (API → register → room → client): the
    /// single process and a 2-room cluster with each RPC strategy, as child processes of the
    /// `longlink-push` binary. Prints a table with ratios.
    PushUnicast {
        /// The `longlink-push` binary (`cargo build --release -p longlink-push`).
        #[arg(long, default_value = "target/release/longlink-push")]
        bin: PathBuf,
        /// Connected users.
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Pushes in flight.
        #[arg(short, long, default_value_t = 64)]
        concurrency: usize,
        /// Measured seconds per row.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// MariaDB for the clusters' saver.
        #[arg(long, default_value = "mysql://root@127.0.0.1:3306/test")]
        database: String,
        /// Ports count from here.
        #[arg(long, default_value_t = 27_800)]
        base_port: u16,
        /// Where to write the JSON results.
        #[arg(long, default_value = "target/longlink-bench/push-unicast.json")]
        out: PathBuf,
        /// Only the 2-room cluster with one center against two centers (the load spread
        /// over both), both deliveries.
        #[arg(long)]
        centers: bool,
    },
    /// Many connections against a running push system (`longlink-push all` or a cluster):
    /// connect, broadcast, unicast, idle or churn, spread over worker processes and loopback source
    /// addresses, with a progress bar; prints a summary and writes a JSON result.
    Push {
        /// What to measure.
        #[arg(value_enum)]
        scenario: longlink_benches::push_load::scale::Scenario,
        /// The center's URL.
        #[arg(long, default_value = "http://127.0.0.1:7800")]
        center: String,
        /// The data dir holding `demo-api-key` and `token-secret` (from `all` or `cluster`).
        #[arg(long, default_value = "./longlink-data")]
        data_dir: PathBuf,
        /// Connections.
        #[arg(short = 'n', long, default_value_t = 10_000)]
        conns: usize,
        /// Connections per worker process (≤ 19,000: the open-file limit).
        #[arg(long, default_value_t = 15_000)]
        per_worker: usize,
        /// WebSocket instead of raw TCP.
        #[arg(long)]
        ws: bool,
        /// Broadcasts (broadcast) or unicasts (churn).
        #[arg(long, default_value_t = 10)]
        messages: usize,
        /// Seconds to hold (connect, idle) or to push (unicast).
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
        /// Unicast: pushes per second through the center API (open loop).
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// Broadcast: send the broadcasts all at once, so that several go out in one write
        /// per connection (as goim batches), instead of one after another.
        #[arg(long)]
        burst: bool,
        /// Connects in flight per worker.
        #[arg(long, default_value_t = 256)]
        parallel: usize,
        /// Server pids to measure (default: every `longlink-push room`/`all`).
        #[arg(long, value_delimiter = ',')]
        pids: Vec<u32>,
        /// Where to write the JSON result.
        #[arg(long, default_value = "target/longlink-bench/push.json")]
        out: PathBuf,
        /// TLS: the CA file the system's certificate chains to (`<data_dir>/tls/ca.pem`
        /// after `--tls-self-signed`); connections use the TLS listeners.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// SVG charts for `docs/benchmarks.md` from the JSON results of `push` runs.
    Plot {
        /// The directory holding the results (`connect-ws.json`, `broadcast-tcp.json`, …).
        #[arg(long, default_value = "docs/results")]
        results: PathBuf,
        /// Where the SVG files go.
        #[arg(long, default_value = "docs/img")]
        out: PathBuf,
    },
    /// A load worker (started by `push`; reads its plan as JSON).
    #[command(hide = true)]
    PushWorker {
        /// The plan, as JSON.
        plan: String,
    },
    /// Runs one echo server until killed.
    RpcServer {
        /// Which implementation.
        #[arg(long = "impl", value_enum)]
        which: ServerImpl,
        /// Listen address.
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: SocketAddr,
        /// Runtime flavor.
        #[arg(long, value_enum, default_value = "multi")]
        flavor: Flavor,
        /// Sleep this long for requests flagged slow.
        #[arg(long, default_value_t = 0)]
        slow_ms: u64,
        /// Sleep this long on every request.
        #[arg(long, default_value_t = 0)]
        work_us: u64,
        /// Compute this long on every request (a handler that does CPU work).
        #[arg(long, default_value_t = 0)]
        cpu_us: u64,
        /// Run one query (`DO 1`) on this database for every request, through a pool of
        /// `--db-conns` connections (a handler that waits on a database).
        #[arg(long)]
        db: Option<String>,
        /// Connections of the `--db` pool.
        #[arg(long, default_value_t = 16)]
        db_conns: usize,
        /// longlink only: requests running at once.
        #[arg(long, default_value_t = 4096)]
        max_concurrent: usize,
        /// longlink-tls: the directory whose `tls/` holds `cert.pem` and `key.pem` (made
        /// there if missing).
        #[arg(long)]
        tls_data_dir: Option<PathBuf>,
    },
    /// Runs one load client and prints its result.
    RpcClient {
        /// Which implementation.
        #[arg(long = "impl", value_enum)]
        which: ClientImpl,
        /// Server address.
        #[arg(long, default_value = DEFAULT_ADDR)]
        addr: String,
        /// Runtime flavor.
        #[arg(long, value_enum, default_value = "multi")]
        flavor: Flavor,
        /// Concurrent callers.
        #[arg(short, long, default_value_t = 100)]
        concurrency: usize,
        /// Measured seconds (after a warm-up).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Body size.
        #[arg(long, default_value_t = 1024)]
        body_bytes: usize,
        /// What the bodies contain.
        #[arg(long, value_enum, default_value = "zeros")]
        body_kind: BodyKind,
        /// Calls per thousand flagged slow.
        #[arg(long, default_value_t = 0)]
        slow_permille: u32,
        /// Calls per thousand with a large body.
        #[arg(long, default_value_t = 0)]
        big_permille: u32,
        /// The large body size.
        #[arg(long, default_value_t = 1 << 20)]
        big_bytes: usize,
        /// Open loop: calls per second offered in all (latency counted from when each call
        /// was due). Default: closed loop.
        #[arg(long)]
        rate: Option<f64>,
        /// longlink: calls in flight.
        #[arg(long, default_value_t = 20_000)]
        max_in_flight: usize,
        /// longlink: calls queued.
        #[arg(long, default_value_t = 0)]
        max_queued: usize,
        /// Print the result as JSON (and no progress bar).
        #[arg(long)]
        json: bool,
        /// The TLS clients: the directory whose `tls/ca.pem` they trust (made there if
        /// missing).
        #[arg(long)]
        tls_data_dir: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Rpc {
            full,
            concurrencies,
            seconds,
            no_pin,
            out,
            addr,
            tls_data_dir,
        } => {
            let opts = suite::SuiteOptions {
                concurrencies: if !concurrencies.is_empty() {
                    concurrencies
                } else if full {
                    vec![1, 10, 100, 200, 400, 1000]
                } else {
                    vec![1, 100, 1000]
                },
                seconds: seconds.unwrap_or(if full { 5.0 } else { 2.0 }),
                flavors: vec![Flavor::Multi, Flavor::Current],
                pin: !no_pin,
                out,
                addr,
                tls_data_dir,
            };
            Flavor::Multi.runtime().block_on(suite::run(opts));
        }
        Command::RpcCompression {
            seconds,
            no_pin,
            out,
            addr,
        } => {
            let opts = suite::SuiteOptions {
                concurrencies: vec![],
                seconds,
                flavors: vec![Flavor::Multi],
                pin: !no_pin,
                out,
                addr,
                tls_data_dir: PathBuf::from("target/longlink-bench/rpc-tls"),
            };
            let rows = Flavor::Multi
                .runtime()
                .block_on(longlink_benches::rpc_load::compression::run(&opts));
            if let Some(dir) = opts.out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(&opts.out, serde_json::to_vec_pretty(&rows).expect("json"))
                .expect("write the results");
            println!("\nresults written to {}", opts.out.display());
        }
        Command::PushUnicast {
            bin,
            users,
            concurrency,
            seconds,
            database,
            base_port,
            out,
            centers,
        } => {
            let opts = longlink_benches::push_load::suite::Options {
                centers,
                bin,
                load: longlink_benches::push_load::unicast::Load {
                    users,
                    concurrency,
                    duration: Duration::from_secs_f64(seconds),
                    delivery: String::new(),
                },
                database,
                base_port,
                out,
            };
            if let Err(e) = Flavor::Multi
                .runtime()
                .block_on(longlink_benches::push_load::suite::run(opts))
            {
                eprintln!("push-unicast failed: {e}");
                std::process::exit(1);
            }
        }
        Command::Push {
            scenario,
            center,
            data_dir,
            conns,
            per_worker,
            ws,
            messages,
            hold_secs,
            rate,
            burst,
            parallel,
            pids,
            out,
            ca,
        } => {
            let read = |name: &str| {
                std::fs::read_to_string(data_dir.join(name))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|e| {
                        eprintln!("reading {}: {e}", data_dir.join(name).display());
                        std::process::exit(1)
                    })
            };
            let opts = longlink_benches::push_load::scale::Options {
                center,
                key: read("demo-api-key"),
                secret: read("token-secret"),
                conns,
                per_worker,
                websocket: ws,
                scenario,
                messages,
                hold_secs,
                rate,
                burst,
                parallel,
                pids,
                out,
                ca,
            };
            match Flavor::Multi
                .runtime()
                .block_on(longlink_benches::push_load::scale::run(opts))
            {
                Ok(o) => println!("{}", serde_json::to_string_pretty(&o).expect("json")),
                Err(e) => {
                    eprintln!("push failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Plot { results, out } => match longlink_benches::plot::write_all(&results, &out) {
            Ok(files) => {
                for f in files {
                    println!("{}", out.join(f).display());
                }
            }
            Err(e) => {
                eprintln!("plot failed: {e}");
                std::process::exit(1);
            }
        },
        Command::PushWorker { plan } => {
            let plan: longlink_benches::push_load::worker::WorkerPlan =
                serde_json::from_str(&plan).expect("a plan");
            Flavor::Multi
                .runtime()
                .block_on(longlink_benches::push_load::worker::run(plan));
        }
        Command::RpcServer {
            which,
            addr,
            flavor,
            slow_ms,
            work_us,
            cpu_us,
            db,
            db_conns,
            max_concurrent,
            tls_data_dir,
        } => {
            let behaviour = EchoBehaviour {
                slow: Duration::from_millis(slow_ms),
                work: Duration::from_micros(work_us),
                cpu: Duration::from_micros(cpu_us),
            };
            if let Some(dsn) = db
                && let Err(e) = servers::use_database(&dsn, db_conns)
            {
                eprintln!("--db: {e}");
                std::process::exit(1);
            }
            let tls = tls_files(tls_data_dir.as_deref());
            if let Err(e) = flavor.runtime().block_on(servers::run(
                which,
                addr,
                behaviour,
                max_concurrent,
                tls.as_ref(),
            )) {
                eprintln!("server failed: {e}");
                std::process::exit(1);
            }
        }
        Command::RpcClient {
            which,
            addr,
            flavor,
            concurrency,
            seconds,
            body_bytes,
            body_kind,
            slow_permille,
            big_permille,
            big_bytes,
            rate,
            max_in_flight,
            max_queued,
            json,
            tls_data_dir,
        } => {
            let tls = tls_files(tls_data_dir.as_deref());
            let load = Load {
                concurrency,
                duration: Duration::from_secs_f64(seconds),
                body_bytes,
                slow_permille,
                big_permille,
                big_bytes,
                rate,
                body_kind,
            };
            let result = flavor.runtime().block_on(async {
                let caller = Caller::new(
                    which,
                    &addr,
                    concurrency,
                    Limits {
                        max_in_flight,
                        max_queued,
                    },
                    tls.as_ref(),
                )
                .await?;
                Ok::<_, String>(clients::run(caller, which, flavor, load, !json).await)
            });
            match result {
                Ok(r) if json => println!("{}", serde_json::to_string(&r).expect("json")),
                Ok(r) => println!(
                    "{} {:?} c={}: {:.0} calls/s, p50 {} µs, p99 {} µs, p999 {} µs, errors {:?}",
                    which.name(),
                    r.flavor,
                    r.concurrency,
                    r.qps,
                    r.p50_us,
                    r.p99_us,
                    r.p999_us,
                    r.errors
                ),
                Err(e) => {
                    eprintln!("client failed: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}

/// The TLS files under `dir`, if one is given (exits with the reason if they cannot be
/// made).
fn tls_files(dir: Option<&std::path::Path>) -> Option<TlsFiles> {
    dir.map(|dir| {
        TlsFiles::under(dir).unwrap_or_else(|e| {
            eprintln!("TLS files under {}: {e}", dir.display());
            std::process::exit(1)
        })
    })
}
