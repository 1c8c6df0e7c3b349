//! zstd bodies (feature `compression`): negotiated in HELLO, used only when both sides turn
//! it on, skipped when it does not pay, and bounded on the way in — a corrupt body or a
//! zip bomb is refused before the handler runs, and the server keeps serving.
#![cfg(feature = "compression")]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;

use bytes::{BufMut, Bytes, BytesMut};
use common::{ECHO, TestServer};
use longlink_codec::rpc::{Features, Flags, Hello, Message, Request, Response, RpcCodec, Status};
use longlink_rpc::{Client, Compression, RpcError, Server, Strategy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder};

const MIB: usize = 1 << 20;

/// JSON-like text, as a service's bodies are: compresses well, but not to nothing.
fn json_like(len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(r#"{{"id":{i},"uid":"user-{}","room":"room-{}","kind":"message","body":"hello, this is message {i}"}},"#, i % 977, i % 31)
                .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    Bytes::from(out)
}

fn random(len: usize) -> Bytes {
    Bytes::from((0..len).map(|_| fastrand::u8(..)).collect::<Vec<u8>>())
}

async fn server(compression: Compression) -> TestServer {
    TestServer::with(Server::builder().compression(compression)).await
}

fn client(addr: SocketAddr, strategy: Strategy, compression: Compression) -> Client {
    Client::builder(addr.to_string())
        .strategy(strategy)
        .compression(compression)
        .build()
}

const STRATEGIES: [Strategy; 3] = [
    Strategy::Short,
    Strategy::Pooled { max_conns: 2 },
    Strategy::Multiplexed { conns: 1 },
];

#[tokio::test]
async fn a_compressible_mebibyte_round_trips_compressed_with_every_strategy() {
    let server = server(Compression::zstd()).await;
    let body = json_like(MIB);
    for (n, strategy) in STRATEGIES.into_iter().enumerate() {
        let client = client(server.addr, strategy, Compression::zstd());
        assert_eq!(
            client.call(ECHO, body.clone()).await.unwrap(),
            body,
            "{strategy:?}"
        );
        let stats = client.stats().compression;
        assert_eq!((stats.sent, stats.received), (1, 1), "{strategy:?}");
        assert_eq!(stats.sent_body_bytes, MIB as u64);
        assert_eq!(stats.received_body_bytes, MIB as u64);
        // Far fewer bytes on the wire, both ways.
        assert!(
            stats.sent_wire_bytes < MIB as u64 / 10,
            "{strategy:?}: {stats:?}"
        );
        assert!(
            stats.received_wire_bytes < MIB as u64 / 10,
            "{strategy:?}: {stats:?}"
        );
        let served = server.handle.stats().compression;
        assert_eq!(served.received, n as u64 + 1);
        assert_eq!(served.sent, n as u64 + 1);
        assert_eq!(served.refused, 0);
    }
    assert_eq!(server.seen.finished.load(SeqCst), 3);
}

#[tokio::test]
async fn a_body_under_the_threshold_is_not_compressed() {
    let server = server(Compression::zstd()).await;
    let client = client(
        server.addr,
        Strategy::Multiplexed { conns: 1 },
        Compression::zstd(),
    );
    let body = json_like(Compression::DEFAULT_THRESHOLD - 1);
    assert_eq!(client.call(ECHO, body.clone()).await.unwrap(), body);
    assert_eq!(client.stats().compression, Default::default());
    assert_eq!(server.handle.stats().compression, Default::default());
    // At the threshold it is.
    let body = json_like(Compression::DEFAULT_THRESHOLD);
    assert_eq!(client.call(ECHO, body.clone()).await.unwrap(), body);
    assert_eq!(client.stats().compression.sent, 1);
}

#[tokio::test]
async fn an_incompressible_body_is_sent_as_is() {
    let server = server(Compression::zstd()).await;
    let client = client(
        server.addr,
        Strategy::Multiplexed { conns: 1 },
        Compression::zstd(),
    );
    let body = random(256 * 1024);
    assert_eq!(client.call(ECHO, body.clone()).await.unwrap(), body);
    let stats = client.stats().compression;
    assert_eq!((stats.sent, stats.sent_as_is, stats.received), (0, 1, 0));
    let served = server.handle.stats().compression;
    assert_eq!((served.received, served.sent, served.sent_as_is), (0, 0, 1));
}

#[tokio::test]
async fn a_client_without_compression_is_served_uncompressed_by_a_server_with_it() {
    let server = server(Compression::zstd()).await;
    let body = json_like(MIB);
    for strategy in STRATEGIES {
        let client = client(server.addr, strategy, Compression::Off);
        assert_eq!(client.call(ECHO, body.clone()).await.unwrap(), body);
        assert_eq!(client.stats().compression, Default::default());
    }
    // The server compressed nothing towards clients that did not offer it.
    assert_eq!(server.handle.stats().compression, Default::default());
}

#[tokio::test]
async fn a_client_with_compression_talks_uncompressed_to_a_server_without_it() {
    let server = server(Compression::Off).await;
    let body = json_like(MIB);
    for strategy in STRATEGIES {
        let client = client(server.addr, strategy, Compression::zstd());
        assert_eq!(client.call(ECHO, body.clone()).await.unwrap(), body);
        assert_eq!(client.stats().compression, Default::default());
    }
    assert_eq!(server.handle.stats().compression, Default::default());
}

/// A raw connection that sends this HELLO body; the server's HELLO_ACK.
async fn raw_hello(addr: SocketAddr, hello: &[u8]) -> (TcpStream, RpcCodec, BytesMut, Hello) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut frame = BytesMut::new();
    frame.put_u32(hello.len() as u32);
    frame.put_slice(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // v1, HELLO, no flags, id 0
    frame.put_slice(hello);
    stream.write_all(&frame).await.unwrap();
    let mut codec = RpcCodec::new();
    let mut buf = BytesMut::new();
    match next(&mut stream, &mut codec, &mut buf).await {
        Message::HelloAck(ack) => (stream, codec, buf, ack),
        other => panic!("expected HELLO_ACK, got {other:?}"),
    }
}

async fn next(stream: &mut TcpStream, codec: &mut RpcCodec, buf: &mut BytesMut) -> Message {
    loop {
        if let Some(message) = codec.decode(buf).unwrap() {
            return message;
        }
        assert!(stream.read_buf(buf).await.unwrap() > 0, "closed");
    }
}

fn hello_body(features: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_u32(MIB as u32);
    body.put_u32(0);
    body.put_u32(features);
    body
}

#[tokio::test]
async fn the_server_answers_the_intersection_of_features_and_an_old_hello_gets_none() {
    let on = server(Compression::zstd()).await;
    let off = server(Compression::Off).await;
    // zstd and a bit this server does not know: only zstd comes back.
    let (.., ack) = raw_hello(on.addr, &hello_body(1 | 1 << 7)).await;
    assert_eq!(ack.features, Features::ZSTD);
    let (.., ack) = raw_hello(on.addr, &hello_body(0)).await;
    assert_eq!(ack.features, Features::NONE);
    let (.., ack) = raw_hello(off.addr, &hello_body(1)).await;
    assert_eq!(ack.features, Features::NONE);

    // A client from before the field: an 8-byte HELLO, served uncompressed.
    let (mut stream, mut codec, mut buf, ack) = raw_hello(on.addr, &hello_body(1)[..8]).await;
    assert_eq!(ack.features, Features::NONE);
    let body = json_like(MIB);
    send(&mut stream, &mut codec, request(1, false, body.clone())).await;
    let resp = response(&mut stream, &mut codec, &mut buf).await;
    assert_eq!(
        (resp.status, resp.flags, resp.body),
        (Status::OK, Flags::NONE, body)
    );
}

fn request(id: u64, compressed: bool, body: Bytes) -> Message {
    Message::Request(Request {
        id,
        deadline: None,
        method: ECHO,
        metadata: Default::default(),
        compressed,
        body,
    })
}

async fn send(stream: &mut TcpStream, codec: &mut RpcCodec, message: Message) {
    let mut out = BytesMut::new();
    codec.encode(message, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
}

async fn response(stream: &mut TcpStream, codec: &mut RpcCodec, buf: &mut BytesMut) -> Response {
    match next(stream, codec, buf).await {
        Message::Response(r) => r,
        other => panic!("expected RESP, got {other:?}"),
    }
}

/// Sends a REQ flagged COMPRESSED with `payload` on a connection that negotiated zstd and
/// checks it is refused with BAD_REQUEST + NOT_PROCESSED, the handler not run, and that the
/// same connection and other clients are still served. The refusal's message.
async fn refused(payload: Vec<u8>) -> String {
    let server = server(Compression::zstd()).await;
    let (mut stream, mut codec, mut buf, ack) = raw_hello(server.addr, &hello_body(1)).await;
    assert_eq!(ack.features, Features::ZSTD);
    send(
        &mut stream,
        &mut codec,
        request(1, true, Bytes::from(payload)),
    )
    .await;
    let resp = response(&mut stream, &mut codec, &mut buf).await;
    assert_eq!(resp.id, 1);
    assert_eq!(resp.status, Status::BAD_REQUEST);
    assert_eq!(
        resp.flags,
        Flags::NOT_PROCESSED,
        "not run, and not worth retrying"
    );
    let message = String::from_utf8(resp.body.to_vec()).unwrap();
    assert_eq!(
        server.seen.started.load(SeqCst),
        0,
        "the handler did not run"
    );
    assert_eq!(server.handle.stats().compression.refused, 1);

    // The connection still serves: a good compressed request on it is answered.
    let body = json_like(64 * 1024);
    let good = zstd::bulk::compress(&body, 1).unwrap();
    send(&mut stream, &mut codec, request(2, true, Bytes::from(good))).await;
    let resp = response(&mut stream, &mut codec, &mut buf).await;
    assert_eq!((resp.id, resp.status), (2, Status::OK));
    assert!(
        resp.flags.contains(Flags::COMPRESSED),
        "answered compressed"
    );
    assert_eq!(zstd::bulk::decompress(&resp.body, MIB).unwrap(), body);
    // And so do other clients.
    let other = client(
        server.addr,
        Strategy::Multiplexed { conns: 1 },
        Compression::zstd(),
    );
    assert_eq!(other.call(ECHO, "still here").await.unwrap(), "still here");
    message
}

#[tokio::test]
async fn a_compressed_request_of_garbage_is_refused_and_the_handler_does_not_run() {
    let message = refused(b"this is not zstd at all".to_vec()).await;
    assert_eq!(message, "corrupt compressed body: not a zstd frame");
}

#[tokio::test]
async fn a_truncated_zstd_frame_is_refused() {
    let mut frame = zstd::bulk::compress(&json_like(100_000), 1).unwrap();
    frame.truncate(frame.len() / 2);
    let message = refused(frame).await;
    assert!(message.starts_with("corrupt compressed body"), "{message}");
}

#[tokio::test]
async fn a_zstd_bomb_declaring_more_than_the_message_limit_is_refused_before_inflating() {
    // 17 MiB of zeros compress to a few hundred bytes, over the 16 MiB message limit.
    let bomb = zstd::bulk::compress(&vec![0u8; 17 * MIB], 1).unwrap();
    assert!(bomb.len() < 4096, "{} bytes", bomb.len());
    let message = refused(bomb).await;
    assert_eq!(
        message,
        format!(
            "compressed body of {} bytes (decompressed) exceeds limit {}",
            17 * MIB,
            16 * MIB
        )
    );
}

#[tokio::test]
async fn a_zstd_frame_that_does_not_declare_its_size_is_refused_however_small_its_output() {
    // The streaming encoder writes no content size: its output could be anything, so it
    // is refused without decompressing, even a tiny one, and a huge one all the more.
    for len in [100, 20 * MIB] {
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut encoder, &vec![0u8; len]).unwrap();
        let frame = encoder.finish().unwrap();
        assert!(
            matches!(zstd::zstd_safe::get_frame_content_size(&frame), Ok(None)),
            "no declared size"
        );
        let message = refused(frame).await;
        assert_eq!(
            message,
            "compressed body whose zstd frame does not declare its size"
        );
    }
}

#[tokio::test]
async fn a_compressed_request_on_a_connection_that_did_not_negotiate_it_is_refused() {
    let server = server(Compression::zstd()).await;
    // The client offered nothing, so the server answered nothing: it must not compress.
    let (mut stream, mut codec, mut buf, ack) = raw_hello(server.addr, &hello_body(0)).await;
    assert_eq!(ack.features, Features::NONE);
    let frame = zstd::bulk::compress(&json_like(64 * 1024), 1).unwrap();
    send(
        &mut stream,
        &mut codec,
        request(1, true, Bytes::from(frame)),
    )
    .await;
    let resp = response(&mut stream, &mut codec, &mut buf).await;
    assert_eq!(
        (resp.status, resp.flags),
        (Status::BAD_REQUEST, Flags::NOT_PROCESSED)
    );
    assert_eq!(
        resp.body,
        "compressed body, but compression was not negotiated on this connection"
    );
    assert_eq!(server.seen.started.load(SeqCst), 0);
}

/// A fake server that greets with `features` and answers every REQ with a RESP flagged
/// COMPRESSED carrying `payload`.
async fn fake_server(features: Features, payload: Bytes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let payload = payload.clone();
            tokio::spawn(async move {
                let mut codec = RpcCodec::new();
                let mut buf = BytesMut::new();
                loop {
                    let answer = match next(&mut stream, &mut codec, &mut buf).await {
                        Message::Hello(_) => Message::HelloAck(Hello {
                            max_frame_bytes: MIB as u32,
                            max_in_flight: 0,
                            features,
                        }),
                        Message::Request(r) => Message::Response(Response {
                            id: r.id,
                            status: Status::OK,
                            flags: Flags::COMPRESSED,
                            body: payload.clone(),
                        }),
                        _ => continue,
                    };
                    send(&mut stream, &mut codec, answer).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_answer_that_cannot_be_decompressed_fails_the_call_saying_it_may_have_run() {
    let bomb = Bytes::from(zstd::bulk::compress(&vec![0u8; 17 * MIB], 1).unwrap());
    let cases = [
        (
            Bytes::from_static(b"garbage"),
            "corrupt compressed body: not a zstd frame".to_owned(),
        ),
        (
            bomb,
            format!(
                "compressed body of {} bytes (decompressed) exceeds limit {}",
                17 * MIB,
                16 * MIB
            ),
        ),
    ];
    for (payload, reason) in cases {
        let addr = fake_server(Features::ZSTD, payload).await;
        for strategy in STRATEGIES {
            let client = client(addr, strategy, Compression::zstd());
            let err = client.call(ECHO, "hi").await.unwrap_err();
            match &err {
                RpcError::BadResponse { reason: got } => assert_eq!(got, &reason),
                other => panic!("{strategy:?}: expected BadResponse, got {other:?}"),
            }
            assert!(err.may_have_run() && !err.is_retryable(), "{strategy:?}");
            assert_eq!(client.stats().compression.refused, 1);
        }
    }
}

#[tokio::test]
async fn a_compressed_answer_to_a_client_that_did_not_offer_compression_is_refused() {
    let good = Bytes::from(zstd::bulk::compress(&json_like(64 * 1024), 1).unwrap());
    let addr = fake_server(Features::ZSTD, good).await;
    let err = client(addr, Strategy::Multiplexed { conns: 1 }, Compression::Off)
        .call(ECHO, "hi")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::BadResponse { reason } if reason.contains("not negotiated")),
        "{err:?}"
    );
    assert!(err.may_have_run());
}

#[tokio::test]
async fn a_handler_cannot_mark_its_answer_compressed() {
    let server = Server::builder()
        .compression(Compression::zstd())
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(
        server.serve(tower::service_fn(|req: longlink_rpc::Request| async move {
            let mut resp = longlink_rpc::Response::ok(req.body);
            resp.flags = Flags::COMPRESSED; // a handler that tries: the server clears it
            Ok::<_, std::convert::Infallible>(resp.with_flags(Flags::COMPRESSED))
        })),
    );
    let client = client(
        addr,
        Strategy::Multiplexed { conns: 1 },
        Compression::zstd(),
    );
    assert_eq!(client.call(ECHO, "plain").await.unwrap(), "plain");
    let body = json_like(MIB);
    assert_eq!(client.call(ECHO, body.clone()).await.unwrap(), body);
    assert_eq!(client.stats().compression.received, 1);
}
