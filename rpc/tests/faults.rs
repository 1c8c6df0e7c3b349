//! Peers that vanish, restart, drain, send garbage or speak another version.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::{ECHO, SLEEP, TestServer, millis, raw};
use longlink_codec::rpc::{ErrorCode, Hello, Message, RpcCodec};
use longlink_rpc::{Client, RpcError, Server, Strategy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder};

#[tokio::test]
async fn peer_killed_mid_call_is_connection_lost_after_write() {
    for strategy in [
        Strategy::Multiplexed { conns: 1 },
        Strategy::Pooled { max_conns: 2 },
        Strategy::Short,
    ] {
        let server = TestServer::start().await;
        let client = Client::builder(server.addr.to_string())
            .strategy(strategy)
            .build();
        client.call(ECHO, "warm").await.unwrap();
        let call = {
            let client = client.clone();
            tokio::spawn(async move { client.call(SLEEP, millis(5_000)).await })
        };
        while server.seen.started.load(SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        server.kill().await;
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(err, RpcError::ConnectionLost { written: true }),
            "{strategy:?}: {err:?}"
        );
        assert!(err.may_have_run() && !err.is_retryable());
    }
}

#[tokio::test]
async fn client_reconnects_by_itself_when_the_server_comes_back() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    client.call(ECHO, "before").await.unwrap();
    let addr = server.kill().await;
    // Give the client a moment to see the connection close (a call racing the close is
    // ConnectionLost, which says it may have run).
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Down: calls fail fast with Unavailable (never an unbounded wait).
    let started = Instant::now();
    let err = client.call(ECHO, "down").await.unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Unavailable { .. } | RpcError::ConnectionLost { written: false }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let _server = TestServer::on(Server::builder(), &addr.to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.call(ECHO, "after").await {
            Ok(body) => {
                assert_eq!(body, "after");
                break;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                assert!(Instant::now() < deadline, "did not reconnect: {e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn unreachable_target_fails_with_unavailable_and_backs_off() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    // One redial policy for every strategy.
    for strategy in [
        Strategy::Multiplexed { conns: 1 },
        Strategy::Pooled { max_conns: 2 },
        Strategy::Short,
    ] {
        let client = Client::builder(addr.to_string()).strategy(strategy).build();
        let err = client.call(ECHO, "x").await.unwrap_err();
        assert!(
            matches!(&err, RpcError::Unavailable { reason } if reason.contains("connect")),
            "{strategy:?}: {err:?}"
        );
        // The next call within the backoff does not even try to connect.
        let err = client.call(ECHO, "x").await.unwrap_err();
        assert!(
            matches!(&err, RpcError::Unavailable { reason } if reason.contains("reconnecting in")),
            "{strategy:?}: {err:?}"
        );
        assert_eq!(
            err.to_string().matches("target unavailable").count(),
            1,
            "{strategy:?}: {err}"
        );
    }
}

#[tokio::test]
async fn goaway_drains_without_losing_an_admitted_call() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    let admitted = {
        let client = client.clone();
        tokio::spawn(async move { client.call(SLEEP, millis(300)).await })
    };
    while server.seen.started.load(SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    server.handle.begin_shutdown(Duration::from_secs(5));
    assert_eq!(
        admitted.await.unwrap().unwrap(),
        millis(300),
        "the admitted call finished"
    );
    tokio::time::timeout(Duration::from_secs(2), server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // After the drain nothing listens: a new call is refused as not run.
    let err = client.call(ECHO, "x").await.unwrap_err();
    assert!(!err.may_have_run(), "{err:?}");
}

#[tokio::test]
async fn a_connection_still_waiting_for_hello_closes_at_once_when_shutdown_begins() {
    let server = TestServer::start().await;
    // Connected, HELLO not sent yet: a shutdown that begins now must not wait for it (nor,
    // once HELLO comes, go unseen and keep `serve` from returning).
    let mut early = TcpStream::connect(server.addr).await.unwrap();
    while server.handle.stats().connections_open == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    server.handle.begin_shutdown(Duration::from_secs(5));
    tokio::time::timeout(Duration::from_secs(2), server.task)
        .await
        .expect("serve returns without waiting for the HELLO")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        early.read(&mut buf).await.unwrap_or(0),
        0,
        "closed, nothing sent"
    );
    assert_eq!(server.handle.stats().connections_open, 0);
}

/// Reads until EOF; returns the ERR frame seen, if any.
async fn error_then_close(
    stream: &mut TcpStream,
    codec: &mut RpcCodec,
    mut buf: BytesMut,
) -> Option<(ErrorCode, String)> {
    let mut error = None;
    loop {
        while let Ok(Some(message)) = codec.decode(&mut buf) {
            if let Message::Error(e) = message {
                error = Some((e.code, e.message));
            }
        }
        match tokio::time::timeout(Duration::from_secs(2), stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return error,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server did not close the connection"),
        }
    }
}

#[tokio::test]
async fn garbage_oversized_and_truncated_frames_close_only_that_connection() {
    let server = TestServer::with(Server::builder().max_frame_bytes(1024)).await;
    let client = Client::new(server.addr.to_string());
    client.call(ECHO, "before").await.unwrap();

    // Garbage: an unknown version byte.
    let (mut stream, mut codec, buf) = raw(server.addr).await;
    stream
        .write_all(&[0, 0, 0, 0, 9, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        .await
        .unwrap();
    let (code, _) = error_then_close(&mut stream, &mut codec, buf)
        .await
        .expect("an ERR frame");
    assert_eq!(code, ErrorCode::PROTOCOL_MISMATCH);

    // Oversized: a REQ announcing 2 KiB against a 1 KiB limit.
    let (mut stream, mut codec, buf) = raw(server.addr).await;
    let mut frame = BytesMut::new();
    frame.put_u32(2048);
    frame.put_slice(&[1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    stream.write_all(&frame).await.unwrap();
    let (code, message) = error_then_close(&mut stream, &mut codec, buf)
        .await
        .expect("an ERR frame");
    assert_eq!(code, ErrorCode::FRAME_TOO_LARGE);
    assert!(message.contains("2048"), "{message}");

    // Malformed: an unknown kind.
    let (mut stream, mut codec, buf) = raw(server.addr).await;
    stream
        .write_all(&[0, 0, 0, 0, 1, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        .await
        .unwrap();
    let (code, _) = error_then_close(&mut stream, &mut codec, buf)
        .await
        .expect("an ERR frame");
    assert_eq!(code, ErrorCode::MALFORMED);

    // Truncated: half a header, then the client hangs up.
    let (mut stream, _, _) = raw(server.addr).await;
    stream.write_all(&[0, 0, 0, 4, 1, 3]).await.unwrap();
    drop(stream);

    // Everyone else is still served.
    assert_eq!(client.call(ECHO, "after").await.unwrap(), "after");
    let stats = server.handle.stats();
    assert!(stats.protocol_errors >= 3, "{stats:?}");
}

#[tokio::test]
async fn server_of_another_version_is_a_protocol_mismatch() {
    // A fake server that answers HELLO with a version-2 frame.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let _ = socket.read(&mut buf).await;
        let _ = socket
            .write_all(&[
                0, 0, 0, 8, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ])
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let err = Client::new(addr.to_string())
        .call(ECHO, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::ProtocolMismatch { detail } if detail.contains('2')),
        "{err:?}"
    );

    // And a server speaking ours refuses a client of another version.
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(&[
            0, 0, 0, 8, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
        ])
        .await
        .unwrap();
    let (code, message) = error_then_close(&mut stream, &mut RpcCodec::new(), BytesMut::new())
        .await
        .expect("an ERR frame");
    assert_eq!(code, ErrorCode::PROTOCOL_MISMATCH);
    assert!(message.contains("speaks 1"), "{message}");
}

#[tokio::test]
async fn silent_peer_is_detected_by_the_heartbeat() {
    // Completes HELLO, then never answers anything (not even PING).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut codec = RpcCodec::new();
        let mut buf = BytesMut::new();
        while codec.decode(&mut buf).unwrap().is_none() {
            socket.read_buf(&mut buf).await.unwrap();
        }
        let mut out = BytesMut::new();
        codec
            .encode(
                Message::HelloAck(Hello {
                    max_frame_bytes: 1 << 20,
                    max_in_flight: 100,
                    features: Default::default(),
                }),
                &mut out,
            )
            .unwrap();
        socket.write_all(&out).await.unwrap();
        let mut sink = [0u8; 1024];
        while socket.read(&mut sink).await.unwrap_or(0) > 0 {}
    });
    let client = Client::builder(addr.to_string())
        .heartbeat(Duration::from_millis(100), Duration::from_millis(100))
        .build();
    let started = Instant::now();
    let err = client.call(ECHO, "never answered").await.unwrap_err();
    assert!(
        matches!(err, RpcError::ConnectionLost { written: true }),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

/// Built without `compression`, a server announces nothing and refuses a body flagged
/// COMPRESSED from a client that sends one anyway: BAD_REQUEST, not run, connection kept.
/// (With the feature, `tests/compression.rs` covers the negotiated cases.)
#[cfg(not(feature = "compression"))]
#[tokio::test]
async fn a_compressed_request_to_a_server_built_without_compression_is_refused() {
    use bytes::Bytes;
    use longlink_codec::rpc::{Features, Flags, Request, Status};

    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut codec = RpcCodec::new();
    let mut out = BytesMut::new();
    let hello = Hello {
        max_frame_bytes: 1 << 20,
        max_in_flight: 0,
        features: Features::ZSTD,
    };
    codec.encode(Message::Hello(hello), &mut out).unwrap();
    for (id, compressed) in [(1, true), (2, false)] {
        let req = Request {
            id,
            deadline: None,
            method: ECHO,
            metadata: Default::default(),
            compressed,
            body: Bytes::from_static(b"(\xb5/\xfd zstd or not"),
        };
        codec.encode(Message::Request(req), &mut out).unwrap();
    }
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match codec.decode(&mut buf).unwrap() {
            Some(message) => seen.push(message),
            None => assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed"),
        }
    }
    match &seen[0] {
        Message::HelloAck(ack) => assert_eq!(ack.features, Features::NONE),
        other => panic!("expected HELLO_ACK, got {other:?}"),
    }
    let answers: Vec<_> = seen[1..]
        .iter()
        .map(|m| match m {
            Message::Response(r) => (r.id, r.status, r.flags),
            other => panic!("expected RESP, got {other:?}"),
        })
        .collect();
    assert!(answers.contains(&(1, Status::BAD_REQUEST, Flags::NOT_PROCESSED)));
    assert!(answers.contains(&(2, Status::OK, Flags::NONE)));
    assert_eq!(
        server.seen.started.load(SeqCst),
        1,
        "only the plain one ran"
    );
}
