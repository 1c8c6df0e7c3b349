//! The echo clients and the measuring loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use longlink_rpc::{Client, RpcError, Strategy};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::servers::{ECHO, EchoServiceClient, RawCodec, TONIC_PATH};
use super::typed::bench_typed;
use super::{BodyKind, ClientImpl, Flavor, RunResult, TlsFiles};

/// One client of whichever implementation; cheap to clone (all share connections).
#[derive(Clone)]
#[allow(missing_debug_implementations)] // tarpc's generated client has no Debug
pub enum Caller {
    /// longlink (any strategy).
    Longlink(Client),
    /// longlink typed (`service!`, a `serde_bytes` body), any strategy.
    Typed(bench_typed::Client),
    /// tarpc, a `Vec<u8>` body.
    Tarpc(EchoServiceClient),
    /// tarpc, a `serde_bytes` body.
    TarpcTyped(EchoServiceClient),
    /// tonic.
    Tonic(tonic::client::Grpc<tonic::transport::Channel>),
}

/// Client-side limits for longlink.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_in_flight`.
    pub max_in_flight: usize,
    /// `max_queued`.
    pub max_queued: usize,
}

impl Caller {
    /// Connects (tarpc, tonic) or prepares (longlink: connects on first call); `tls`: the
    /// files of the TLS clients.
    pub async fn new(
        which: ClientImpl,
        addr: &str,
        concurrency: usize,
        limits: Limits,
        tls: Option<&TlsFiles>,
    ) -> Result<Caller, String> {
        let tls = match (which.is_tls(), tls) {
            (true, Some(files)) => Some(files.client()?),
            (true, None) => return Err("TLS needs --tls-data-dir".into()),
            (false, _) => None,
        };
        let longlink = |strategy| {
            let mut builder = Client::builder(addr)
                .strategy(strategy)
                .max_in_flight(limits.max_in_flight)
                .max_queued(limits.max_queued)
                .max_frame_bytes(4 << 20)
                .connect_timeout(Duration::from_secs(10));
            if which == ClientImpl::LonglinkMuxZstd {
                builder = builder.compression(longlink_rpc::Compression::zstd());
            }
            if let Some(tls) = tls.clone() {
                builder = builder.tls(tls);
            }
            builder.build()
        };
        Ok(match which {
            ClientImpl::LonglinkMux | ClientImpl::LonglinkMuxTls | ClientImpl::LonglinkMuxZstd => {
                Caller::Longlink(longlink(Strategy::Multiplexed { conns: 1 }))
            }
            ClientImpl::LonglinkMux4 => {
                Caller::Longlink(longlink(Strategy::Multiplexed { conns: 4 }))
            }
            ClientImpl::LonglinkPooled | ClientImpl::LonglinkPooledTls => {
                Caller::Longlink(longlink(Strategy::Pooled {
                    max_conns: concurrency,
                }))
            }
            ClientImpl::LonglinkShort | ClientImpl::LonglinkShortTls => {
                Caller::Longlink(longlink(Strategy::Short))
            }
            ClientImpl::LonglinkMuxTyped => {
                Caller::Typed(bench_typed::Client::new(longlink(Strategy::Multiplexed {
                    conns: 1,
                })))
            }
            ClientImpl::LonglinkPooledTyped => {
                Caller::Typed(bench_typed::Client::new(longlink(Strategy::Pooled {
                    max_conns: concurrency,
                })))
            }
            ClientImpl::Tarpc | ClientImpl::TarpcTyped => {
                let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                let framed = Framed::new(
                    stream,
                    LengthDelimitedCodec::builder()
                        .max_frame_length(8 << 20)
                        .new_codec(),
                );
                let transport = tarpc::serde_transport::new(
                    framed,
                    tarpc::tokio_serde::formats::Bincode::default(),
                );
                let mut config = tarpc::client::Config::default();
                config.max_in_flight_requests = concurrency.max(1000);
                config.pending_request_buffer = concurrency.max(100);
                let client = EchoServiceClient::new(config, transport).spawn();
                if which == ClientImpl::TarpcTyped {
                    Caller::TarpcTyped(client)
                } else {
                    Caller::Tarpc(client)
                }
            }
            ClientImpl::Tonic => {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| e.to_string())?
                    .tcp_nodelay(true)
                    .buffer_size(concurrency.max(1024))
                    .connect()
                    .await
                    .map_err(|e| e.to_string())?;
                Caller::Tonic(
                    tonic::client::Grpc::new(channel)
                        .max_decoding_message_size(8 << 20)
                        .max_encoding_message_size(8 << 20),
                )
            }
        })
    }

    /// One echo; the error kind on failure. The typed callers copy `body` into the owned
    /// message a user would build (`to_vec`), as tarpc's callers always have.
    pub async fn echo(&mut self, body: Bytes) -> Result<(), &'static str> {
        match self {
            Caller::Longlink(client) => client.call(ECHO, body).await.map(drop).map_err(kind),
            Caller::Typed(client) => client
                .echo(serde_bytes::ByteBuf::from(body.to_vec()))
                .await
                .map(drop)
                .map_err(kind),
            Caller::Tarpc(client) => client
                .echo(tarpc_context(), body.to_vec())
                .await
                .map(drop)
                .map_err(|_| "tarpc"),
            Caller::TarpcTyped(client) => client
                .echo_bytes(tarpc_context(), serde_bytes::ByteBuf::from(body.to_vec()))
                .await
                .map(drop)
                .map_err(|_| "tarpc"),
            Caller::Tonic(grpc) => {
                grpc.ready().await.map_err(|_| "tonic-ready")?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(TONIC_PATH);
                grpc.unary(tonic::Request::new(body), path, RawCodec)
                    .await
                    .map(drop)
                    .map_err(|_| "tonic")
            }
        }
    }
}

