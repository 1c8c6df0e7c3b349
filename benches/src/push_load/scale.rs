//! `longlink-bench push <scenario>`: many connections against a running push system (one
//! process or a cluster), spread over worker processes (≤ ~19,900 connections each: the
//! open-file limit) and loopback source addresses (127.B.0.2, .3, … for a block B chosen per
//! run, so one run's TIME_WAIT does not take the next one's ports: ~28k ports each).
//!
//! Scenarios: `connect` (connect rate, then server memory per connection from `/proc`),
//! `broadcast` (deliveries per second and delivery latency across every connection),
//! `idle` (hold with heartbeats: the rooms' CPU), `churn` (reconnect storms while stored
//! unicasts flow: every message must arrive). Prints a summary and writes a JSON result.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::worker::{Report, WorkerPlan};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Connect, report rate and memory, hold briefly.
    Connect,
    /// Broadcast to everyone.
    Broadcast,
    /// Unicasts to random connected users at a target rate.
    Unicast,
    /// Hold with heartbeats; report CPU.
    Idle,
    /// Reconnect storms while stored unicasts flow.
    Churn,
}

/// The run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The center's base URL.
    pub center: String,
    /// The demo app's API key.
    pub key: String,
    /// The token secret.
    pub secret: String,
    /// Connections.
    pub conns: usize,
    /// Connections per worker process.
    pub per_worker: usize,
    /// WebSocket instead of raw TCP.
    pub websocket: bool,
    /// The scenario.
    pub scenario: Scenario,
    /// Broadcasts (broadcast) or unicasts (churn).
    pub messages: usize,
    /// Seconds to hold (idle, connect) or to push (unicast).
    pub hold_secs: u64,
    /// Unicast: pushes per second.
    pub rate: u64,
    /// Broadcast: all at once (batched per write) instead of one after another.
    pub burst: bool,
    /// Connects in flight per worker.
    pub parallel: usize,
    /// Server process ids to measure (default: every `longlink-push` room or `all`).
    pub pids: Vec<u32>,
    /// Where the JSON goes.
    pub out: PathBuf,
    /// TLS: the CA the rooms' and the center's certificates chain to (PEM); connections go
    /// to the TLS listeners the dispatcher lists.
    pub ca: Option<PathBuf>,
}

/// The result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Connections asked for / made / failed.
    pub conns: usize,
    /// Connected.
    pub connected: u64,
    /// Failed to connect.
    pub failed: u64,
    /// Connect rate, per second.
    pub connect_per_sec: f64,
    /// Server processes measured.
    pub server_pids: Vec<u32>,
    /// Their RSS before connecting, bytes.
    pub rss_before: u64,
    /// Connections over TLS.
    pub tls: bool,
    /// The rooms' CPU time while connecting (TLS handshakes included), seconds.
    pub connect_room_cpu_secs: f64,
    /// Connections (with their handshakes) per second of room CPU: per busy core.
    pub connects_per_room_cpu_sec: f64,
    /// Their RSS with every connection open, bytes.
    pub rss_connected: u64,
    /// (connected − before) / connections.
    pub rss_bytes_per_conn: f64,
    /// Deliveries per second (broadcast).
    pub deliveries_per_sec: f64,
    /// Deliveries made / expected.
    pub delivered: u64,
    /// Expected deliveries.
    pub expected: u64,
    /// Latency percentiles, ms.
    pub p50_ms: f64,
    /// 99th.
    pub p99_ms: f64,
    /// 99.9th.
    pub p999_ms: f64,
    /// Rooms' CPU while idle, percent of one core.
    pub idle_cpu_percent: f64,
    /// Churn: reconnects made, and messages sent/lost.
    pub reconnects: u64,
    /// Churn: messages the API accepted.
    pub sent: u64,
    /// Churn: accepted messages that never arrived.
    pub lost: u64,
    /// RSS after the connections closed, bytes.
    pub rss_after_close: u64,
    /// Broadcast/unicast: the rooms' CPU time while delivering, seconds.
    pub room_cpu_secs: f64,
    /// Broadcast/unicast: deliveries per second of room CPU (per busy core).
    pub deliveries_per_room_cpu_sec: f64,
    /// Unicast: the target rate and what the API accepted per second.
    pub target_rate: u64,
    /// Unicast: pushes the API accepted per second.
    pub accepted_per_sec: f64,
    /// Unicast: pushes refused or failed, and pushes not sent because too many were in
    /// flight (the system fell behind the rate).
    pub errors: u64,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    async fn command(&mut self, line: &str) -> Option<String> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .ok()?;
        self.stdin.flush().await.ok()?;
        self.lines.next_line().await.ok()?
    }

    async fn report(&mut self) -> Report {
        self.command("report")
            .await
            .and_then(|l| serde_json::from_str(&l).ok())
            .unwrap_or_default()
    }
}

