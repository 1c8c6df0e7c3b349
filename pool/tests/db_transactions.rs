//! Transactions keep one connection; a dropped one is rolled back before reuse.

mod common;

use std::time::Duration;

use common::db::{mysql_url, postgres_url, sql, sqlite_url, unique};
use longlink_pool::db::{Db, DbError};

async fn transactions(db: Db) {
    let t = unique("tx");
    db.exec(&format!("CREATE TABLE {t} (n INTEGER)"), ())
        .await
        .unwrap();
    let insert = sql(&db, &format!("INSERT INTO {t} (n) VALUES (?)"));
    let count = format!("SELECT COUNT(*) FROM {t}");

    let mut tx = db.begin().await.unwrap();
    tx.exec(&insert, (1,)).await.unwrap();
    let (inside,): (i64,) = tx.query_one(&count, ()).await.unwrap();
    assert_eq!(inside, 1, "the transaction sees its own write");
    tx.commit().await.unwrap();

    let mut tx = db.begin().await.unwrap();
    tx.exec(&insert, (2,)).await.unwrap();
    tx.rollback().await.unwrap();

    // Dropped without commit or rollback: with one connection in the pool, the next call
    // gets the same connection, which must have been rolled back first.
    let mut tx = db.begin().await.unwrap();
    tx.exec(&insert, (3,)).await.unwrap();
    drop(tx);
    let (after,): (i64,) = db.query_one(&count, ()).await.unwrap();
    assert_eq!(after, 1, "only the committed row remains");
    assert_eq!(
        db.stats().open,
        1,
        "the connection was reset and reused, not replaced"
    );

    // While a transaction holds the only connection, others wait, then time out.
    let tx = db.begin().await.unwrap();
    let err = db.query(&count, ()).await.unwrap_err();
    assert!(matches!(err, DbError::Timeout { .. }), "{err:?}");
    drop(tx);

    db.exec(&format!("DROP TABLE {t}"), ()).await.unwrap();
}

fn one_connection(dsn: &str) -> Db {
    Db::builder()
        .max_open(1)
        .acquire_timeout(Duration::from_millis(200))
        .open(dsn)
        .unwrap()
}

#[tokio::test]
async fn mysql_transactions_pin_a_connection_and_roll_back_on_drop() {
    transactions(one_connection(&mysql_url())).await;
}

#[tokio::test]
async fn postgres_transactions_pin_a_connection_and_roll_back_on_drop() {
    transactions(one_connection(&postgres_url())).await;
}

#[tokio::test]
async fn sqlite_transactions_pin_a_connection_and_roll_back_on_drop() {
    let (_dir, url) = sqlite_url();
    transactions(one_connection(&url)).await;
}

#[tokio::test]
async fn dedicated_connection_keeps_its_session() {
    let db = Db::open(&mysql_url()).unwrap();
    let mut conn = db.conn().await.unwrap();
    conn.exec("SET @marker = 42", ()).await.unwrap();
    let (marker,): (i64,) = conn.query_one("SELECT @marker", ()).await.unwrap();
    assert_eq!(marker, 42);
}
