//! The processes of one suite run: a server started and waited for, a client run to its
//! JSON result, each pinned to its own core or left where the kernel puts it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::suite::SuiteOptions;
use super::{ClientImpl, Flavor, RunResult, ServerImpl};

/// Where the two processes of a run go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The server on core 0, the client on core 1 (when `taskset` is there): a
    /// multi-thread runtime then has one worker, as `available_parallelism` sees one core.
    Pinned,
    /// Wherever the kernel puts them, each runtime with a worker per core: how a user runs
    /// a service (`#[tokio::main]`).
    Unpinned,
}

impl Placement {
    /// The placement the suite's `--no-pin` asks for.
    pub fn of(opts: &SuiteOptions) -> Placement {
        if opts.pin {
            Placement::Pinned
        } else {
            Placement::Unpinned
        }
    }

    fn core(self, core: u32) -> Option<u32> {
        (self == Placement::Pinned).then_some(core)
    }
}

fn command(pin: Option<u32>) -> Command {
    let exe = std::env::current_exe().expect("the running binary");
    match pin {
        Some(core) if taskset_available() => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(core.to_string()).arg(exe);
            c
        }
        _ => Command::new(exe),
    }
}

/// Whether `taskset` can be run.
pub fn taskset_available() -> bool {
    std::process::Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A running server, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Starts a server and waits until it accepts connections.
pub async fn start_server(
    opts: &SuiteOptions,
    placement: Placement,
    which: ServerImpl,
    flavor: Flavor,
    extra: &[&str],
) -> ServerProcess {
    // The previous server was killed without waiting: until its socket is gone, a new one
    // cannot bind, and a readiness check would reach the old one.
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(&opts.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "something else listens on {}",
            opts.addr
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut cmd = command(placement.core(0));
    cmd.arg("rpc-server")
        .arg("--impl")
        .arg(value(which))
        .arg("--addr")
        .arg(&opts.addr)
        .arg("--flavor")
        .arg(value(flavor))
        .args(extra)
        .stdout(Stdio::null())
        .kill_on_drop(true);
    if which == ServerImpl::LonglinkTls {
        cmd.arg("--tls-data-dir").arg(&opts.tls_data_dir);
    }
    let child = cmd.spawn().expect("spawn the server");
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(&opts.addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the {which:?} server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ServerProcess(child)
}

fn value<T: clap::ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .expect("a value")
        .get_name()
        .to_owned()
}

/// Runs one client process to its result (`None`, said on stderr, if it failed).
pub async fn run_client(
    opts: &SuiteOptions,
    placement: Placement,
    which: ClientImpl,
    flavor: Flavor,
    concurrency: usize,
    extra: &[String],
) -> Option<RunResult> {
    let mut cmd = command(placement.core(1));
    cmd.arg("rpc-client")
        .arg("--impl")
        .arg(value(which))
        .arg("--addr")
        .arg(&opts.addr)
        .arg("--flavor")
        .arg(value(flavor))
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--seconds")
        .arg(opts.seconds.to_string())
        .arg("--json")
        .args(extra)
        .stderr(Stdio::inherit());
    if which.is_tls() {
        cmd.arg("--tls-data-dir").arg(&opts.tls_data_dir);
    }
    let output = cmd.output().await.expect("run the client");
    if !output.status.success() {
        eprintln!(
            "client {which:?} c={concurrency} failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

/// One row of a throughput table.
pub fn print_row(label: &str, r: &RunResult) {
    let errors: u64 = r.errors.values().sum();
    println!(
        "{label:<22} {:>8} {:>6} {:>11.0} {:>9} {:>9} {:>9} {:>9}",
        format!("{:?}", r.flavor).to_lowercase(),
        r.concurrency,
        r.qps,
        r.p50_us,
        r.p99_us,
        r.p999_us,
        errors
    );
}

/// The header of a throughput table.
pub fn header() {
    println!(
        "{:<22} {:>8} {:>6} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "client", "flavor", "c", "calls/s", "p50 µs", "p99 µs", "p999 µs", "errors"
    );
}