/// Every `longlink-push` room (or single-process `all`) running on this machine.
fn server_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("longlink-push"))
            && args.get(1).is_some_and(|a| a == "room" || a == "all")
        {
            pids.push(pid);
        }
    }
    pids
}

fn rss(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum::<u64>()
        * 1024
}

fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|s| {
            let after = s.rsplit(')').next()?.to_owned();
            let fields: Vec<&str> = after.split_whitespace().collect();
            // utime and stime are fields 14 and 15; after "(comm)" they are 12 and 13.
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// The CA text `--ca` names, read once.
static CA: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

async fn http(
    method: &str,
    url: &str,
    key: &str,
    body: Option<String>,
) -> Result<(u16, serde_json::Value), String> {
    use http_body_util::{BodyExt, Full};
    let tls = match CA.get().cloned().flatten() {
        Some(pem) => super::worker::tls_config(&pem, b"http/1.1")?,
        None => super::worker::tls_config("", b"http/1.1")?,
    };
    let mut tls = (*tls).clone();
    tls.alpn_protocols.clear(); // hyper-rustls sets its own
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    ))
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn reports(workers: &mut [Worker]) -> Vec<Report> {
    let mut out = Vec::new();
    for w in workers.iter_mut() {
        out.push(w.report().await);
    }
    out
}

