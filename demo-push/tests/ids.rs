//! Id lanes leased in the real Redis: a lane is held by one center at a time, a lane taken
//! over after a crash numbers above everything its last holder could have issued even with
//! the clock set back, and a lane whose lease cannot be renewed stops issuing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use longlink_push::ids::{IdLease, epoch_ms, instance_of};
use longlink_push::metrics::Metrics;
use longlink_push::redis_conn::RedisConn;

use common::proxy::Proxy;

fn prefix() -> String {
    format!(
        "llids{}_{}:",
        std::process::id(),
        longlink_push::model::now_ms()
    )
}

fn an_hour_ago() -> u64 {
    epoch_ms() - 3_600_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_taken_over_after_a_crash_numbers_above_its_last_holder_even_with_the_clock_back() {
    let prefix = prefix();
    let redis = RedisConn::single("redis://127.0.0.1:6379/0").unwrap();
    let metrics = Arc::new(Metrics::default());
    let ttl = Duration::from_secs(1);
    let first = IdLease::try_lane(redis.clone(), &prefix, 7, ttl, Arc::clone(&metrics))
        .await
        .unwrap()
        .expect("a free lane");
    assert!(
        IdLease::try_lane(redis.clone(), &prefix, 7, ttl, Arc::clone(&metrics))
            .await
            .unwrap()
            .is_none(),
        "a held lane is not taken twice"
    );
    let ids = first.generator(0);
    let issued: Vec<u64> = (0..500).map(|_| ids.next().unwrap()).collect();
    let last = *issued.last().unwrap();
    assert!(issued.iter().all(|&id| instance_of(id) == 7));

    // The holder crashes (no release): its lease runs out, another center takes the lane
    // with its clock an hour behind and nothing stored (at-most-once pushes only).
    drop(ids);
    drop(first);
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let second = IdLease::try_lane(redis.clone(), &prefix, 7, ttl, Arc::clone(&metrics))
        .await
        .unwrap()
        .expect("the crashed holder's lane is free again");
    let ids = second.generator_with_clock(0, an_hour_ago);
    let next: Vec<u64> = (0..500).map(|_| ids.next().unwrap()).collect();
    assert!(next[0] > last, "{} must be above {last}", next[0]);
    assert!(next.windows(2).all(|w| w[1] > w[0]));
    second.release().await;
    common::delete_redis_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_that_cannot_renew_its_lease_stops_issuing() {
    let prefix = prefix();
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let redis = RedisConn::single(&format!("redis://{}/0", proxy.addr)).unwrap();
    let ttl = Duration::from_secs(1);
    let lease = IdLease::acquire(redis, &prefix, ttl, Arc::new(Metrics::default()))
        .await
        .unwrap();
    let ids = lease.generator(0);
    assert!(ids.next().is_ok());
    proxy.down().await;
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let refused = ids.next().unwrap_err();
    assert!(
        refused.to_string().contains("cannot be issued"),
        "{refused}"
    );
    proxy.up();
    common::delete_redis_keys(&prefix).await;
}
