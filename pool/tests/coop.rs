//! A loop of warm acquires yields to the scheduler, so timers and other tasks still run.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use common::{FakeServer, TcpManager};
use longlink_pool::Pool;

#[tokio::test(flavor = "current_thread")]
async fn tight_acquire_loop_does_not_starve_the_timer() {
    let server = FakeServer::start().await;
    let pool = Pool::builder().build(TcpManager::new(&server));
    drop(pool.acquire().await.unwrap()); // warm
    const ROUNDS: usize = 2_000_000;
    let done = Arc::new(AtomicUsize::new(0));
    let looping = {
        let pool = pool.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            for _ in 0..ROUNDS {
                drop(pool.acquire().await.unwrap());
                done.fetch_add(1, SeqCst);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    let at_wake = done.load(SeqCst);
    assert!(
        at_wake < ROUNDS,
        "the timer only fired after the whole loop ({at_wake} rounds)"
    );
    looping.abort();
}
