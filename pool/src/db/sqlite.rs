//! SQLite through `sqlx`, bundled (`sqlite://path/to/file.db`, `sqlite::memory:`): the
//! embedded default.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, Executor, Row as _, TypeInfo, ValueRef,
};

use super::sqlx_error::classify;
use super::statement::Statement;
use super::{DbError, ExecResult, Row, Value};
use crate::Manager;

/// Opens `sqlx` SQLite connections for a [`Pool`](crate::Pool).
///
/// The database file is created if missing (as Go's SQLite drivers do). Each connection to
/// `sqlite::memory:` is its own empty database: give such a pool `max_open(1)`, or use a
/// file.
///
/// ```
/// use longlink_pool::db::SqliteManager;
/// assert!(SqliteManager::new("sqlite://data/app.db").is_ok());
/// assert!(SqliteManager::new("sqlite://data/app.db?mode=sideways").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct SqliteManager {
    options: SqliteConnectOptions,
}

impl SqliteManager {
    /// Reads and checks the DSN; opens nothing.
    pub fn new(dsn: &str) -> Result<SqliteManager, DbError> {
        let options = SqliteConnectOptions::from_str(dsn)
            .map_err(|e| DbError::BadDsn {
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            // Readers do not block the writer, and a busy database waits a little instead
            // of failing at once.
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        Ok(SqliteManager { options })
    }

    /// The connection options.
    pub fn options(&self) -> &SqliteConnectOptions {
        &self.options
    }
}

impl Manager for SqliteManager {
    type Connection = SqliteConnection;
    type Error = sqlx::Error;

    async fn connect(&self) -> Result<SqliteConnection, sqlx::Error> {
        self.options.connect().await
    }

    async fn check(&self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        conn.ping().await
    }

    async fn reset(&self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        match conn.execute("ROLLBACK").await {
            Ok(_) => Ok(()),
            // "cannot rollback - no transaction is active": already clean.
            Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

fn bind<'q>(mut query: SqliteQuery<'q>, values: &[Value]) -> SqliteQuery<'q> {
    for value in values {
        query = match value {
            Value::Null => query.bind(None::<i64>),
            Value::Bool(b) => query.bind(*b),
            Value::I64(i) => query.bind(*i),
            Value::U64(u) => match i64::try_from(*u) {
                Ok(i) => query.bind(i),
                Err(_) => query.bind(u.to_string()),
            },
            Value::F64(f) => query.bind(*f),
            Value::Text(t) => query.bind(t.clone()),
            Value::Bytes(b) => query.bind(b.clone()),
        };
    }
    query
}

fn decode(row: &SqliteRow, i: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // SQLite is dynamically typed: read the value by its own storage class.
    let type_name = raw.type_info().name().to_owned();
    let get = |e: sqlx::Error| e.to_string();
    Ok(match type_name.as_str() {
        "INTEGER" | "BOOLEAN" => Value::I64(row.try_get_unchecked(i).map_err(get)?),
        "REAL" => Value::F64(row.try_get_unchecked(i).map_err(get)?),
        "BLOB" => Value::Bytes(row.try_get_unchecked(i).map_err(get)?),
        _ => Value::Text(row.try_get_unchecked(i).map_err(get)?),
    })
}

fn convert_rows(rows: Vec<SqliteRow>) -> Result<Vec<Row>, DbError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let names: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    rows.iter()
        .map(|row| {
            let values = (0..names.len())
                .map(|i| {
                    decode(row, i).map_err(|reason| DbError::Decode {
                        column: names[i].clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Row::new(Arc::clone(&names), values))
        })
        .collect()
}

pub(crate) async fn exec(
    conn: &mut SqliteConnection,
    stmt: &Statement<'_>,
) -> Result<ExecResult, DbError> {
    let done = bind(
        sqlx::query(AssertSqlSafe(stmt.sql().to_owned())),
        stmt.values(),
    )
    .execute(conn)
    .await
    .map_err(classify)?;
    let id = done.last_insert_rowid();
    Ok(ExecResult {
        rows_affected: done.rows_affected(),
        last_insert_id: u64::try_from(id).ok().filter(|&id| id > 0),
    })
}

pub(crate) async fn query(
    conn: &mut SqliteConnection,
    stmt: &Statement<'_>,
) -> Result<Vec<Row>, DbError> {
    let rows = bind(
        sqlx::query(AssertSqlSafe(stmt.sql().to_owned())),
        stmt.values(),
    )
    .fetch_all(conn)
    .await
    .map_err(classify)?;
    convert_rows(rows)
}

pub(crate) async fn ping(conn: &mut SqliteConnection) -> Result<(), DbError> {
    conn.ping().await.map_err(classify)
}

pub(crate) async fn begin(conn: &mut SqliteConnection) -> Result<(), DbError> {
    conn.execute("BEGIN").await.map(drop).map_err(classify)
}

pub(crate) async fn commit(conn: &mut SqliteConnection) -> Result<(), DbError> {
    conn.execute("COMMIT").await.map(drop).map_err(classify)
}

pub(crate) async fn rollback(conn: &mut SqliteConnection) -> Result<(), DbError> {
    conn.execute("ROLLBACK").await.map(drop).map_err(classify)
}