/// Runs the scenario.
pub async fn run(opts: Options) -> Result<Outcome, String> {
    let ca_pem = opts
        .ca
        .as_ref()
        .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())))
        .transpose()?;
    let _ = CA.set(ca_pem.clone());
    let (status, dispatch) = http(
        "GET",
        &format!("{}/dispatch?uid=probe&net=wifi", opts.center),
        &opts.key,
        None,
    )
    .await?;
    if status != 200 {
        return Err(format!("dispatch answered {status}: {dispatch}"));
    }
    let rooms: Vec<String> = dispatch["rooms"]
        .as_array()
        .ok_or("no rooms")?
        .iter()
        .filter_map(|r| {
            r[if opts.websocket { "ws" } else { "tcp" }]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    if rooms.is_empty() {
        return Err("the dispatcher lists no room".into());
    }
    let pids = if opts.pids.is_empty() {
        server_pids()
    } else {
        opts.pids.clone()
    };
    let mut outcome = Outcome {
        conns: opts.conns,
        server_pids: pids.clone(),
        tls: ca_pem.is_some(),
        rss_before: rss(&pids),
        ..Outcome::default()
    };
    eprintln!(
        "{} {}{} connections to {} room(s), server pids {:?}",
        opts.conns,
        if opts.websocket { "WebSocket" } else { "TCP" },
        if outcome.tls { "+TLS" } else { "" },
        rooms.len(),
        pids
    );
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let per_worker = opts.per_worker.clamp(1, 19_000);
    let mut workers = Vec::new();
    let mut first = 0;
    let started = Instant::now();
    let cpu_before_connect = cpu_ticks(&pids);
    // Each run takes a fresh block of source addresses (127.B.0.2, 127.B.0.3, … for a random
    // B): the previous run's closed connections sit in TIME_WAIT (up to 60 s, at most
    // 131,072 of them) on its own addresses' ports, so a run right after one does not
    // find those ports taken.
    let block = fastrand::u8(1..=254);
    while first < opts.conns {
        let count = per_worker.min(opts.conns - first);
        let plan = WorkerPlan {
            rooms: rooms.clone(),
            websocket: opts.websocket,
            first,
            count,
            // Each worker its own source address in the run's block.
            source: format!("127.{block}.0.{}", 2 + workers.len() % 250),
            secret: opts.secret.clone(),
            heartbeat_secs: 60,
            parallel: opts.parallel,
            track_ids: opts.scenario == Scenario::Churn,
            ca_pem: ca_pem.clone(),
        };
        let mut child = Command::new(&exe)
            .arg("push-worker")
            .arg(serde_json::to_string(&plan).map_err(|e| e.to_string())?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdin = child.stdin.take().ok_or("stdin")?;
        let lines = BufReader::new(child.stdout.take().ok_or("stdout")?).lines();
        workers.push(Worker {
            child,
            stdin,
            lines,
        });
        first += count;
    }
    // Progress while connecting.
    let bar = ProgressBar::new(opts.conns as u64);
    bar.set_style(
        ProgressStyle::with_template("connecting {bar:40} {pos}/{len} {per_sec} eta {eta}")
            .map_err(|e| e.to_string())?,
    );
    let mut progress = vec![0u64; workers.len()];
    let mut failed = vec![0u64; workers.len()];
    let mut done = vec![false; workers.len()];
    while done.iter().any(|d| !d) {
        for (i, w) in workers.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            let line = tokio::time::timeout(Duration::from_millis(50), w.lines.next_line()).await;
            let Ok(Ok(Some(line))) = line else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(n) = v["ready"].as_u64() {
                progress[i] = n;
                failed[i] = v["failed"].as_u64().unwrap_or(0);
                done[i] = true;
            } else if let Some(n) = v["connected"].as_u64() {
                progress[i] = n;
            }
        }
        bar.set_position(progress.iter().sum());
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    outcome.connected = progress.iter().sum();
    outcome.failed = failed.iter().sum();
    outcome.connect_per_sec = outcome.connected as f64 / elapsed;
    outcome.connect_room_cpu_secs =
        cpu_ticks(&pids).saturating_sub(cpu_before_connect) as f64 / 100.0;
    if outcome.connect_room_cpu_secs > 0.0 {
        outcome.connects_per_room_cpu_sec =
            outcome.connected as f64 / outcome.connect_room_cpu_secs;
    }
    // Let the rooms settle (registrations, first heartbeats), then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    outcome.rss_connected = rss(&pids);
    outcome.rss_bytes_per_conn = (outcome.rss_connected.saturating_sub(outcome.rss_before)) as f64
        / outcome.connected.max(1) as f64;
    eprintln!(
        "connected {} (failed {}) in {elapsed:.1} s: {:.0}/s; server RSS {:.1} → {:.1} MiB, {:.0} bytes per connection",
        outcome.connected,
        outcome.failed,
        outcome.connect_per_sec,
        outcome.rss_before as f64 / 1048576.0,
        outcome.rss_connected as f64 / 1048576.0,
        outcome.rss_bytes_per_conn
    );
    match opts.scenario {
        Scenario::Connect => {
            tokio::time::sleep(Duration::from_secs(opts.hold_secs)).await;
        }
        Scenario::Idle => {
            let before = cpu_ticks(&pids);
            let t = Instant::now();
            tokio::time::sleep(Duration::from_secs(opts.hold_secs.max(1))).await;
            let ticks = cpu_ticks(&pids).saturating_sub(before);
            // Linux reports these in USER_HZ, 100 per second.
            outcome.idle_cpu_percent = ticks as f64 / t.elapsed().as_secs_f64();
            eprintln!(
                "idle for {:.0} s: rooms used {:.1}% of one core",
                t.elapsed().as_secs_f64(),
                outcome.idle_cpu_percent
            );
        }
        Scenario::Broadcast => {
            let before = cpu_ticks(&pids);
            broadcast(&opts, &mut workers, &mut outcome).await?;
            room_cpu(cpu_ticks(&pids).saturating_sub(before), &mut outcome);
        }
        Scenario::Unicast => {
            let before = cpu_ticks(&pids);
            unicast(&opts, &mut workers, &mut outcome).await?;
            room_cpu(cpu_ticks(&pids).saturating_sub(before), &mut outcome);
        }
        Scenario::Churn => churn(&opts, &mut workers, &mut outcome).await?,
    }
    for w in &mut workers {
        let _ = w.stdin.write_all(b"quit\n").await;
    }
    for w in &mut workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w.child.wait()).await;
    }
    // Closes are processed, then a room trims once they have stopped (within ~2 s); a
    // cluster room keeps closed sessions for their grace (10 s by default) and gives their
    // memory back when it ends.
    tokio::time::sleep(Duration::from_secs(15)).await;
    outcome.rss_after_close = rss(&pids);
    eprintln!(
        "after closing: server RSS {:.1} MiB (before: {:.1} MiB)",
        outcome.rss_after_close as f64 / 1048576.0,
        outcome.rss_before as f64 / 1048576.0
    );
    if let Some(parent) = opts.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(
        &opts.out,
        serde_json::to_string_pretty(&outcome).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok(outcome)
}

/// Records the rooms' CPU over a delivery run (`ticks` in USER_HZ, 100 per second).
fn room_cpu(ticks: u64, outcome: &mut Outcome) {
    outcome.room_cpu_secs = ticks as f64 / 100.0;
    if outcome.room_cpu_secs > 0.0 {
        outcome.deliveries_per_room_cpu_sec = outcome.delivered as f64 / outcome.room_cpu_secs;
    }
    eprintln!(
        "rooms used {:.1} s of CPU: {:.0} deliveries per CPU-second",
        outcome.room_cpu_secs, outcome.deliveries_per_room_cpu_sec
    );
}

/// Unicasts at `opts.rate` for `opts.hold_secs` to random connected users through the
/// center API (open loop: a push is sent on schedule whether or not earlier ones have
/// been answered, up to 1,024 in flight), then waits for them to arrive.
async fn unicast(
    opts: &Options,
    workers: &mut [Worker],
    outcome: &mut Outcome,
) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    const IN_FLIGHT: usize = 1024;
    reset(workers).await;
    let users = outcome.connected.max(1);
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(IN_FLIGHT)
            .build_http();
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let accepted = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let url: http::Uri = format!("{}/push/unicast", opts.center)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let total = opts.rate * opts.hold_secs.max(1);
    let started = Instant::now();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("unicast {bar:40} {pos}/{len} {per_sec}").expect("template"),
    );
    for i in 0..total {
        // On schedule: push i goes out at i / rate seconds.
        let due = started + Duration::from_secs_f64(i as f64 / opts.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        bar.inc(1);
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            errors.fetch_add(1, Ordering::Relaxed); // behind: too many in flight
            continue;
        };
        let uid = format!("load{}", fastrand::u64(..users));
        let body =
            serde_json::json!({"uid": uid, "body": now_us().to_string(), "mode": "at_most_once"});
        let req = http::Request::post(url.clone())
            .header("x-api-key", &opts.key)
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let (client, accepted, errors) =
            (client.clone(), Arc::clone(&accepted), Arc::clone(&errors));
        tokio::spawn(async move {
            let ok = match client.request(req).await {
                Ok(resp) => {
                    let ok = resp.status() == 200;
                    let _ = resp.into_body().collect().await;
                    ok
                }
                Err(_) => false,
            };
            let counter = if ok { &accepted } else { &errors };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    bar.finish_and_clear();
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
    let sending = started.elapsed().as_secs_f64();
    let sent = accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    let rs = loop {
        let rs = reports(workers).await;
        let received = rs.iter().map(|r| r.received).sum::<u64>();
        if received >= sent || Instant::now() > deadline {
            break rs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    latency(&rs, outcome);
    outcome.delivered = rs.iter().map(|r| r.received).sum();
    outcome.expected = sent;
    outcome.sent = sent;
    outcome.lost = sent.saturating_sub(outcome.delivered);
    outcome.target_rate = opts.rate;
    outcome.accepted_per_sec = sent as f64 / sending;
    outcome.deliveries_per_sec = outcome.delivered as f64 / sending;
    outcome.errors = errors.load(Ordering::Relaxed);
    eprintln!(
        "unicast at {}/s for {:.1} s: {sent} accepted ({:.0}/s), {} received, {} errors; latency p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms",
        opts.rate,
        sending,
        outcome.accepted_per_sec,
        outcome.delivered,
        outcome.errors,
        outcome.p50_ms,
        outcome.p99_ms,
        outcome.p999_ms
    );
    Ok(())
}

fn latency(reports: &[Report], outcome: &mut Outcome) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 2).expect("bounds");
    for r in reports {
        for (v, n) in &r.latency_us {
            let _ = h.record_n(*v, *n);
        }
    }
    outcome.p50_ms = h.value_at_quantile(0.5) as f64 / 1000.0;
    outcome.p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
    outcome.p999_ms = h.value_at_quantile(0.999) as f64 / 1000.0;
}

/// Zeroes every worker's counters before a measured phase.
async fn reset(workers: &mut [Worker]) {
    for w in workers.iter_mut() {
        w.command("reset").await;
    }
}

async fn broadcast(
    opts: &Options,
    workers: &mut [Worker],
    outcome: &mut Outcome,
) -> Result<(), String> {
    reset(workers).await;
    let expected = outcome.connected * opts.messages as u64;
    let started = Instant::now();
    let url = format!("{}/push/broadcast", opts.center);
    let send = || async {
        let body = serde_json::json!({"body": now_us().to_string(), "mode": "at_most_once"});
        let (status, answer) = http("POST", &url, &opts.key, Some(body.to_string())).await?;
        if status != 200 {
            return Err(format!("broadcast answered {status}: {answer}"));
        }
        Ok(())
    };
    if opts.burst {
        let all = futures::future::join_all((0..opts.messages).map(|_| send())).await;
        all.into_iter().collect::<Result<Vec<()>, String>>()?;
    } else {
        for _ in 0..opts.messages {
            send().await?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received;
    let mut last_change = (0u64, Instant::now());
    loop {
        let rs = reports(workers).await;
        received = rs.iter().map(|r| r.received).sum::<u64>();
        if received != last_change.0 {
            last_change = (received, Instant::now());
        }
        if received >= expected
            || Instant::now() > deadline
            || last_change.1.elapsed() > Duration::from_secs(3)
        {
            latency(&rs, outcome);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = last_change
        .1
        .duration_since(started)
        .as_secs_f64()
        .max(1e-3);
    outcome.delivered = received;
    outcome.expected = expected;
    outcome.deliveries_per_sec = received as f64 / took;
    eprintln!(
        "{} broadcasts: {received}/{expected} deliveries in {took:.2} s = {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms",
        opts.messages, outcome.deliveries_per_sec, outcome.p50_ms, outcome.p99_ms, outcome.p999_ms
    );
    Ok(())
}

async fn churn(
    opts: &Options,
    workers: &mut [Worker],
    outcome: &mut Outcome,
) -> Result<(), String> {
    reset(workers).await;
    let users = outcome.connected.min(2000) as usize;
    let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
    let started = Instant::now();
    for i in 0..opts.messages {
        if i % (opts.messages / 10).max(1) == 0 {
            // A fifth of the connections drop and reconnect at once.
            for w in workers.iter_mut() {
                w.command("churn 0.2").await;
            }
        }
        let uid = format!("load{}", i % users);
        let body = serde_json::json!({"uid": uid, "body": now_us().to_string()});
        let (status, answer) = http(
            "POST",
            &format!("{}/push/unicast", opts.center),
            &opts.key,
            Some(body.to_string()),
        )
        .await?;
        if status == 200 {
            sent.entry(uid)
                .or_default()
                .push(answer["id"].as_u64().unwrap_or(0));
        }
    }
    outcome.sent = sent.values().map(|v| v.len() as u64).sum();
    // Until everything arrived, or nothing new for 10 s.
    let mut last = (0u64, Instant::now());
    loop {
        let rs = reports(workers).await;
        let mut got: BTreeMap<String, std::collections::HashSet<u64>> = BTreeMap::new();
        for r in &rs {
            for (uid, ids) in &r.ids {
                got.entry(uid.clone()).or_default().extend(ids);
            }
        }
        let lost: u64 = sent
            .iter()
            .map(|(uid, ids)| {
                ids.iter()
                    .filter(|id| !got.get(uid).is_some_and(|g| g.contains(id)))
                    .count() as u64
            })
            .sum();
        outcome.reconnects = rs.iter().map(|r| r.reconnects).sum();
        let arrived = outcome.sent - lost;
        if arrived != last.0 {
            last = (arrived, Instant::now());
        }
        if lost == 0 || last.1.elapsed() > Duration::from_secs(10) {
            outcome.lost = lost;
            latency(&rs, outcome);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "churn: {} stored unicasts to {users} users in {:.1} s with {} reconnects: {} lost; latency p50 {:.1} ms, p99 {:.1} ms",
        outcome.sent,
        started.elapsed().as_secs_f64(),
        outcome.reconnects,
        outcome.lost,
        outcome.p50_ms,
        outcome.p99_ms
    );
    Ok(())
}
