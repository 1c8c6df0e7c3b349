//! Broken connections: retried when it is proven the statement was not sent, reported
//! (and not retried) when it may have run; a database that goes away and comes back.

mod common;

use std::time::Duration;

use common::db::{Proxy, mysql_url, postgres_url, unique};
use longlink_pool::TestOnAcquire;
use longlink_pool::db::{Db, DbError};

fn single(dsn: &str, test: TestOnAcquire) -> Db {
    Db::builder()
        .max_open(1)
        .test_on_acquire(test)
        .acquire_timeout(Duration::from_secs(5))
        .open(dsn)
        .unwrap()
}

#[tokio::test]
async fn mysql_connection_killed_while_idle_is_retried_on_a_new_one() {
    let admin = Db::open(&mysql_url()).unwrap();
    // No ping before use: the statement itself meets the dead connection.
    let db = single(&mysql_url(), TestOnAcquire::Never);
    let (id,): (u64,) = db.query_one("SELECT CONNECTION_ID()", ()).await.unwrap();
    admin.exec(&format!("KILL {id}"), ()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The write of the statement fails (EPIPE): proven not sent, so it is retried.
    let (new_id,): (u64,) = db.query_one("SELECT CONNECTION_ID()", ()).await.unwrap();
    assert_ne!(new_id, id);
    assert_eq!(db.stats().broken, 1);
}

#[tokio::test]
async fn postgres_connection_killed_while_idle_is_caught_by_the_ping_and_replaced() {
    let admin = Db::open(&postgres_url()).unwrap();
    let db = single(
        &postgres_url(),
        TestOnAcquire::IdleFor(Duration::from_millis(50)),
    );
    let (pid,): (i64,) = db
        .query_one("SELECT pg_backend_pid()::int8", ())
        .await
        .unwrap();
    admin
        .exec("SELECT pg_terminate_backend($1::int)", (pid,))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (new_pid,): (i64,) = db
        .query_one("SELECT pg_backend_pid()::int8", ())
        .await
        .unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(db.stats().broken, 1);
}

#[tokio::test]
async fn postgres_killed_connection_without_ping_is_not_retried_and_says_it_may_have_run() {
    // PostgreSQL answers 57P01 whether the backend died before or during the statement, so
    // without the ping nothing proves the statement did not run: no retry.
    let admin = Db::open(&postgres_url()).unwrap();
    let db = single(&postgres_url(), TestOnAcquire::Never);
    let (pid,): (i64,) = db
        .query_one("SELECT pg_backend_pid()::int8", ())
        .await
        .unwrap();
    admin
        .exec("SELECT pg_terminate_backend($1::int)", (pid,))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = db.query("SELECT 1", ()).await.unwrap_err();
    assert!(
        matches!(
            err,
            DbError::Broken {
                may_have_run: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.may_have_run() && !err.is_retryable());
    // The broken connection was closed; the next call works.
    db.query("SELECT 1", ()).await.unwrap();
}

#[tokio::test]
async fn mysql_connection_killed_mid_statement_is_not_retried() {
    let admin = Db::open(&mysql_url()).unwrap();
    let db = single(&mysql_url(), TestOnAcquire::Never);
    let t = unique("mid");
    db.exec(&format!("CREATE TABLE {t} (n INT)"), ())
        .await
        .unwrap();
    let (id,): (u64,) = db.query_one("SELECT CONNECTION_ID()", ()).await.unwrap();
    let killer = {
        let admin = admin.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            admin.exec(&format!("KILL {id}"), ()).await.unwrap();
        })
    };
    let err = db
        .exec(&format!("INSERT INTO {t} SELECT SLEEP(2)"), ())
        .await
        .unwrap_err();
    killer.await.unwrap();
    assert!(err.may_have_run(), "{err:?}");
    assert!(
        err.to_string().contains("the statement may have run"),
        "{err}"
    );
    let (rows,): (i64,) = admin
        .query_one(&format!("SELECT COUNT(*) FROM {t}"), ())
        .await
        .unwrap();
    assert!(rows <= 1, "not run a second time");
    admin.exec(&format!("DROP TABLE {t}"), ()).await.unwrap();
}

#[tokio::test]
async fn statement_dropped_mid_flight_closes_its_connection() {
    let db = single(&mysql_url(), TestOnAcquire::Never);
    db.ping().await.unwrap();
    let cancelled =
        tokio::time::timeout(Duration::from_millis(100), db.query("SELECT SLEEP(1)", ())).await;
    assert!(cancelled.is_err());
    let stats = db.stats();
    assert_eq!(
        (stats.open, stats.in_use, stats.broken),
        (0, 0, 1),
        "not returned half-read: {stats:?}"
    );
    let (one,): (i64,) = db.query_one("SELECT 1", ()).await.unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn database_down_then_back_recovers_by_itself() {
    let proxy = Proxy::start("127.0.0.1:3306").await;
    // prefer_socket=false: mysql_async would otherwise switch a local connection to the
    // Unix socket after the handshake, around the proxy.
    let dsn = format!("mysql://root@{}/test?prefer_socket=false", proxy.addr);
    let db = Db::builder()
        .max_open(2)
        .acquire_timeout(Duration::from_secs(2))
        .open(&dsn)
        .unwrap();
    db.ping().await.unwrap();

    proxy.stop().await;
    let err = db.query("SELECT 1", ()).await.unwrap_err();
    // The idle connection is dead (not sent: retried), then a new connect is refused.
    assert!(
        matches!(err, DbError::Connect { .. } | DbError::Broken { .. }),
        "{err:?}"
    );
    let err = db.query("SELECT 1", ()).await.unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. }),
        "down: the real cause, {err:?}"
    );

    proxy.restart().await;
    let (one,): (i64,) = db
        .query_one("SELECT 1", ())
        .await
        .expect("recovered without help");
    assert_eq!(one, 1);
}
