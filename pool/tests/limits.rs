//! max_open, max_idle, timeouts and FIFO fairness.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FakeServer, TcpManager, assert_quiet};
use longlink_pool::{Pool, PoolError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_never_open_more_than_max_open() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(5).build(TcpManager::new(&server));
    let peak = Arc::new(Mutex::new(0usize));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let pool = pool.clone();
            let peak = Arc::clone(&peak);
            tokio::spawn(async move {
                for _ in 0..20 {
                    let conn = pool.acquire().await.unwrap();
                    let open = pool.stats().open;
                    {
                        let mut peak = peak.lock().unwrap();
                        *peak = (*peak).max(open);
                    }
                    tokio::task::yield_now().await;
                    drop(conn);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(*peak.lock().unwrap() <= 5);
    assert!(
        server.accepted() <= 5,
        "server saw {} connections",
        server.accepted()
    );
    assert_quiet(&pool);
    assert!(pool.stats().wait_count > 0, "some acquires had to wait");
}

#[tokio::test]
async fn acquire_when_full_times_out_with_the_pool_state() {
    let server = FakeServer::start().await;
    let pool = Pool::builder()
        .max_open(1)
        .acquire_timeout(Duration::from_millis(100))
        .build(TcpManager::new(&server));
    let held = pool.acquire().await.unwrap();
    let started = std::time::Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(100));
    match &err {
        PoolError::Timeout {
            waited,
            last_connect_error,
            stats,
        } => {
            assert!(*waited >= Duration::from_millis(100));
            assert!(
                last_connect_error.is_none(),
                "the database is up: a bare timeout"
            );
            assert_eq!((stats.open, stats.in_use), (1, 1));
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(err.to_string().starts_with("timed out after"), "{err}");
    assert_eq!(pool.stats().timeouts, 1);
    drop(held);
    assert_quiet(&pool);
}

#[tokio::test]
async fn extra_idle_connections_are_closed_past_max_idle() {
    let server = FakeServer::start().await;
    let pool = Pool::builder()
        .max_open(5)
        .max_idle(2)
        .build(TcpManager::new(&server));
    let conns: Vec<_> = futures::future::join_all((0..5).map(|_| pool.acquire())).await;
    drop(conns);
    let stats = pool.stats();
    assert_eq!((stats.open, stats.idle, stats.max_idle_closed), (2, 2, 3));
    server.wait_live(2).await;
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(1).build(TcpManager::new(&server));
    let held = pool.acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let task_pool = pool.clone();
        let order = Arc::clone(&order);
        tasks.push(tokio::spawn(async move {
            let conn = task_pool.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(2)).await;
            drop(conn);
        }));
        // Let task i queue up before task i + 1 starts.
        while pool.stats().waiting < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

#[tokio::test]
async fn returned_connection_goes_to_the_waiter_not_a_newcomer() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(1).build(TcpManager::new(&server));
    let held = pool.acquire().await.unwrap();
    let id = held.id();
    let (got, got_id) = tokio::sync::oneshot::channel();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let conn = pool.acquire().await.unwrap();
            got.send(conn.id()).unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await; // hold it
        })
    };
    while pool.stats().waiting == 0 {
        tokio::task::yield_now().await;
    }
    drop(held);
    // A newcomer arriving now, before the waiter has run, must not get it.
    let newcomer = tokio::time::timeout(Duration::from_millis(50), pool.acquire()).await;
    assert!(newcomer.is_err(), "the newcomer jumped the queue");
    assert_eq!(got_id.await.unwrap(), id);
    waiter.await.unwrap();
}
