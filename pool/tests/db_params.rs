//! Parameters are checked against the statement's placeholders on every driver before
//! anything is sent: a missing one is not bound as NULL (SQLite did), and a placeholder in
//! another database's style is refused by name.

mod common;

use common::db::{mysql_url, postgres_url, sql, sqlite_url, unique};
use longlink_pool::db::{Db, DbError, Driver};

fn all() -> Vec<(Db, Option<tempfile::TempDir>)> {
    let (dir, url) = sqlite_url();
    vec![
        (Db::open(&mysql_url()).unwrap(), None),
        (Db::open(&postgres_url()).unwrap(), None),
        (Db::open(&url).unwrap(), Some(dir)),
    ]
}

#[tokio::test]
async fn sqlite_missing_parameter_is_refused_not_bound_as_null() {
    let (_dir, url) = sqlite_url();
    let db = Db::open(&url).unwrap();
    db.exec("CREATE TABLE t (a INTEGER, b TEXT)", ())
        .await
        .unwrap();
    let err = db
        .exec("INSERT INTO t (a, b) VALUES (?, ?)", (1,))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::ParamCount {
                expected: 2,
                given: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "statement has 2 placeholders but 1 parameter was given"
    );
    assert!(!err.may_have_run() && !err.is_retryable());
    let (rows,): (i64,) = db.query_one("SELECT COUNT(*) FROM t", ()).await.unwrap();
    assert_eq!(rows, 0, "nothing was inserted");
}

#[tokio::test]
async fn dollar_placeholder_on_mysql_and_sqlite_is_refused_saying_use_question_mark() {
    let (_dir, url) = sqlite_url();
    for db in [Db::open(&mysql_url()).unwrap(), Db::open(&url).unwrap()] {
        let err = db.query("SELECT $1", (1,)).await.unwrap_err();
        assert!(matches!(err, DbError::Placeholder { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("`$1`") && text.contains("use `?`"), "{text}");
        assert!(text.contains(&db.driver().to_string()), "{text}");
    }
}

#[tokio::test]
async fn question_mark_on_postgres_says_use_dollar_numbers() {
    let db = Db::open(&postgres_url()).unwrap();
    let err = db.query("SELECT ?", (1,)).await.unwrap_err();
    assert!(matches!(err, DbError::Placeholder { .. }), "{err:?}");
    assert!(err.to_string().contains("`$1`"), "{err}");
    // `?` is also a JSON operator there: with matching parameters it runs.
    let (has,): (bool,) = db
        .query_one("SELECT $1::jsonb ? 'a'", (r#"{"a": 1}"#,))
        .await
        .unwrap();
    assert!(has);
}

#[tokio::test]
async fn wrong_parameter_count_is_refused_on_every_driver_without_a_connection() {
    for (db, _dir) in all() {
        let two = sql(&db, "SELECT ?, ?");
        for given in [vec![1], vec![1, 2, 3]] {
            let n = given.len();
            let values = given
                .into_iter()
                .map(longlink_pool::db::Value::I64)
                .collect::<Vec<_>>();
            let err = db.query(&two, values).await.unwrap_err();
            assert!(
                matches!(err, DbError::ParamCount { expected: 2, given } if given == n),
                "{:?}: {err:?}",
                db.driver()
            );
        }
        // PostgreSQL refused this with a protocol error that read as a broken connection
        // that may have run; now no connection was even borrowed.
        assert_eq!(db.stats().connects, 0, "{:?}", db.driver());
    }
}

#[tokio::test]
async fn placeholders_in_literals_identifiers_and_comments_are_not_counted() {
    for (db, _dir) in all() {
        let text = match db.driver() {
            Driver::Mysql => {
                "SELECT '?', \"?\", `?` FROM (SELECT 1 AS `?`) t -- ?\n WHERE 1 = ? # ?"
            }
            Driver::Postgres => {
                "SELECT '$2', $tag$ $3 $tag$, \"$1\" FROM (SELECT 1 AS \"$1\") t -- $4\n WHERE 1 = $1 /* $5 /* $6 */ */"
            }
            Driver::Sqlite => {
                "SELECT '?', \"?\", [?] FROM (SELECT 1 AS [?]) -- ?\n WHERE 1 = ? /* :x */"
            }
        };
        let rows = db.query(text, (1,)).await.unwrap();
        assert_eq!(rows.len(), 1, "{:?}", db.driver());
    }
}

#[tokio::test]
async fn sqlite_named_and_numbered_placeholders_bind_as_sqlite_numbers_them() {
    let (_dir, url) = sqlite_url();
    let db = Db::open(&url).unwrap();
    // Named parameters are numbered by first appearance; a repeated name is one parameter.
    let (a, b, a_again): (String, String, String) =
        db.query_one("SELECT :a, @b, :a", ("x", "y")).await.unwrap();
    assert_eq!((a.as_str(), b.as_str(), a_again.as_str()), ("x", "y", "x"));
    // `?` after `?2` is parameter 3, as in SQLite itself.
    let (second, third, first): (i64, i64, i64) =
        db.query_one("SELECT ?2, ?, ?1", (1, 2, 3)).await.unwrap();
    assert_eq!((second, third, first), (2, 3, 1));
    let err = db.query("SELECT ?3", (1,)).await.unwrap_err();
    assert!(
        matches!(
            err,
            DbError::ParamCount {
                expected: 3,
                given: 1
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_parameter_count_in_a_transaction_is_refused_and_the_transaction_goes_on() {
    let db = Db::open(&mysql_url()).unwrap();
    let t = unique("params_tx");
    db.exec(&format!("CREATE TABLE {t} (n INT)"), ())
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    let insert = format!("INSERT INTO {t} (n) VALUES (?)");
    let err = tx.exec(&insert, ()).await.unwrap_err();
    assert!(
        matches!(
            err,
            DbError::ParamCount {
                expected: 1,
                given: 0
            }
        ),
        "{err:?}"
    );
    tx.exec(&insert, (7,)).await.unwrap();
    tx.commit().await.unwrap();
    let (n,): (i64,) = db
        .query_one(&format!("SELECT n FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!(n, 7);
    db.exec(&format!("DROP TABLE {t}"), ()).await.unwrap();
}
