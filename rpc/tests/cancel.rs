//! Dropped calls send CANCEL and leak nothing; deadlines on both sides.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{ECHO, SLEEP, TestServer, millis, raw};
use longlink_codec::rpc::{Flags, Message, Request};
use longlink_rpc::{Client, DeadlinePhase, RpcError, Server, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

#[tokio::test]
async fn dropped_call_cancels_its_handler_on_the_server() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), client.call(SLEEP, millis(5_000)))
            .await
            .is_err()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while server.seen.abandoned.load(SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.seen.finished.load(SeqCst), 0);
    assert_eq!(server.handle.stats().cancelled, 1);
    assert_eq!(client.stats().pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_dropped_calls_leak_no_permit_or_map_entry() {
    let server = TestServer::with(Server::builder().max_concurrent_per_conn(10_000)).await;
    let client = Client::builder(server.addr.to_string())
        .max_in_flight(256)
        .max_queued(10_000)
        .build();
    let tasks: Vec<_> = (0..4_000u64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let patience = Duration::from_micros(i * 37 % 3_000);
                let _ = tokio::time::timeout(patience, client.call(SLEEP, millis(i % 4))).await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = client.stats();
    assert_eq!(
        (
            stats.in_flight,
            stats.in_flight_bytes,
            stats.queued,
            stats.pending
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    // The server's view converges too: nothing left running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while server.handle.stats().in_flight != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            server.handle.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(client.call(ECHO, "still fine").await.unwrap(), "still fine");
}

#[tokio::test]
async fn deadline_passes_in_flight_on_the_client_and_in_the_handler_on_the_server() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    let err = client
        .call_timeout(SLEEP, millis(1_000), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::DeadlineExceeded {
                phase: DeadlinePhase::InFlight
            }
        ),
        "{err:?}"
    );
    assert!(err.may_have_run());
    // The server got the same deadline and abandoned the handler at it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while server.seen.abandoned.load(SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not give up on the handler"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.seen.finished.load(SeqCst), 0);
}

#[tokio::test]
async fn request_whose_deadline_passes_while_queued_on_the_server_is_not_dispatched() {
    let server = TestServer::with(Server::builder().max_concurrent(1).max_waiters(10)).await;
    let client = Client::new(server.addr.to_string());
    let busy = {
        let client = client.clone();
        tokio::spawn(async move { client.call(SLEEP, millis(300)).await })
    };
    while server.seen.started.load(SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // A raw peer, so no CANCEL races the server's own deadline.
    let (mut stream, mut codec, mut buf) = raw(server.addr).await;
    let mut out = BytesMut::new();
    let late = Request {
        id: 7,
        deadline: Some(Duration::from_millis(50)),
        method: ECHO,
        metadata: Default::default(),
        compressed: false,
        body: Bytes::from_static(b"late"),
    };
    codec.encode(Message::Request(late), &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let response = loop {
        if let Some(Message::Response(r)) = codec.decode(&mut buf).unwrap() {
            break r;
        }
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read_buf(&mut buf));
        assert!(read.await.expect("an answer in time").unwrap() > 0);
    };
    assert_eq!(response.id, 7);
    assert_eq!(response.status, Status::DEADLINE_EXCEEDED);
    assert!(response.flags.contains(Flags::NOT_PROCESSED));
    busy.await.unwrap().unwrap();
    assert_eq!(
        server.seen.started.load(SeqCst),
        1,
        "the late request never ran"
    );
    assert_eq!(server.handle.stats().deadline_dropped, 1);
}
