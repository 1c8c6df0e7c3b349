//! Db::open checks the DSN, picks the driver, and connects to nothing.

mod common;

use std::time::Duration;

use common::db::{
    mysql_connections_to, mysql_own_database, mysql_url, pg_connections_named, postgres_url,
    sqlite_url, unique,
};
use longlink_pool::db::{Db, DbError, Driver};

#[test]
fn malformed_dsns_are_typed_errors_without_io() {
    let cases = [
        ("", "bad dsn"),
        ("no-scheme-here", "bad dsn"),
        ("oracle://scott@tiger/db", "unsupported database scheme"),
        ("mysql://root@127.0.0.1:3306/test?pool_min=x", "bad dsn"),
        ("mysql://[::1", "bad dsn"),
        (
            "postgres://postgres@127.0.0.1/test?sslmode=sometimes",
            "bad dsn",
        ),
        ("sqlite://x.db?mode=sideways", "bad dsn"),
    ];
    for (dsn, start) in cases {
        let err = Db::open(dsn).expect_err(dsn);
        assert!(err.to_string().starts_with(start), "{dsn:?}: {err}");
        assert!(
            matches!(
                err,
                DbError::BadDsn { .. } | DbError::UnsupportedScheme { .. }
            ),
            "{dsn:?}: {err:?}"
        );
    }
}

#[test]
fn scheme_picks_the_driver() {
    assert_eq!(
        Db::open("mysql://root@127.0.0.1/test").unwrap().driver(),
        Driver::Mysql
    );
    assert_eq!(
        Db::open("mariadb://root@127.0.0.1/test").unwrap().driver(),
        Driver::Mysql
    );
    assert_eq!(
        Db::open("postgres://u@127.0.0.1/test").unwrap().driver(),
        Driver::Postgres
    );
    assert_eq!(
        Db::open("postgresql://u@127.0.0.1/test").unwrap().driver(),
        Driver::Postgres
    );
    assert_eq!(
        Db::open("sqlite::memory:").unwrap().driver(),
        Driver::Sqlite
    );
}

#[tokio::test]
async fn mysql_open_does_not_connect_until_first_use() {
    let name = unique("ll_open");
    let (admin, dsn) = mysql_own_database(&name).await;
    let db = Db::builder().max_open(3).open(&dsn).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        mysql_connections_to(&admin, &name).await,
        0,
        "open made a connection"
    );
    assert_eq!(db.stats().open, 0);
    db.ping().await.unwrap();
    assert_eq!(mysql_connections_to(&admin, &name).await, 1);
    // Concurrency never opens more than max_open.
    let calls = (0..20).map(|_| db.query("SELECT SLEEP(0.05)", ()));
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    assert!(mysql_connections_to(&admin, &name).await <= 3);
    db.close();
    db.wait_closed().await;
    admin
        .exec(&format!("DROP DATABASE {name}"), ())
        .await
        .unwrap();
    let _ = mysql_url();
}

#[tokio::test]
async fn postgres_open_does_not_connect_until_first_use() {
    let name = unique("ll_open");
    let admin = Db::open(&postgres_url()).unwrap();
    let db = Db::open(&format!("{}?application_name={name}", postgres_url())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        pg_connections_named(&admin, &name).await,
        0,
        "open made a connection"
    );
    db.ping().await.unwrap();
    assert_eq!(pg_connections_named(&admin, &name).await, 1);
}

#[tokio::test]
async fn sqlite_open_does_not_create_the_file_until_first_use() {
    let (dir, url) = sqlite_url();
    let db = Db::open(&url).unwrap();
    assert!(!dir.path().join("test.db").exists());
    db.ping().await.unwrap();
    assert!(dir.path().join("test.db").exists());
}

#[tokio::test]
async fn unreachable_database_fails_with_the_connect_error() {
    // Nothing listens on port 9 of 127.0.0.1.
    let db = Db::open("mysql://root@127.0.0.1:9/test").unwrap();
    let err = db.ping().await.unwrap_err();
    assert!(matches!(err, DbError::Connect { .. }), "{err:?}");
    assert!(err.is_retryable() && !err.may_have_run());
    assert!(err.to_string().starts_with("connect failed:"), "{err}");
}

#[tokio::test]
async fn sqlite_memory_connections_of_one_db_share_one_database() {
    // sqlx names each parsed `:memory:` DSN's database and opens it with a shared cache:
    // every connection of one `Db` sees the same tables (a second `Db` would not).
    let db = Db::builder().max_open(2).open("sqlite://:memory:").unwrap();
    let mut first = db.conn().await.unwrap();
    first
        .exec("CREATE TABLE shared (n INTEGER)", ())
        .await
        .unwrap();
    first
        .exec("INSERT INTO shared (n) VALUES (1)", ())
        .await
        .unwrap();
    let mut second = db.conn().await.unwrap();
    assert_eq!(db.stats().open, 2, "two connections");
    let (n,): (i64,) = second.query_one("SELECT n FROM shared", ()).await.unwrap();
    assert_eq!(n, 1);
    let other = Db::open("sqlite://:memory:").unwrap();
    assert!(other.query("SELECT n FROM shared", ()).await.is_err());
}
