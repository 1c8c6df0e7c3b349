//! Lifetime and idle-time expiry, and min_idle warm-up.

mod common;

use std::time::Duration;

use common::{FakeServer, TcpManager};
use longlink_pool::Pool;

#[tokio::test]
async fn connection_past_its_lifetime_is_closed_and_replaced() {
    let server = FakeServer::start().await;
    let pool = Pool::builder()
        .max_lifetime(Some(Duration::from_millis(100)))
        .reap_interval(Duration::from_secs(3600)) // checked on acquire and release here
        .build(TcpManager::new(&server));
    let first = pool.acquire().await.unwrap().id();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let second = pool.acquire().await.unwrap().id();
    assert_ne!(first, second);
    assert_eq!(pool.stats().max_lifetime_closed, 1);
    server.wait_live(1).await;
}

#[tokio::test]
async fn lifetimes_are_jittered_so_connections_do_not_expire_together() {
    let server = FakeServer::start().await;
    let lifetime = Duration::from_secs(100);
    let pool = Pool::builder()
        .max_open(50)
        .max_lifetime(Some(lifetime))
        .build(TcpManager::new(&server));
    let conns: Vec<_> = futures::future::join_all((0..50).map(|_| pool.acquire())).await;
    let ages: Vec<Duration> = conns
        .iter()
        .map(|c| {
            let c = c.as_ref().unwrap();
            c.expires_at().unwrap() - c.created_at()
        })
        .collect();
    // Each lives between 90% and 100% of the lifetime, and they are spread out.
    for age in &ages {
        assert!(*age >= lifetime.mul_f64(0.9) && *age <= lifetime, "{age:?}");
    }
    let spread = *ages.iter().max().unwrap() - *ages.iter().min().unwrap();
    assert!(
        spread > lifetime.mul_f64(0.05),
        "expiries bunched within {spread:?}"
    );
}

#[tokio::test]
async fn reaper_closes_connections_idle_too_long() {
    let server = FakeServer::start().await;
    let pool = Pool::builder()
        .max_open(3)
        .max_idle_time(Some(Duration::from_millis(100)))
        .reap_interval(Duration::from_millis(50))
        .build(TcpManager::new(&server));
    let conns: Vec<_> = futures::future::join_all((0..3).map(|_| pool.acquire())).await;
    drop(conns);
    server.wait_live(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = pool.stats();
    assert_eq!(
        (stats.open, stats.max_idle_time_closed),
        (0, 3),
        "{stats:?}"
    );
    server.wait_live(0).await;
}

#[tokio::test]
async fn reaper_keeps_min_idle_connections_open() {
    let server = FakeServer::start().await;
    let pool = Pool::builder()
        .max_open(5)
        .min_idle(2)
        .reap_interval(Duration::from_millis(20))
        .build(TcpManager::new(&server));
    drop(pool.acquire().await.unwrap()); // the first acquire starts the reaper
    server.wait_live(2).await;
    assert_eq!(pool.stats().idle, 2);
    // Closing the server side: the reaper notices nothing (idle connections are not
    // pinged), but expiry by idle time would; min_idle holds at 2 in any case.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.stats().open, 2);
}
