//! Two savers sharing the pending index in the real Redis, over one MariaDB database: a
//! saver cut off from Redis cannot leave the other trusting an index that lacks what it
//! stored.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use longlink_codec::push::DeliveryMode;
use longlink_pool::db::Db;
use longlink_push::metrics::Metrics;
use longlink_push::model::{IdGenerator, Message, now_ms};
use longlink_push::redis_conn::RedisConn;
use longlink_push::saver::{HotSaver, Recipient, Saver, SqlSaver};

use common::proxy::Proxy;

const MYSQL: &str = "mysql://root@127.0.0.1:3306";

async fn marker_present(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(format!("{prefix}{{owed-index}}"))
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saver_cut_off_from_redis_makes_every_saver_read_mysql_until_the_index_is_rebuilt() {
    let name = format!("push_index_{}_{}", std::process::id(), now_ms());
    let admin = Db::open(&format!("{MYSQL}/test")).unwrap();
    admin
        .exec(&format!("CREATE DATABASE {name}"), ())
        .await
        .unwrap();
    let dsn = format!("{MYSQL}/{name}");
    let prefix = format!("llidx{}:", now_ms());
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let open = async |redis: &str| {
        HotSaver::start(
            SqlSaver::open(Db::open(&dsn).unwrap()).await.unwrap(),
            RedisConn::single(redis).unwrap(),
            &prefix,
            Duration::from_millis(100),
            Arc::new(Metrics::default()),
        )
    };
    let a = open(&format!("redis://{}/0", proxy.addr)).await;
    let b = open("redis://127.0.0.1:6379/0").await;
    let client = redis::Client::open("redis://127.0.0.1:6379/0").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !marker_present(&mut conn, &prefix).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index was never built"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = IdGenerator::starting_after(0);
    let message = |id| Message {
        id,
        app: "im".into(),
        mode: DeliveryMode::AtLeastOnce,
        body: Bytes::from_static(b"owed"),
        created_ms: now_ms(),
        expires_ms: now_ms() + 60_000,
    };
    let to_u = || {
        vec![Recipient {
            uid: "u".into(),
            device: "*".into(),
        }]
    };
    assert!(
        b.pending("u".into(), "*".into(), now_ms(), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Saver A cannot reach Redis: its store still commits (after its vouch ran out), and
    // saver B — which reaches Redis — no longer trusts the index: it reads MariaDB.
    proxy.down().await;
    let id = ids.next().unwrap();
    let started = tokio::time::Instant::now();
    a.store(message(id), to_u(), None).await.unwrap();
    let waited = started.elapsed();
    let pending = b
        .pending("u".into(), "*".into(), now_ms(), 10)
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|p| p.message.id).collect::<Vec<_>>(),
        [id],
        "the other saver must find what the cut-off one stored"
    );
    assert!(
        !marker_present(&mut conn, &prefix).await,
        "the index is distrusted"
    );

    // Redis back: the index is rebuilt from MariaDB, with the entry A could not write. (A
    // first drops the marker for its own failed writes, within a quarter second: a rebuild
    // that ran before might lack one of them.)
    proxy.up();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !marker_present(&mut conn, &prefix).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index was never rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}owed:u"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members, [format!("{id}|*")]);
    for saver in [&a, &b] {
        let pending = saver
            .pending("u".into(), "*".into(), now_ms(), 10)
            .await
            .unwrap();
        assert_eq!(pending.len(), 1);
    }
    // Rebuilt, it stays trusted under steady lookups: every saver kept vouching while it
    // was being rebuilt (a vouch left to run out meanwhile would make the next lookup drop
    // the index again, and again).
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        for saver in [&a, &b] {
            let _ = saver
                .pending("v".into(), "*".into(), now_ms(), 10)
                .await
                .unwrap();
        }
        assert!(
            marker_present(&mut conn, &prefix).await,
            "a rebuilt index was dropped again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("the cut-off saver's store waited {waited:?} for its vouch to run out");
    a.leave().await;
    b.leave().await;
    common::delete_redis_keys(&prefix).await;
    admin
        .exec(&format!("DROP DATABASE {name}"), ())
        .await
        .unwrap();
}
