//! What a failed connect says: each cause once, and a login the server refused (wrong
//! password, unknown user or database) is not worth retrying; an unreachable server is.

mod common;

use common::db::{mysql_url, postgres_url};
use longlink_pool::db::{Db, DbError};

async fn connect_error(dsn: &str) -> DbError {
    let err = Db::open(dsn).unwrap().ping().await.unwrap_err();
    assert!(matches!(err, DbError::Connect { .. }), "{dsn}: {err:?}");
    assert!(!err.may_have_run(), "{err}");
    err
}

/// `mysql://root@127.0.0.1:3306/test` with the user, password or database replaced.
fn mysql_with(user_and_password: &str, database: &str) -> String {
    let base = mysql_url();
    let (scheme, rest) = base.split_once("://").unwrap();
    let (_, host_and_db) = rest.split_once('@').unwrap();
    let (host, _) = host_and_db.split_once('/').unwrap();
    format!("{scheme}://{user_and_password}@{host}/{database}")
}

#[tokio::test]
async fn mysql_wrong_password_is_not_retryable() {
    let err = connect_error(&mysql_with("root:certainly-wrong", "test")).await;
    assert!(err.to_string().contains("1045"), "{err}");
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn mysql_unknown_database_is_not_retryable() {
    let err = connect_error(&mysql_with("root", "no_such_database_ll")).await;
    assert!(err.to_string().contains("1049"), "{err}");
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn postgres_unknown_role_is_not_retryable() {
    // The server trusts local connections, so a wrong password is not checked; an unknown
    // role is refused with the same SQLSTATE class (28).
    let base = postgres_url();
    let dsn = base.replacen("postgres@", "no_such_role_ll@", 1);
    assert_ne!(dsn, base, "the test DSN names the postgres user");
    let err = connect_error(&dsn).await;
    assert!(err.to_string().contains("no_such_role_ll"), "{err}");
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn postgres_unknown_database_is_not_retryable() {
    let base = postgres_url();
    let (server, _) = base.rsplit_once('/').unwrap();
    let err = connect_error(&format!("{server}/no_such_database_ll")).await;
    assert!(err.to_string().contains("no_such_database_ll"), "{err}");
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn unreachable_database_is_retryable_and_says_each_cause_once() {
    // Nothing listens on port 9 of 127.0.0.1.
    for dsn in [
        "mysql://root@127.0.0.1:9/test",
        "postgres://postgres@127.0.0.1:9/test",
    ] {
        let err = connect_error(dsn).await;
        assert!(err.is_retryable(), "{err}");
        let text = err.to_string();
        assert_eq!(
            text.matches("Input/output error").count(),
            usize::from(dsn.starts_with("mysql")),
            "{text}"
        );
        assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
        assert!(text.starts_with("connect failed: "), "{text}");
    }
}
