//! Push bodies: our hand-written protobuf codec against prost's derived messages (the same
//! `.proto` messages) and postcard (the version-1 bodies). Every variant writes the frame
//! header, the body, and reads the frame back with `PushCodec` then its body, so only the
//! body codec differs.

use std::hint::black_box;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion};
use longlink_codec::push::{
    Ack, Deliver, DeliveryMode, HEADER_LEN, Op, Payload, PushCodec, PushMessage, VERSION,
};
use serde::{Deserialize, Serialize};
use tokio_util::codec::Decoder;

/// (label, bench id) of each row.
pub(crate) const ROWS: [(&str, &str); 2] = [("MESSAGE 1 KiB", "message"), ("ACK 8 ids", "ack")];

/// `Message` of push.proto, derived by prost.
#[derive(Clone, PartialEq, prost::Message)]
struct PbMessage {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    app: String,
    #[prost(int32, tag = "3")]
    mode: i32,
    #[prost(bytes = "bytes", tag = "4")]
    body: Bytes,
}

/// `Ack` of push.proto, derived by prost.
#[derive(Clone, PartialEq, prost::Message)]
struct PbAck {
    #[prost(uint64, repeated, tag = "1")]
    ids: Vec<u64>,
}

/// The version-1 body of MESSAGE, in postcard.
#[derive(Serialize, Deserialize)]
struct V1Message {
    id: u64,
    app: String,
    mode: u8,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct V1Ack {
    ids: Vec<u64>,
}

const ID: u64 = 29_093_071_931_392;

/// A push frame header for a body of `len` bytes: every variant pays the same framing.
fn header(buf: &mut BytesMut, op: Op, len: usize) {
    buf.reserve(HEADER_LEN + len);
    buf.put_u32((HEADER_LEN + len) as u32);
    buf.put_u16(HEADER_LEN as u16);
    buf.put_u16(VERSION);
    buf.put_u32(op.value());
    buf.put_u32(0);
}

/// A push frame with a postcard body, written in place (the header's length patched after).
fn postcard_frame<T: Serialize>(buf: &mut BytesMut, op: Op, body: &T) {
    let start = buf.len();
    header(buf, op, 0);
    postcard::to_extend(body, BytesMutExtend(buf)).unwrap();
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// `BytesMut` as postcard's output, as the version-1 codec wrote it.
struct BytesMutExtend<'a>(&'a mut BytesMut);

impl Extend<u8> for BytesMutExtend<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl<'a> Extend<&'a u8> for BytesMutExtend<'_> {
    fn extend<I: IntoIterator<Item = &'a u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

pub(crate) fn push_bodies(c: &mut Criterion) {
    let mut group = c.benchmark_group("push_body");
    let body = vec![7u8; 1024];
    let ids: Vec<u64> = (0..8).map(|i| ID + i).collect();

    let message = PushMessage::Message(Deliver {
        id: ID,
        app: "demo".into(),
        mode: DeliveryMode::AtLeastOnce,
        body: Payload::from(body.clone()),
    });
    group.bench_function(BenchmarkId::new("longlink", "message"), |b| {
        let mut codec = PushCodec::new();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            message.encode(0, &mut buf).unwrap();
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            black_box(PushMessage::from_frame(&frame).unwrap());
        });
    });
    let pb = PbMessage {
        id: ID,
        app: "demo".into(),
        mode: 0,
        body: Bytes::from(body.clone()),
    };
    group.bench_function(BenchmarkId::new("prost", "message"), |b| {
        let mut codec = PushCodec::new();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            header(&mut buf, Op::MESSAGE, prost::Message::encoded_len(&pb));
            prost::Message::encode(&pb, &mut buf).unwrap();
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            black_box(<PbMessage as prost::Message>::decode(frame.body).unwrap());
        });
    });
    let v1 = V1Message {
        id: ID,
        app: "demo".into(),
        mode: 0,
        body: body.clone(),
    };
    group.bench_function(BenchmarkId::new("postcard", "message"), |b| {
        let mut codec = PushCodec::new();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            postcard_frame(&mut buf, Op::MESSAGE, &v1);
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            black_box(postcard::from_bytes::<V1Message>(&frame.body).unwrap());
        });
    });

    let ack = PushMessage::Ack(Ack { ids: ids.clone() });
    group.bench_function(BenchmarkId::new("longlink", "ack"), |b| {
        let mut codec = PushCodec::new();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut out = Vec::with_capacity(64);
        b.iter(|| {
            ack.encode(0, &mut buf).unwrap();
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            Ack::read_ids(&frame.body, &mut out).unwrap();
            black_box(&out);
        });
    });
    let pb = PbAck { ids: ids.clone() };
    group.bench_function(BenchmarkId::new("prost", "ack"), |b| {
        let mut codec = PushCodec::new();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            header(&mut buf, Op::ACK, prost::Message::encoded_len(&pb));
            prost::Message::encode(&pb, &mut buf).unwrap();
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            black_box(<PbAck as prost::Message>::decode(frame.body).unwrap());
        });
    });
    let v1 = V1Ack { ids };
    group.bench_function(BenchmarkId::new("postcard", "ack"), |b| {
        let mut codec = PushCodec::new();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            postcard_frame(&mut buf, Op::ACK, &v1);
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            black_box(postcard::from_bytes::<V1Ack>(&frame.body).unwrap());
        });
    });
    group.finish();
}
