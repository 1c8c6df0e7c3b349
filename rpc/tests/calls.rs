//! Calls on every strategy; many in flight on one connection, answered out of order.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ECHO, FAIL, SLEEP, TestServer, millis};
use longlink_rpc::{Client, RpcError, Strategy};

#[tokio::test]
async fn echo_works_on_every_strategy() {
    let server = TestServer::start().await;
    for strategy in [
        Strategy::Short,
        Strategy::Pooled { max_conns: 4 },
        Strategy::Multiplexed { conns: 2 },
    ] {
        let client = Client::builder(server.addr.to_string())
            .strategy(strategy)
            .build();
        for i in 0..20u32 {
            let body = Bytes::from(format!("hello {i}"));
            assert_eq!(
                client.call(ECHO, body.clone()).await.unwrap(),
                body,
                "{strategy:?}"
            );
        }
    }
}

#[tokio::test]
async fn answers_arrive_out_of_order_on_one_connection() {
    let server = TestServer::start().await;
    let client = Client::builder(server.addr.to_string())
        .strategy(Strategy::Multiplexed { conns: 1 })
        .build();
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            client.call(SLEEP, millis(300)).await.unwrap();
            Instant::now()
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.call(ECHO, "fast").await.unwrap();
    let fast_done = Instant::now();
    assert!(
        fast_done < slow.await.unwrap(),
        "the fast call was not held up by the slow one"
    );
    assert_eq!(
        server.handle.stats().connections_total,
        1,
        "both on one connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_calls_share_one_connection() {
    let server = TestServer::with(
        longlink_rpc::Server::builder()
            .max_concurrent_per_conn(20_000)
            .max_concurrent(20_000),
    )
    .await;
    let client = Client::builder(server.addr.to_string())
        .max_in_flight(10_000)
        .build();
    let calls: Vec<_> = (0..10_000u32)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let body = Bytes::from(i.to_be_bytes().to_vec());
                assert_eq!(client.call(ECHO, body.clone()).await.unwrap(), body);
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(server.handle.stats().connections_total, 1);
    assert_eq!(server.seen.finished.load(SeqCst), 10_000);
    let stats = client.stats();
    assert_eq!((stats.in_flight, stats.pending), (0, 0));
}

#[tokio::test]
async fn handler_failure_is_a_remote_error_that_ran() {
    let server = TestServer::start().await;
    let client = Client::new(server.addr.to_string());
    let err = client.call(FAIL, Bytes::new()).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Remote { status: 1001, message, .. } if message == "boom"),
        "{err:?}"
    );
    assert!(err.may_have_run() && !err.is_retryable());
    let err = client.call(999, Bytes::new()).await.unwrap_err();
    assert!(
        matches!(err, RpcError::Remote { status: 4, .. }),
        "unknown method: {err:?}"
    );
}

#[tokio::test]
async fn large_body_is_chunked_and_does_not_hold_up_small_calls() {
    let server = TestServer::with(longlink_rpc::Server::builder().max_frame_bytes(8 << 20)).await;
    let client = Client::builder(server.addr.to_string())
        .max_frame_bytes(8 << 20)
        .build();
    let big = Bytes::from(vec![7u8; 4 << 20]);
    let big_call = {
        let client = client.clone();
        let big = big.clone();
        tokio::spawn(async move { client.call(ECHO, big).await.unwrap() })
    };
    for _ in 0..50 {
        assert_eq!(client.call(ECHO, "small").await.unwrap(), "small");
    }
    assert_eq!(big_call.await.unwrap(), big);
}
