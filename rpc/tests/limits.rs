//! Server NACK over its limits (handler not run); client Overloaded at each of its bounds.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ECHO, SLEEP, TestServer, millis};
use longlink_rpc::{Client, OverloadScope, RetryPolicy, RpcError, Server};

#[tokio::test]
async fn server_refuses_over_max_concurrent_without_running_the_handler() {
    let server = TestServer::with(Server::builder().max_concurrent(2)).await;
    // Without retries: each NACK reaches the caller (tests/retry.rs has them retried).
    let client = Client::builder(server.addr.to_string())
        .retry(RetryPolicy::never())
        .build();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call(SLEEP, millis(200)).await })
        })
        .collect();
    let mut ok = 0;
    let mut rejected = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(
                e @ RpcError::Rejected {
                    retryable: true, ..
                },
            ) => {
                assert!(!e.may_have_run() && e.is_retryable());
                rejected += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, rejected), (2, 4));
    assert_eq!(
        server.seen.started.load(SeqCst),
        2,
        "refused requests never reached the handler"
    );
    assert_eq!(server.handle.stats().rejected, 4);
}

#[tokio::test]
async fn server_lets_max_waiters_queue_for_a_slot() {
    let server = TestServer::with(Server::builder().max_concurrent(1).max_waiters(2)).await;
    let client = Client::builder(server.addr.to_string())
        .retry(RetryPolicy::never())
        .build();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call(SLEEP, millis(50)).await })
        })
        .collect();
    let results: Vec<_> = futures_join(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3, "one running, two waiting, one refused: {results:?}");
}

async fn futures_join<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn client_refuses_at_once_when_in_flight_and_queue_are_full() {
    let server = TestServer::start().await;
    let client = Client::builder(server.addr.to_string())
        .max_in_flight(2)
        .max_queued(0)
        .build();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call(SLEEP, millis(300)).await })
        })
        .collect();
    while client.stats().in_flight < 2 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let err = client.call(ECHO, "x").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            RpcError::Overloaded {
                scope: OverloadScope::Queue
            }
        ),
        "{err:?}"
    );
    // The queue wait is 1 s: failing far below it proves the call did not wait (the
    // benchmarks measure the real figure, ~1 µs).
    assert!(
        took < Duration::from_millis(100),
        "failed at once, took {took:?}"
    );
    assert!(!err.may_have_run() && err.is_retryable());
    for h in held {
        h.await.unwrap().unwrap();
    }
    assert_eq!(client.stats().overloaded, 1);
}

#[tokio::test]
async fn queued_call_gives_up_after_the_queue_wait() {
    let server = TestServer::start().await;
    let client = Client::builder(server.addr.to_string())
        .max_in_flight(1)
        .max_queued(1)
        .max_queue_wait(Duration::from_millis(50))
        .build();
    let held = {
        let client = client.clone();
        tokio::spawn(async move { client.call(SLEEP, millis(300)).await })
    };
    while client.stats().in_flight < 1 {
        tokio::task::yield_now().await;
    }
    let queued = {
        let client = client.clone();
        tokio::spawn(async move { client.call(ECHO, "waits").await })
    };
    while client.stats().queued < 1 {
        tokio::task::yield_now().await;
    }
    // Queue full: the third fails at once.
    assert!(matches!(
        client.call(ECHO, "x").await,
        Err(RpcError::Overloaded {
            scope: OverloadScope::Queue
        })
    ));
    assert!(matches!(
        queued.await.unwrap(),
        Err(RpcError::Overloaded {
            scope: OverloadScope::QueueWait
        })
    ));
    held.await.unwrap().unwrap();
    assert_eq!(client.stats().queued, 0);
}

#[tokio::test]
async fn in_flight_bytes_bound_queues_and_oversized_request_is_refused() {
    let server = TestServer::start().await;
    let client = Client::builder(server.addr.to_string())
        .max_in_flight_bytes(1000)
        .max_queued(0)
        .build();
    let err = client
        .call(ECHO, Bytes::from(vec![0u8; 1001]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::FrameTooLarge {
                len: 1001,
                max: 1000
            }
        ),
        "{err:?}"
    );
    let big = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut body = millis(200).to_vec();
            body.resize(900, 0);
            client.call(SLEEP, body).await
        })
    };
    while client.stats().in_flight_bytes < 900 {
        tokio::task::yield_now().await;
    }
    let err = client
        .call(ECHO, Bytes::from(vec![0u8; 200]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Overloaded {
                scope: OverloadScope::Queue
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        client
            .call(ECHO, Bytes::from(vec![0u8; 50]))
            .await
            .unwrap()
            .len(),
        50,
        "small ones still fit"
    );
    big.await.unwrap().unwrap();
}
