//! Codec benchmarks: frame encode+decode throughput, and BufPool against fresh allocation.
//!
//! `cargo bench -p longlink-benches --bench codec`
//!
//! - `rpc_frame/{longlink,length_delimited}/{64,1024,16384}`: encode one REQ of that payload
//!   size into a reused buffer and decode it back. The baseline is tokio-util's
//!   `LengthDelimitedCodec` (a 4-byte length prefix and nothing else) doing the same.
//! - `push_frame/longlink/{64,1024,16384}`: the same for push frames.
//! - `push_body/{longlink,prost,postcard}/{message,ack}`: encode one MESSAGE (1 KiB body)
//!   or ACK (8 ids) into a reused buffer and read it back into the typed message (the ACK's
//!   ids into a reused vector for `longlink`, as the room does). The baselines are prost's
//!   `#[derive(Message)]` structs of the same `.proto` messages, and postcard (version 1).
//! - `buf/{pool,global_pool,fresh}/{1024,4096,65536}`: get a buffer, write 64 bytes, drop it;
//!   `fresh` is `BytesMut::with_capacity` each time.
//! - `buf_2threads/{pool,fresh}/{..}`: the same on two threads at once (time per pair of ops).

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use longlink_benches::report::{Comparison, print_ratios};
use longlink_codec::BufPool;
use longlink_codec::push::{Op, PushCodec, PushFrame};
use longlink_codec::rpc::{Message, Request, RpcCodec};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

#[path = "codec/push_body.rs"]
mod push_body;

const FRAME_SIZES: [usize; 3] = [64, 1024, 16 * 1024];
const BUF_SIZES: [usize; 3] = [1024, 4096, 64 * 1024];

fn rpc_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("rpc_frame");
    for size in FRAME_SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let body = Bytes::from(vec![7u8; size]);
        group.bench_with_input(BenchmarkId::new("longlink", size), &body, |b, body| {
            let mut codec = RpcCodec::new();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut id = 0;
            b.iter(|| {
                id += 1;
                let req = Message::Request(Request {
                    id,
                    deadline: None,
                    method: 1,
                    metadata: Default::default(),
                    compressed: false,
                    body: body.clone(),
                });
                codec.encode(req, &mut buf).unwrap();
                black_box(codec.decode(&mut buf).unwrap().unwrap());
            });
        });
        group.bench_with_input(
            BenchmarkId::new("length_delimited", size),
            &body,
            |b, body| {
                let mut codec = LengthDelimitedCodec::builder()
                    .max_frame_length(1 << 20)
                    .new_codec();
                let mut buf = BytesMut::with_capacity(64 * 1024);
                b.iter(|| {
                    codec.encode(body.clone(), &mut buf).unwrap();
                    black_box(codec.decode(&mut buf).unwrap().unwrap());
                });
            },
        );
    }
    group.finish();
}

fn push_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("push_frame");
    for size in FRAME_SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let frame = PushFrame::new(Op::MESSAGE, 1, Bytes::from(vec![7u8; size]));
        group.bench_with_input(BenchmarkId::new("longlink", size), &frame, |b, frame| {
            let mut codec = PushCodec::new();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            b.iter(|| {
                codec.encode(frame, &mut buf).unwrap();
                black_box(codec.decode(&mut buf).unwrap().unwrap());
            });
        });
    }
    group.finish();
}

fn buffers(c: &mut Criterion) {
    let mut group = c.benchmark_group("buf");
    for size in BUF_SIZES {
        let pool = BufPool::new();
        group.bench_with_input(BenchmarkId::new("pool", size), &size, |b, &size| {
            b.iter(|| {
                let mut buf = pool.get(size);
                buf.put_slice(&[1u8; 64]);
                black_box(&buf);
            });
        });
        group.bench_with_input(BenchmarkId::new("global_pool", size), &size, |b, &size| {
            b.iter(|| {
                let mut buf = BufPool::global().get(size);
                buf.put_slice(&[1u8; 64]);
                black_box(&buf);
            });
        });
        group.bench_with_input(BenchmarkId::new("fresh", size), &size, |b, &size| {
            b.iter(|| {
                let mut buf = BytesMut::with_capacity(size);
                buf.put_slice(&[1u8; 64]);
                black_box(&buf);
            });
        });
    }
    group.finish();
}

/// Runs `op` `iters` times on each of two threads at once; returns the wall time.
fn on_two_threads(iters: u64, op: impl Fn() + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            barrier.wait();
            for _ in 0..iters {
                op();
            }
        });
        barrier.wait();
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        worker.join().unwrap();
        start.elapsed()
    })
}

fn buffers_two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("buf_2threads");
    for size in BUF_SIZES {
        let pool = BufPool::global();
        group.bench_with_input(BenchmarkId::new("pool", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                on_two_threads(iters, || {
                    let mut buf = pool.get(size);
                    buf.put_slice(&[1u8; 64]);
                    black_box(&buf);
                })
            });
        });
        group.bench_with_input(BenchmarkId::new("fresh", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                on_two_threads(iters, || {
                    let mut buf = BytesMut::with_capacity(size);
                    buf.put_slice(&[1u8; 64]);
                    black_box(&buf);
                })
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    rpc_frames,
    push_frames,
    push_body::push_bodies,
    buffers,
    buffers_two_threads
);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();

    let mut rows = Vec::new();
    let ids: Vec<(String, String, String)> = FRAME_SIZES
        .iter()
        .map(|s| {
            (
                format!("rpc frame {s} B vs LengthDelimitedCodec"),
                format!("rpc_frame/longlink/{s}"),
                format!("rpc_frame/length_delimited/{s}"),
            )
        })
        .chain(push_body::ROWS.iter().flat_map(|&(what, id)| {
            ["prost", "postcard"].map(|baseline| {
                (
                    format!("push {what} body vs {baseline}"),
                    format!("push_body/longlink/{id}"),
                    format!("push_body/{baseline}/{id}"),
                )
            })
        }))
        .chain(BUF_SIZES.iter().flat_map(|s| {
            [
                (
                    format!("pool get+put {s} B vs fresh"),
                    format!("buf/pool/{s}"),
                    format!("buf/fresh/{s}"),
                ),
                (
                    format!("global pool get+put {s} B vs fresh"),
                    format!("buf/global_pool/{s}"),
                    format!("buf/fresh/{s}"),
                ),
                (
                    format!("2 threads: pool {s} B vs fresh"),
                    format!("buf_2threads/pool/{s}"),
                    format!("buf_2threads/fresh/{s}"),
                ),
            ]
        }))
        .collect();
    for (label, subject, baseline) in &ids {
        rows.push(Comparison {
            label,
            subject,
            baseline,
        });
    }
    print_ratios("codec: times faster than the baseline (same run)", &rows);
    for size in FRAME_SIZES {
        for (name, id) in [
            ("rpc", format!("rpc_frame/longlink/{size}")),
            ("push", format!("push_frame/longlink/{size}")),
        ] {
            if let Some(nanos) = longlink_benches::report::nanos(&id) {
                let gbps = size as f64 / nanos;
                println!("{name} encode+decode {size:>5} B payload: {gbps:.2} GB/s");
            }
        }
    }
}
