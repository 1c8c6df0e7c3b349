//! close(): new and waiting acquires fail, idle connections close now, in-use ones on return.

mod common;

use std::time::Duration;

use common::{FakeServer, TcpManager};
use longlink_pool::{Pool, PoolError};

#[tokio::test]
async fn close_with_connections_in_use() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().max_open(2).build(TcpManager::new(&server));
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    drop(b); // one idle, one in use
    server.wait_live(2).await;
    let waiter = {
        let pool = pool.clone();
        let _ = &pool;
        tokio::spawn(async move {
            let _hold = pool.acquire().await.unwrap(); // takes the idle one
            pool.acquire().await // waits: max_open reached
        })
    };
    while pool.stats().waiting == 0 {
        tokio::task::yield_now().await;
    }
    pool.close();
    assert!(
        matches!(waiter.await.unwrap(), Err(PoolError::Closed)),
        "a waiting acquire fails"
    );
    assert!(
        matches!(pool.acquire().await, Err(PoolError::Closed)),
        "a new acquire fails"
    );
    assert!(pool.is_closed());
    server.wait_live(1).await; // the connection the waiter task held was closed on return
    let closed = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.wait_closed().await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!closed.is_finished(), "one connection is still in use");
    drop(a);
    tokio::time::timeout(Duration::from_secs(1), closed)
        .await
        .unwrap()
        .unwrap();
    server.wait_live(0).await;
    assert_eq!(pool.stats().open, 0);
}
