//! Dropping an acquire at any await point, or a connection, never leaks a slot, a place in
//! the queue, or a connection.

mod common;

use std::future::Future;
use std::sync::atomic::Ordering::SeqCst;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{FakeServer, TcpManager, assert_quiet};
use futures::FutureExt;
use longlink_pool::{Pool, TestOnAcquire};

fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn acquire_dropped_while_waiting_leaves_the_queue() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(1).build(TcpManager::new(&server));
    let held = pool.acquire().await.unwrap();
    for _ in 0..100 {
        assert!(
            tokio::time::timeout(Duration::from_millis(1), pool.acquire())
                .await
                .is_err()
        );
    }
    assert_eq!(pool.stats().waiting, 0);
    drop(held);
    assert_eq!(
        pool.stats().idle,
        1,
        "the connection went back, not to a departed waiter"
    );
    drop(pool.acquire().await.unwrap());
    assert_quiet(&pool);
}

#[tokio::test]
async fn acquire_dropped_while_connecting_frees_its_slot() {
    let server = FakeServer::start().await;
    let manager = TcpManager::new(&server);
    manager.faults.connect_delay_ms.store(200, SeqCst);
    let pool = Pool::builder().max_open(1).build(manager.clone());
    assert!(
        tokio::time::timeout(Duration::from_millis(20), pool.acquire())
            .await
            .is_err()
    );
    assert_eq!(pool.stats().open, 0, "slot given back");
    manager.faults.connect_delay_ms.store(0, SeqCst);
    drop(pool.acquire().await.unwrap());
    assert_quiet(&pool);
}

#[tokio::test]
async fn acquire_dropped_while_checking_closes_that_connection() {
    let server = FakeServer::start().await;
    let manager = TcpManager::new(&server);
    let pool = Pool::builder()
        .max_open(1)
        .test_on_acquire(TestOnAcquire::Always)
        .build(manager.clone());
    drop(pool.acquire().await.unwrap());
    server.wait_live(1).await;
    manager.faults.check_delay_ms.store(200, SeqCst);
    assert!(
        tokio::time::timeout(Duration::from_millis(20), pool.acquire())
            .await
            .is_err()
    );
    let stats = pool.stats();
    assert_eq!(
        (stats.open, stats.broken),
        (0, 1),
        "a connection in an unknown state is closed: {stats:?}"
    );
    server.wait_live(0).await;
}

#[tokio::test]
async fn waiter_dropped_after_being_handed_a_connection_passes_it_on() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(1).build(TcpManager::new(&server));
    let held = pool.acquire().await.unwrap();
    let id = held.id();
    let mut first = Box::pin(pool.acquire());
    let mut second = Box::pin(pool.acquire());
    assert!(poll_once(&mut first).is_pending());
    assert!(poll_once(&mut second).is_pending());
    assert_eq!(pool.stats().waiting, 2);
    drop(held); // handed to `first`, which has not run yet
    drop(first); // ... and gives up: the connection must go to `second`
    let conn = second.now_or_never().expect("handed on at once").unwrap();
    assert_eq!(conn.id(), id);
    drop(conn);
    assert_quiet(&pool);
}

#[tokio::test]
async fn waiter_dropped_after_being_handed_a_permit_passes_it_on() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(1).build(TcpManager::new(&server));
    let mut held = pool.acquire().await.unwrap();
    let mut first = Box::pin(pool.acquire());
    let mut second = Box::pin(pool.acquire());
    assert!(poll_once(&mut first).is_pending());
    assert!(poll_once(&mut second).is_pending());
    held.mark_broken();
    drop(held); // the slot (a permit to connect) goes to `first` ...
    drop(first); // ... which gives up: `second` gets the permit and connects
    let conn = second.await.unwrap();
    drop(conn);
    assert_eq!(pool.stats().open, 1);
    assert_quiet(&pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_dropped_acquires_leak_nothing() {
    let server = FakeServer::start().await;
    let manager = TcpManager::new(&server);
    let pool = Pool::builder()
        .max_open(4)
        .test_on_acquire(TestOnAcquire::Always)
        .build(manager.clone());
    manager.faults.connect_delay_ms.store(1, SeqCst);
    manager.faults.check_delay_ms.store(1, SeqCst);
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut completed = 0;
                for round in 0..60u64 {
                    // Give up after 0–3 ms: sometimes while waiting, connecting or checking.
                    let patience = Duration::from_micros((i * 7919 + round * 104729) % 3000);
                    if let Ok(Ok(mut conn)) = tokio::time::timeout(patience, pool.acquire()).await {
                        completed += 1;
                        if round % 11 == 0 {
                            conn.mark_broken();
                        }
                        tokio::time::sleep(Duration::from_micros(round % 500)).await;
                    }
                }
                completed
            })
        })
        .collect();
    let mut completed = 0;
    for t in tasks {
        completed += t.await.unwrap();
    }
    assert!(completed > 0);
    assert_quiet(&pool);
    let open = pool.stats().open;
    assert!(open <= 4);
    server.wait_live(open).await;
    // And the pool still works.
    drop(pool.acquire().await.unwrap());
}

#[tokio::test]
async fn detached_connection_frees_its_slot() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(1).build(TcpManager::new(&server));
    let stream = pool.acquire().await.unwrap().detach();
    assert_eq!(pool.stats().open, 0);
    drop(pool.acquire().await.unwrap()); // the slot is free for a new connection
    drop(stream);
}