/// A call context with a deadline far enough not to fire under load (tarpc's default is
/// 10 s).
fn tarpc_context() -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + Duration::from_secs(30);
    ctx
}

fn kind(e: RpcError) -> &'static str {
    match e {
        RpcError::Overloaded { .. } => "overloaded",
        RpcError::Rejected { .. } => "rejected",
        RpcError::DeadlineExceeded { .. } => "deadline",
        RpcError::Unavailable { .. } => "unavailable",
        RpcError::ConnectionLost { .. } => "connection_lost",
        RpcError::Draining => "draining",
        RpcError::Tls { .. } => "tls",
        _ => "other",
    }
}

/// How late tokio's timer may wake a sleeper on its own (its resolution is 1 ms).
const TIMER_SLACK: Duration = Duration::from_micros(1_500);

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Concurrent callers.
    pub concurrency: usize,
    /// Measured time (after a warm-up of a fifth of it, at least 300 ms).
    pub duration: Duration,
    /// Normal body size.
    pub body_bytes: usize,
    /// Calls per thousand flagged slow (first byte 1).
    pub slow_permille: u32,
    /// Calls per thousand with a large body.
    pub big_permille: u32,
    /// The large body size.
    pub big_bytes: usize,
    /// Open loop: calls per second offered in all, each caller on a fixed schedule, and
    /// each latency measured from when the call was due (so a late start counts, with no
    /// coordinated omission). `None`: closed loop, each caller calls again on its answer.
    pub rate: Option<f64>,
    /// What the normal bodies contain.
    pub body_kind: BodyKind,
}

