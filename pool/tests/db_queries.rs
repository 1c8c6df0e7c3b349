//! exec / query / query_as / query_one and the value mapping, on all three databases.

mod common;

use common::db::{mysql_url, postgres_url, sql, sqlite_url, unique};
use longlink_pool::db::{Db, DbError, Driver, FromRow, Row, Value};

#[derive(Debug, PartialEq)]
struct Item {
    id: i64,
    name: String,
    price: f64,
    data: Option<Vec<u8>>,
}

impl FromRow for Item {
    fn from_row(row: &Row) -> Result<Item, DbError> {
        Ok(Item {
            id: row.get("id")?,
            name: row.get("name")?,
            price: row.get("price")?,
            data: row.get("data")?,
        })
    }
}

async fn round_trip(db: Db) {
    let t = unique("items");
    let (int, real, text, bytes) = match db.driver() {
        Driver::Mysql => ("BIGINT", "DOUBLE", "VARCHAR(100)", "BLOB"),
        Driver::Postgres => ("BIGINT", "DOUBLE PRECISION", "TEXT", "BYTEA"),
        Driver::Sqlite => ("INTEGER", "REAL", "TEXT", "BLOB"),
    };
    db.exec(&format!("CREATE TABLE {t} (id {int} PRIMARY KEY, name {text} NOT NULL, price {real}, data {bytes})"), ())
        .await
        .unwrap();
    let insert = sql(
        &db,
        &format!("INSERT INTO {t} (id, name, price, data) VALUES (?, ?, ?, ?)"),
    );
    let done = db
        .exec(&insert, (1, "apple", 1.5, Some(vec![0u8, 255, 7])))
        .await
        .unwrap();
    assert_eq!(done.rows_affected, 1);
    db.exec(&insert, (2i64, "pear".to_owned(), 2.25f64, None::<Vec<u8>>))
        .await
        .unwrap();

    let items: Vec<Item> = db
        .query_as(
            &format!("SELECT id, name, price, data FROM {t} ORDER BY id"),
            (),
        )
        .await
        .unwrap();
    assert_eq!(
        items,
        vec![
            Item {
                id: 1,
                name: "apple".into(),
                price: 1.5,
                data: Some(vec![0, 255, 7])
            },
            Item {
                id: 2,
                name: "pear".into(),
                price: 2.25,
                data: None
            },
        ]
    );

    let by_id = sql(&db, &format!("SELECT name, price FROM {t} WHERE id = ?"));
    let (name, price): (String, f64) = db.query_one(&by_id, (2,)).await.unwrap();
    assert_eq!((name.as_str(), price), ("pear", 2.25));
    assert!(matches!(
        db.query_one::<(String,)>(&by_id, (99,)).await,
        Err(DbError::NoRows)
    ));

    let rows = db
        .query(&format!("SELECT id, data FROM {t} WHERE id = 2"), ())
        .await
        .unwrap();
    assert_eq!(rows[0].values()[1], Value::Null);
    assert!(matches!(
        rows[0].get::<i64>("nope"),
        Err(DbError::ColumnNotFound { .. })
    ));
    assert!(
        matches!(rows[0].get::<String>(1), Err(DbError::Decode { .. })),
        "NULL is not a String"
    );

    // A constraint violation: refused, typed, with the database's code, did not run.
    let err = db
        .exec(&insert, (1, "dup", 0.0, None::<Vec<u8>>))
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Query { .. }), "{err:?}");
    assert!(err.code().is_some() && !err.may_have_run());

    let updated = db
        .exec(
            &sql(
                &db,
                &format!("UPDATE {t} SET price = price * ? WHERE id > ?"),
            ),
            (2, 0),
        )
        .await
        .unwrap();
    assert_eq!(updated.rows_affected, 2);
    db.exec(&format!("DROP TABLE {t}"), ()).await.unwrap();
    assert_eq!(db.stats().in_use, 0);
}

#[tokio::test]
async fn mysql_values_round_trip() {
    round_trip(Db::open(&mysql_url()).unwrap()).await;
}

#[tokio::test]
async fn postgres_values_round_trip() {
    round_trip(Db::open(&postgres_url()).unwrap()).await;
}

#[tokio::test]
async fn sqlite_values_round_trip() {
    let (_dir, url) = sqlite_url();
    round_trip(Db::open(&url).unwrap()).await;
}

