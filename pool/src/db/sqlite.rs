//! SQLite through `sqlx`, bundled (`sqlite://path/to/file.db`, `sqlite://:memory:`): the
//! embedded default.

use std::str::FromStr;

use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqliteQueryResult, SqliteRow};
use sqlx::{ConnectOptions, Connection, Executor, Row as _};

use super::sqlx_driver::{Dialect, SqlxQuery, bind_non_null, type_name};
use super::{DbError, ExecResult, Value};
use crate::Manager;

/// Opens `sqlx` SQLite connections for a [`Pool`](crate::Pool).
///
/// The database file is created if missing (as Go's SQLite drivers do). The connections
/// of one manager to `sqlite://:memory:` share one database (sqlx opens it by a name of its
/// own, with a shared cache), which lives only while one of them is open: once the pool
/// has closed them all (idle time, lifetime), its tables are gone. For data that must
/// stay, use a file.
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

impl Dialect for Sqlite {
    fn executor<'c>(conn: &'c mut SqliteConnection) -> impl Executor<'c, Database = Sqlite> {
        conn
    }

    fn bind<'q>(query: SqlxQuery<'q, Sqlite>, value: &Value) -> SqlxQuery<'q, Sqlite> {
        match value {
            Value::Null => query.bind(None::<i64>),
            value => bind_non_null(query, value),
        }
    }

    fn decode(row: &SqliteRow, i: usize) -> Result<Value, String> {
        let Some(type_name) = type_name(row, i)? else {
            return Ok(Value::Null);
        };
        // SQLite is dynamically typed: read the value by its own storage class.
        let get = |e: sqlx::Error| e.to_string();
        Ok(match type_name.as_str() {
            "INTEGER" | "BOOLEAN" => Value::I64(row.try_get_unchecked(i).map_err(get)?),
            "REAL" => Value::F64(row.try_get_unchecked(i).map_err(get)?),
            "BLOB" => Value::Bytes(row.try_get_unchecked(i).map_err(get)?),
            _ => Value::Text(row.try_get_unchecked(i).map_err(get)?),
        })
    }

    fn exec_result(done: &SqliteQueryResult) -> ExecResult {
        ExecResult {
            rows_affected: done.rows_affected(),
            last_insert_id: u64::try_from(done.last_insert_rowid())
                .ok()
                .filter(|&id| id > 0),
        }
    }
}
