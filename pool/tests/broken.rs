//! Broken connections are replaced, not reused; a database that is down fails with the real
//! cause, and the pool recovers by itself when it comes back.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::{FakeServer, TcpManager, assert_quiet};
use longlink_pool::{Pool, PoolError, TestOnAcquire};

#[tokio::test]
async fn connection_killed_by_the_server_is_replaced_on_acquire() {
    let server = FakeServer::start().await;
    let pool = Pool::builder()
        .test_on_acquire(TestOnAcquire::Always)
        .build(TcpManager::new(&server));
    let first = pool.acquire().await.unwrap().id();
    server.wait_live(1).await;
    server.kill_all();
    server.wait_live(0).await;
    let conn = pool.acquire().await.unwrap();
    assert_ne!(conn.id(), first, "the dead connection was not handed out");
    assert_eq!(pool.stats().broken, 1);
    drop(conn);
    assert_quiet(&pool);
}

#[tokio::test]
async fn connection_marked_broken_is_closed_not_returned() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().build(TcpManager::new(&server));
    let mut conn = pool.acquire().await.unwrap();
    conn.mark_broken();
    drop(conn);
    let stats = pool.stats();
    assert_eq!((stats.open, stats.idle, stats.broken), (0, 0, 1));
    server.wait_live(0).await;
}

#[tokio::test]
async fn failed_check_keeps_the_slot_and_connects_anew() {
    let server = FakeServer::start().await;
    let manager = TcpManager::new(&server);
    let faults = manager.faults.clone();
    let pool = Pool::builder()
        .max_open(1)
        .test_on_acquire(TestOnAcquire::Always)
        .build(manager);
    drop(pool.acquire().await.unwrap());
    faults.fail_checks.store(true, SeqCst);
    // The only slot is taken by the idle connection; a failed check must reuse that slot.
    let conn = pool.acquire().await.unwrap();
    assert_eq!(pool.stats().open, 1);
    assert_eq!(faults.connects.load(SeqCst), 2);
    drop(conn);
}

#[tokio::test]
async fn database_down_fails_fast_with_the_connect_error() {
    let server = FakeServer::start().await;
    server.stop_accepting().await;
    let pool = Pool::builder()
        .max_open(2)
        .acquire_timeout(Duration::from_secs(5))
        .build(TcpManager::new(&server));
    let started = std::time::Instant::now();
    let results = futures::future::join_all((0..10).map(|_| pool.acquire())).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "callers did not wait for the timeout"
    );
    for result in results {
        match result {
            Err(PoolError::Connect(cause)) => {
                assert_eq!(cause.kind(), std::io::ErrorKind::ConnectionRefused)
            }
            other => panic!("expected the connect error, got {other:?}"),
        }
    }
    assert_eq!(pool.stats().connect_errors, 10);
    assert_eq!(pool.stats().open, 0);
}

#[tokio::test]
async fn waiter_that_times_out_while_connects_fail_reports_the_cause() {
    let server = FakeServer::start().await;
    let manager = TcpManager::new(&server);
    let pool = Pool::builder()
        .max_open(1)
        .acquire_timeout(Duration::from_millis(200))
        .build(manager.clone());
    let held = pool.acquire().await.unwrap();
    server.stop_accepting().await;
    // The held connection goes bad and is returned broken; the waiter gets its slot, tries
    // to connect, and that fails: the waiter fails with the connect error.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await })
    };
    while pool.stats().waiting == 0 {
        tokio::task::yield_now().await;
    }
    let mut held = held;
    held.mark_broken();
    drop(held);
    match waiter.await.unwrap() {
        Err(err @ PoolError::Connect(_)) => {
            assert!(err.to_string().starts_with("connect failed"), "{err}");
            assert!(err.cause().is_some());
        }
        other => panic!("expected the connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn pool_recovers_by_itself_when_the_database_comes_back() {
    let server = FakeServer::start().await;
    let pool = Pool::builder()
        .test_on_acquire(TestOnAcquire::Always)
        .build(TcpManager::new(&server));
    drop(pool.acquire().await.unwrap());
    server.wait_live(1).await;
    server.stop_accepting().await;
    server.kill_all();
    server.wait_live(0).await;
    assert!(matches!(pool.acquire().await, Err(PoolError::Connect(_))));
    server.resume_accepting().await;
    let conn = pool.acquire().await.expect("recovered");
    drop(conn);
    assert_quiet(&pool);
}