#[tokio::test]
async fn mysql_insert_reports_the_generated_id_and_reads_unsigned_and_text_types() {
    let db = Db::open(&mysql_url()).unwrap();
    let t = unique("auto");
    db.exec(&format!("CREATE TABLE {t} (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, d DECIMAL(10,2), at DATETIME)"), ())
        .await
        .unwrap();
    let done = db
        .exec(
            &format!("INSERT INTO {t} (d, at) VALUES (12.5, '2026-11-25 10:00:00')"),
            (),
        )
        .await
        .unwrap();
    assert_eq!(done.last_insert_id, Some(1));
    let rows = db
        .query(&format!("SELECT id, d, at FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!(
        rows[0].values(),
        &[
            Value::U64(1),
            Value::Text("12.50".into()),
            Value::Text("2026-11-25 10:00:00".into())
        ]
    );
    // The binary protocol (with parameters) reads the same.
    let rows = db
        .query(&format!("SELECT id, d, at FROM {t} WHERE id = ?"), (1,))
        .await
        .unwrap();
    assert_eq!(
        rows[0].values(),
        &[
            Value::U64(1),
            Value::Text("12.50".into()),
            Value::Text("2026-11-25 10:00:00".into())
        ]
    );
    db.exec(&format!("DROP TABLE {t}"), ()).await.unwrap();
}

#[tokio::test]
async fn postgres_untyped_null_parameter_is_inferred_from_the_column() {
    let db = Db::open(&postgres_url()).unwrap();
    let t = unique("nulls");
    db.exec(&format!("CREATE TABLE {t} (n INTEGER, s TEXT)"), ())
        .await
        .unwrap();
    db.exec(
        &format!("INSERT INTO {t} (n, s) VALUES ($1, $2)"),
        (None::<i64>, None::<String>),
    )
    .await
    .unwrap();
    let (n, s): (Option<i64>, Option<String>) = db
        .query_one(&format!("SELECT n, s FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!((n, s), (None, None));
    // An unmapped type says how to read it.
    let err = db.query("SELECT now()", ()).await.unwrap_err();
    assert!(err.to_string().contains("cast it in SQL"), "{err}");
    db.exec(&format!("DROP TABLE {t}"), ()).await.unwrap();
}

async fn scalars_and_optional_rows(db: Db) {
    let t = unique("scalars");
    db.exec(
        &format!("CREATE TABLE {t} (id BIGINT, name VARCHAR(20))"),
        (),
    )
    .await
    .unwrap();
    let insert = sql(&db, &format!("INSERT INTO {t} (id, name) VALUES (?, ?)"));
    db.exec(&insert, (1, "ada")).await.unwrap();
    db.exec(&insert, (2, None::<String>)).await.unwrap();

    // A single value reads a one-column row; tuples keep working.
    let count: i64 = db
        .query_one(&format!("SELECT COUNT(*) FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!(count, 2);
    let (tuple,): (i64,) = db
        .query_one(&format!("SELECT COUNT(*) FROM {t}"), ())
        .await
        .unwrap();
    assert_eq!(tuple, 2);
    let ids: Vec<i64> = db
        .query_as(&format!("SELECT id FROM {t} ORDER BY id"), ())
        .await
        .unwrap();
    assert_eq!(ids, [1, 2]);
    let by_id = sql(&db, &format!("SELECT name FROM {t} WHERE id = ?"));
    let name: Option<String> = db.query_one(&by_id, (2,)).await.unwrap();
    assert_eq!(name, None, "NULL reads as None");

    // More than one column is a mistake, and the error names it.
    let err = db
        .query_one::<i64>(&format!("SELECT id, name FROM {t}"), ())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DbError::ColumnCount {
                found: 2,
                wanted: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot read a row of 2 columns as i64 (1 wanted)"
    );

    // An optional row: Some for a row, None for none.
    let found: Option<String> = db.query_optional(&by_id, (1,)).await.unwrap();
    assert_eq!(found.as_deref(), Some("ada"));
    let missing: Option<String> = db.query_optional(&by_id, (99,)).await.unwrap();
    assert_eq!(missing, None);
    let row: Option<(i64, Option<String>)> = db
        .query_optional(
            &sql(&db, &format!("SELECT id, name FROM {t} WHERE id = ?")),
            (2,),
        )
        .await
        .unwrap();
    assert_eq!(row, Some((2, None)));
    db.exec(&format!("DROP TABLE {t}"), ()).await.unwrap();
}

#[tokio::test]
async fn mysql_query_one_reads_a_scalar_and_query_optional_a_missing_row() {
    scalars_and_optional_rows(Db::open(&mysql_url()).unwrap()).await;
}

#[tokio::test]
async fn postgres_query_one_reads_a_scalar_and_query_optional_a_missing_row() {
    scalars_and_optional_rows(Db::open(&postgres_url()).unwrap()).await;
}

#[tokio::test]
async fn sqlite_query_one_reads_a_scalar_and_query_optional_a_missing_row() {
    let (_dir, url) = sqlite_url();
    scalars_and_optional_rows(Db::open(&url).unwrap()).await;
}
