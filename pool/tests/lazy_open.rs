//! Opening a pool connects to nothing; connections are made on first use and reused.

mod common;

use std::time::Duration;

use common::{FakeServer, TcpManager, assert_quiet};
use longlink_pool::{Pool, TestOnAcquire};

#[tokio::test]
async fn new_pool_opens_no_connection() {
    let server = FakeServer::start().await;
    let pool = Pool::builder()
        .max_open(4)
        .min_idle(0)
        .build(TcpManager::new(&server));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.accepted(), 0);
    assert_eq!(pool.stats().open, 0);
}

#[test]
fn new_pool_needs_no_runtime() {
    // No tokio runtime here: building must not spawn or connect.
    let manager = TcpManager {
        addr: "127.0.0.1:9".parse().unwrap(),
        faults: Default::default(),
    };
    let pool = Pool::builder().min_idle(2).build(manager);
    assert_eq!(pool.stats().open, 0);
}

#[tokio::test]
async fn first_acquire_connects_and_later_ones_reuse() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(4).build(TcpManager::new(&server));
    for _ in 0..100 {
        let conn = pool.acquire().await.unwrap();
        drop(conn);
    }
    server.settle_accepted(1).await;
    assert_eq!(pool.stats().connects, 1);
    assert_quiet(&pool);
}

#[tokio::test]
async fn idle_connections_are_reused_warmest_first() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(3).build(TcpManager::new(&server));
    let (a, b, c) = (
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
        pool.acquire().await.unwrap(),
    );
    let (ida, idb, idc) = (a.id(), b.id(), c.id());
    drop(a);
    drop(c);
    drop(b); // returned last: warmest
    assert_eq!(pool.acquire().await.unwrap().id(), idb);
    let first = pool.acquire().await.unwrap();
    let second = pool.acquire().await.unwrap();
    assert_eq!((first.id(), second.id()), (idb, idc));
    drop((first, second));
    let _ = ida;
}

#[tokio::test]
async fn recently_used_connection_is_not_pinged_but_an_idle_one_is() {
    let server = FakeServer::start().await;
    let manager = TcpManager::new(&server);
    let faults = manager.faults.clone();
    let pool = Pool::builder()
        .test_on_acquire(TestOnAcquire::IdleFor(Duration::from_millis(100)))
        .build(manager);
    drop(pool.acquire().await.unwrap());
    drop(pool.acquire().await.unwrap());
    assert_eq!(faults.checks.load(std::sync::atomic::Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    drop(pool.acquire().await.unwrap());
    assert_eq!(faults.checks.load(std::sync::atomic::Ordering::SeqCst), 1);
}