/// Runs `load` against `caller`; `progress` (if any) shows live throughput.
pub async fn run(
    caller: Caller,
    which: ClientImpl,
    flavor: Flavor,
    load: Load,
    progress: bool,
) -> RunResult {
    let warmup = (load.duration / 5).max(Duration::from_millis(300));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + load.duration;
    let done = Arc::new(AtomicBool::new(false));
    let ok_total = Arc::new(AtomicU64::new(0));
    let normal = Bytes::from(load.body_kind.body(load.body_bytes));
    let slow = {
        let mut b = vec![0u8; load.body_bytes.max(1)];
        b[0] = 1;
        Bytes::from(b)
    };
    let big = Bytes::from(vec![0u8; load.big_bytes.max(1)]);
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new((warmup + load.duration).as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} [{bar:30}] {msg}")
                .expect("a valid template"),
        );
        bar
    });
    let ticker = bar.clone().map(|bar| {
        let ok_total = Arc::clone(&ok_total);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            while !done.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let (now, ok) = (Instant::now(), ok_total.load(Relaxed));
                let qps = (ok - last.1) as f64 / (now - last.0).as_secs_f64();
                bar.set_position((now - start).as_millis() as u64);
                bar.set_message(format!("{qps:>10.0} calls/s"));
                last = (now, ok);
            }
        })
    });
    let tasks: Vec<_> = (0..load.concurrency)
        .map(|task| {
            let mut caller = caller.clone();
            let (normal, slow, big) = (normal.clone(), slow.clone(), big.clone());
            let ok_total = Arc::clone(&ok_total);
            // Open loop: this caller's calls are due every `interval`, its first one a
            // fraction of it after the start so the callers spread out.
            let interval = load
                .rate
                .map(|rate| Duration::from_secs_f64(load.concurrency as f64 / rate.max(1.0)));
            let mut due = start
                + interval.map_or(Duration::ZERO, |i| {
                    i.mul_f64(task as f64 / load.concurrency as f64)
                });
            tokio::spawn(async move {
                let mut ok_hist =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let mut err_hist =
                    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                let mut ok = 0u64;
                let mut n: u64 = task as u64 * 7919;
                loop {
                    let now = match interval {
                        Some(interval) => {
                            tokio::time::sleep_until(due.into()).await;
                            let (at, woke) = (due, Instant::now());
                            due += interval;
                            // tokio's timer wakes up to a millisecond late: within that the
                            // call starts on time, and counts from when it went out; later,
                            // this caller was held up by its previous call, and the call
                            // counts from when it was due (no coordinated omission).
                            if woke.duration_since(at) > TIMER_SLACK {
                                at
                            } else {
                                woke
                            }
                        }
                        None => Instant::now(),
                    };
                    if now >= end {
                        break;
                    }
                    n += 1;
                    let slot = (n % 1000) as u32;
                    let (body, special) = if slot < load.slow_permille {
                        (slow.clone(), true)
                    } else if slot < load.slow_permille + load.big_permille {
                        (big.clone(), true)
                    } else {
                        (normal.clone(), false)
                    };
                    let result = caller.echo(body).await;
                    let took = now.elapsed().as_micros().max(1) as u64;
                    let measured = now >= measure_from;
                    match result {
                        Ok(()) => {
                            ok_total.fetch_add(1, Relaxed);
                            if measured {
                                ok += 1;
                                if !special {
                                    let _ = ok_hist.record(took);
                                }
                            }
                        }
                        Err(kind) => {
                            if measured {
                                *errors.entry(kind.to_owned()).or_default() += 1;
                                let _ = err_hist.record(took);
                            }
                            // A refused caller comes back a millisecond later, as a
                            // client retrying after an overload would: the offered load
                            // stays a multiple of capacity instead of a busy loop.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
                (ok, ok_hist, err_hist, errors)
            })
        })
        .collect();
    let mut ok = 0;
    let mut ok_hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut err_hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (o, oh, eh, e) = t.await.expect("a load task");
        ok += o;
        ok_hist.add(oh).expect("same bounds");
        err_hist.add(eh).expect("same bounds");
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    done.store(true, Relaxed);
    if let Some(t) = ticker {
        let _ = t.await;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let seconds = load.duration.as_secs_f64();
    let calls_total = ok_total.load(Relaxed);
    let wire_bytes_per_call = match &caller {
        Caller::Longlink(client) if load.slow_permille + load.big_permille == 0 => {
            Some(wire_bytes_per_call(client, calls_total, load.body_bytes))
        }
        _ => None,
    };
    RunResult {
        client: which,
        flavor,
        concurrency: load.concurrency,
        seconds,
        ok,
        calls_total,
        qps: ok as f64 / seconds,
        p50_us: ok_hist.value_at_quantile(0.50),
        p99_us: ok_hist.value_at_quantile(0.99),
        p999_us: ok_hist.value_at_quantile(0.999),
        errors,
        error_p99_us: err_hist.value_at_quantile(0.99),
        error_max_us: err_hist.max(),
        wire_bytes_per_call,
    }
}

/// Payload bytes on the wire per call, both ways, from the client's counters over its
/// whole life: what was compressed counts as sent, every other body (each `body_bytes`,
/// echoed back the same) at its size.
fn wire_bytes_per_call(client: &Client, calls: u64, body_bytes: usize) -> f64 {
    let z = client.stats().compression;
    let body = body_bytes as u64;
    let sent = z.sent_wire_bytes + calls.saturating_sub(z.sent) * body;
    let received = z.received_wire_bytes + calls.saturating_sub(z.received) * body;
    (sent + received) as f64 / calls.max(1) as f64
}
