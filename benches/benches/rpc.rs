//! RPC strategies side by side, in one process (quick; the load tool `longlink-bench rpc`
//! runs server and client in separate pinned processes and adds tarpc and tonic).
//!
//! `cargo bench -p longlink-benches --bench rpc`
//!
//! `echo/{mux,mux4,pooled,short}/c{1,100}`: 1 KiB echo, `c` concurrent callers, a 2-worker
//! runtime shared by server and client. Time per call over all callers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use longlink_benches::report::{Comparison, print_ratios};
use longlink_rpc::{Client, Request, Response, Server, Strategy};
use tokio::runtime::Runtime;

const ECHO: u32 = 1;

#[derive(Clone)]
struct Echo;

impl tower_service::Service<Request> for Echo {
    type Response = Response;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response, Infallible>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request) -> Self::Future {
        std::future::ready(Ok(Response::ok(req.body)))
    }
}

fn run_split(rt: &Runtime, client: &Client, iters: u64, tasks: u64, body: &Bytes) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let client = client.clone();
                let body = body.clone();
                let n = iters / tasks + u64::from(t < iters % tasks);
                tokio::spawn(async move {
                    for _ in 0..n {
                        client.call(ECHO, body.clone()).await.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    })
}

fn echo(c: &mut Criterion) {
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let server = rt
        .block_on(
            Server::builder()
                .max_concurrent(20_000)
                .max_concurrent_per_conn(20_000)
                .bind("127.0.0.1:0"),
        )
        .unwrap();
    let addr = server.local_addr().to_string();
    rt.spawn(server.serve(Echo));
    let body = Bytes::from(vec![7u8; 1024]);
    let mut group = c.benchmark_group("echo");
    group.throughput(Throughput::Elements(1));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for tasks in [1u64, 100] {
        for (name, strategy) in [
            ("mux", Strategy::Multiplexed { conns: 1 }),
            ("mux4", Strategy::Multiplexed { conns: 4 }),
            (
                "pooled",
                Strategy::Pooled {
                    max_conns: tasks as usize,
                },
            ),
            ("short", Strategy::Short),
        ] {
            let client = Client::builder(addr.clone())
                .strategy(strategy)
                .max_in_flight(20_000)
                .build();
            rt.block_on(client.call(ECHO, body.clone())).unwrap();
            group.bench_function(BenchmarkId::new(name, format!("c{tasks}")), |b| {
                b.iter_custom(|iters| run_split(&rt, &client, iters, tasks, &body))
            });
        }
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    echo(&mut criterion);
    criterion.final_summary();
    let row = |label, subject, baseline| Comparison {
        label,
        subject,
        baseline,
    };
    print_ratios(
        "rpc (one process): times faster than the baseline (same run)",
        &[
            row("c1: mux vs pooled", "echo/mux/c1", "echo/pooled/c1"),
            row("c1: mux vs short", "echo/mux/c1", "echo/short/c1"),
            row("c100: mux vs pooled", "echo/mux/c100", "echo/pooled/c100"),
            row("c100: mux vs short", "echo/mux/c100", "echo/short/c100"),
            row(
                "c100: mux (1 conn) vs mux4 (4 conns)",
                "echo/mux/c100",
                "echo/mux4/c100",
            ),
        ],
    );
}
