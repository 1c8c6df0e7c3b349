//! One statement path: a helper written against `Executor` runs on a `Db`, inside a `Tx`
//! and on a `DbConn`, on all three databases, and its futures can be spawned.

mod common;

use std::time::Duration;

use common::db::{mysql_url, postgres_url, sql, sqlite_url, unique};
use longlink_pool::db::{Db, DbError, Executor};

/// The helper under test: takes whatever the caller holds.
async fn name_of(
    mut db: impl Executor,
    table: &str,
    id: i64,
    q: &str,
) -> Result<Option<String>, DbError> {
    db.query_optional(&format!("SELECT name FROM {table} WHERE id = {q}"), (id,))
        .await
}

async fn rename(
    db: &mut impl Executor,
    table: &str,
    id: i64,
    name: &str,
    q: [&str; 2],
) -> Result<u64, DbError> {
    let done = db
        .exec(
            &format!("UPDATE {table} SET name = {} WHERE id = {}", q[0], q[1]),
            (name, id),
        )
        .await?;
    Ok(done.rows_affected)
}

async fn helper_runs_everywhere(db: Db) {
    let t = unique("exec");
    let pg = db.driver() == longlink_pool::db::Driver::Postgres;
    let (one, two) = if pg {
        ("$1", ["$1", "$2"])
    } else {
        ("?", ["?", "?"])
    };
    db.exec(
        &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, name VARCHAR(50))"),
        (),
    )
    .await
    .unwrap();
    db.exec(
        &sql(&db, &format!("INSERT INTO {t} (id, name) VALUES (?, ?)")),
        (1, "ada"),
    )
    .await
    .unwrap();

    // On the Db: a connection per statement.
    assert_eq!(
        name_of(&db, &t, 1, one).await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(name_of(&db, &t, 2, one).await.unwrap(), None);

    // Inside a transaction: the helper sees the transaction's own write; the Db does not.
    let mut tx = db.begin().await.unwrap();
    assert_eq!(rename(&mut tx, &t, 1, "grace", two).await.unwrap(), 1);
    assert_eq!(
        name_of(&mut tx, &t, 1, one).await.unwrap().as_deref(),
        Some("grace")
    );
    assert_eq!(
        name_of(&db, &t, 1, one).await.unwrap().as_deref(),
        Some("ada")
    );
    tx.rollback().await.unwrap();

    // On a dedicated connection.
    let mut conn = db.conn().await.unwrap();
    assert_eq!(rename(&mut conn, &t, 1, "edsger", two).await.unwrap(), 1);
    assert_eq!(
        name_of(&mut conn, &t, 1, one).await.unwrap().as_deref(),
        Some("edsger")
    );
    drop(conn);

    // By value: a clone of the Db moves into a spawned task.
    let task = tokio::spawn({
        let (db, t) = (db.clone(), t.clone());
        async move { name_of(db, &t, 1, one).await }
    });
    assert_eq!(task.await.unwrap().unwrap().as_deref(), Some("edsger"));

    db.exec(&format!("DROP TABLE {t}"), ()).await.unwrap();
    assert_eq!(db.stats().in_use, 0);
}

#[tokio::test]
async fn mysql_helper_takes_db_tx_and_conn_alike() {
    helper_runs_everywhere(Db::open(&mysql_url()).unwrap()).await;
}

#[tokio::test]
async fn postgres_helper_takes_db_tx_and_conn_alike() {
    helper_runs_everywhere(Db::open(&postgres_url()).unwrap()).await;
}

#[tokio::test]
async fn sqlite_helper_takes_db_tx_and_conn_alike() {
    let (_dir, url) = sqlite_url();
    helper_runs_everywhere(Db::open(&url).unwrap()).await;
}

/// Generic code can spawn an executor's futures: they are `Send` by the trait's promise,
/// not only for the concrete types.
fn spawn_count<E: Executor + 'static>(mut db: E) -> tokio::task::JoinHandle<Result<i64, DbError>> {
    tokio::spawn(async move { db.query_one("SELECT 40 + 2", ()).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_futures_spawn_from_generic_code() {
    let (_dir, url) = sqlite_url();
    let db = Db::open(&url).unwrap();
    assert_eq!(spawn_count(db.clone()).await.unwrap().unwrap(), 42);
    let conn = db.conn().await.unwrap();
    assert_eq!(spawn_count(conn).await.unwrap().unwrap(), 42);
    let tx = db.begin().await.unwrap();
    assert_eq!(spawn_count(tx).await.unwrap().unwrap(), 42);
    // The spawned transaction was dropped unfinished: its connection is rolled back, not leaked.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(db.stats().in_use, 0);
}
