//! Proves that decode → handle → encode of 1 KiB frames through the buffer pool makes no
//! heap allocation per frame once warm. A counting global allocator counts the allocations
//! made on the measuring thread only, so the test harness's own threads do not disturb it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use longlink_codec::BufPool;
use longlink_codec::push::{
    Ack, Deliver, DeliveryMode, Op, Payload, PushCodec, PushFrame, PushMessage,
};
use longlink_codec::rpc::{Flags, Message, Request, Response, RpcCodec, Status};
use tokio_util::codec::{Decoder, Encoder};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the allocator may run while this thread's locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns how many allocations it made on this thread.
fn count_allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

const FRAMES_PER_READ: usize = 32;

/// One "read" of 32 request frames: decode each from a pooled read buffer, answer it (echo),
/// encode the answers into a pooled write buffer, "write" it.
fn rpc_round(pool: &BufPool, codec: &mut RpcCodec, wire: &[u8]) -> usize {
    let mut read_buf = pool.get(64 * 1024);
    read_buf.extend_from_slice(wire); // stands in for a socket read
    let mut write_buf = pool.get(64 * 1024);
    let mut answered = 0;
    while let Some(message) = codec.decode(&mut read_buf).unwrap() {
        let Message::Request(req) = message else {
            panic!("expected a request")
        };
        let resp = Message::Response(Response {
            id: req.id,
            status: Status::OK,
            flags: Flags::NONE,
            body: req.body,
        });
        codec.encode(resp, &mut write_buf).unwrap();
        answered += 1;
    }
    black_box(&write_buf[..]); // stands in for a socket write
    answered
}

#[test]
fn rpc_decode_handle_encode_allocates_nothing_per_frame_once_warm() {
    let pool = BufPool::new();
    let mut codec = RpcCodec::new();
    let mut wire = BytesMut::new();
    for id in 0..FRAMES_PER_READ as u64 {
        let body = Bytes::from(vec![id as u8; 1024]);
        codec
            .encode(
                Message::Request(Request {
                    id,
                    deadline: None,
                    method: 1,
                    metadata: Default::default(),
                    compressed: false,
                    body,
                }),
                &mut wire,
            )
            .unwrap();
    }
    for _ in 0..10 {
        assert_eq!(rpc_round(&pool, &mut codec, &wire), FRAMES_PER_READ);
    }
    let rounds = 1000;
    let allocations = count_allocations(|| {
        for _ in 0..rounds {
            assert_eq!(rpc_round(&pool, &mut codec, &wire), FRAMES_PER_READ);
        }
    });
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations for {} frames",
        rounds * FRAMES_PER_READ
    );
    let stats = pool.stats();
    assert!(
        stats.hits >= 2 * rounds as u64,
        "buffers came from the pool: {stats}"
    );
}

#[test]
fn push_decode_encode_allocates_nothing_per_frame_once_warm() {
    let pool = BufPool::new();
    let mut codec = PushCodec::new();
    let mut wire = BytesMut::new();
    for seq in 0..FRAMES_PER_READ as u32 {
        codec
            .encode(
                PushFrame::new(Op::MESSAGE, seq, Bytes::from(vec![1u8; 1024])),
                &mut wire,
            )
            .unwrap();
    }
    let round = |codec: &mut PushCodec| {
        let mut read_buf = pool.get(64 * 1024);
        read_buf.extend_from_slice(&wire);
        let mut write_buf = pool.get(64 * 1024);
        let mut n = 0;
        while let Some(frame) = codec.decode(&mut read_buf).unwrap() {
            codec.encode(&frame, &mut write_buf).unwrap();
            n += 1;
        }
        black_box(&write_buf[..]);
        n
    };
    for _ in 0..10 {
        assert_eq!(round(&mut codec), FRAMES_PER_READ);
    }
    let allocations = count_allocations(|| {
        for _ in 0..1000 {
            assert_eq!(round(&mut codec), FRAMES_PER_READ);
        }
    });
    assert_eq!(allocations, 0);
}

/// What a room does per frame on its hot paths, with protobuf bodies: read a client's
/// HEARTBEAT and answer HEARTBEAT_REPLY, read an ACK's ids (into one reused vector), and
/// write a MESSAGE (encoded into the pooled write buffer, and a shared one copied in).
#[test]
fn room_heartbeat_ack_and_message_allocate_nothing_per_frame_once_warm() {
    let pool = BufPool::new();
    let mut codec = PushCodec::new();
    let mut wire = BytesMut::new();
    for seq in 0..FRAMES_PER_READ as u32 {
        let message = if seq % 2 == 0 {
            PushMessage::Heartbeat
        } else {
            PushMessage::Ack(Ack {
                ids: (0..8).map(|i| (1 << 45) + u64::from(seq) * 8 + i).collect(),
            })
        };
        message.encode(seq, &mut wire).unwrap();
    }
    let deliver = PushMessage::Message(Deliver {
        id: (1 << 53) - 1,
        app: "demo".into(),
        mode: DeliveryMode::AtLeastOnce,
        body: Payload::from(vec![7u8; 512]),
    });
    let shared = deliver.to_frame(0).unwrap();
    let mut ids = Vec::with_capacity(64);
    let mut round = |codec: &mut PushCodec| {
        let mut read_buf = pool.get(64 * 1024);
        read_buf.extend_from_slice(&wire);
        let mut write_buf = pool.get(64 * 1024);
        let (mut heartbeats, mut acked) = (0, 0);
        while let Some(frame) = codec.decode(&mut read_buf).unwrap() {
            match frame.op {
                Op::HEARTBEAT => {
                    assert_eq!(
                        PushMessage::from_frame(&frame).unwrap(),
                        PushMessage::Heartbeat
                    );
                    PushMessage::HeartbeatReply
                        .encode(frame.seq, &mut write_buf)
                        .unwrap();
                    heartbeats += 1;
                }
                Op::ACK => {
                    Ack::read_ids(&frame.body, &mut ids).unwrap();
                    acked += ids.len();
                    deliver.encode(0, &mut write_buf).unwrap();
                    codec.encode(&shared, &mut write_buf).unwrap();
                }
                op => panic!("{op}"),
            }
        }
        black_box(&write_buf[..]);
        (heartbeats, acked)
    };
    let want = (FRAMES_PER_READ / 2, FRAMES_PER_READ / 2 * 8);
    for _ in 0..10 {
        assert_eq!(round(&mut codec), want);
    }
    let allocations = count_allocations(|| {
        for _ in 0..1000 {
            assert_eq!(round(&mut codec), want);
        }
    });
    assert_eq!(allocations, 0);
}

#[test]
fn counting_allocator_sees_a_fresh_buffer() {
    // The measurement can fail: a plain allocation per frame is counted.
    let allocations = count_allocations(|| {
        for _ in 0..10 {
            black_box(BytesMut::with_capacity(1024));
        }
    });
    assert_eq!(allocations, 10);
}
