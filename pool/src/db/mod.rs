//! The database layer: `Db::open(dsn)` → exec, query, transactions, on MySQL/MariaDB,
//! PostgreSQL or SQLite, with Go `database/sql` semantics.
//!
//! ```no_run
//! use longlink_pool::db::Db;
//! # async fn run() -> Result<(), longlink_pool::db::DbError> {
//! let db = Db::open("sqlite://data/app.db")?; // checks the DSN, connects to nothing
//! db.exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)", ()).await?;
//! db.exec("INSERT INTO kv (k, v) VALUES (?, ?)", ("a", "1")).await?;
//! let (_v,): (String,) = db.query_one("SELECT v FROM kv WHERE k = ?", ("a",)).await?;
//! let mut tx = db.begin().await?; // one connection until commit or rollback
//! tx.exec("DELETE FROM kv", ()).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```

#[cfg(any(feature = "bb8", feature = "deadpool"))]
mod adapters;
mod error;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sqlx_error;
mod tx;
mod value;

use std::fmt;

pub use error::{Cause, DbError};
#[cfg(feature = "mysql")]
pub use mysql::MysqlManager;
#[cfg(feature = "postgres")]
pub use postgres::PgManager;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteManager;
pub use tx::{DbConn, Tx};
pub use value::{ColumnIndex, ExecResult, FromRow, FromValue, Params, Row, ToValue, Value};

use crate::{Builder, Options, Pool, PooledConn, Stats};

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// MySQL or MariaDB (`mysql://`).
    Mysql,
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// SQLite (`sqlite:`).
    Sqlite,
}

#[derive(Clone)]
enum Backend {
    #[cfg(feature = "mysql")]
    Mysql(Pool<MysqlManager>),
    #[cfg(feature = "postgres")]
    Postgres(Pool<PgManager>),
    #[cfg(feature = "sqlite")]
    Sqlite(Pool<SqliteManager>),
}

/// A connection of whichever driver, borrowed from the pool.
pub(crate) enum AnyConn {
    #[cfg(feature = "mysql")]
    Mysql(PooledConn<MysqlManager>),
    #[cfg(feature = "postgres")]
    Postgres(PooledConn<PgManager>),
    #[cfg(feature = "sqlite")]
    Sqlite(PooledConn<SqliteManager>),
}

/// Runs `$body` with `$c` bound to the driver's pooled connection and `$driver` to the
/// driver's module.
macro_rules! with_conn {
    ($conn:expr, |$c:ident, $driver:ident| $body:expr) => {
        match $conn {
            #[cfg(feature = "mysql")]
            AnyConn::Mysql($c) => {
                use self::mysql as $driver;
                $body
            }
            #[cfg(feature = "postgres")]
            AnyConn::Postgres($c) => {
                use self::postgres as $driver;
                $body
            }
            #[cfg(feature = "sqlite")]
            AnyConn::Sqlite($c) => {
                use self::sqlite as $driver;
                $body
            }
        }
    };
}

macro_rules! with_pooled {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            #[cfg(feature = "mysql")]
            AnyConn::Mysql($c) => $body,
            #[cfg(feature = "postgres")]
            AnyConn::Postgres($c) => $body,
            #[cfg(feature = "sqlite")]
            AnyConn::Sqlite($c) => $body,
        }
    };
}

macro_rules! with_pool {
    ($backend:expr, |$p:ident| $body:expr) => {
        match $backend {
            #[cfg(feature = "mysql")]
            Backend::Mysql($p) => $body,
            #[cfg(feature = "postgres")]
            Backend::Postgres($p) => $body,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($p) => $body,
        }
    };
}

/// Runs one statement on a pooled connection. While it runs the connection is marked
/// broken, so a future dropped mid-statement closes it instead of returning a connection
/// in an unknown protocol state; the mark is lifted unless the statement broke it.
macro_rules! guarded {
    ($c:ident, $op:expr) => {{
        $c.mark_broken();
        let result = $op.await;
        if !matches!(&result, Err(e) if e.is_broken()) {
            $c.unmark_broken();
        }
        result
    }};
}

impl AnyConn {
    pub(crate) async fn exec(
        &mut self,
        sql: &str,
        values: &[Value],
    ) -> Result<ExecResult, DbError> {
        with_conn!(self, |c, driver| guarded!(c, driver::exec(c, sql, values)))
    }

    pub(crate) async fn query(&mut self, sql: &str, values: &[Value]) -> Result<Vec<Row>, DbError> {
        with_conn!(self, |c, driver| guarded!(c, driver::query(c, sql, values)))
    }

    pub(crate) async fn ping(&mut self) -> Result<(), DbError> {
        with_conn!(self, |c, driver| guarded!(c, driver::ping(c)))
    }

    pub(crate) async fn begin(&mut self) -> Result<(), DbError> {
        with_conn!(self, |c, driver| guarded!(c, driver::begin(c)))
    }

    pub(crate) async fn commit(&mut self) -> Result<(), DbError> {
        with_conn!(self, |c, driver| guarded!(c, driver::commit(c)))
    }

    pub(crate) async fn rollback(&mut self) -> Result<(), DbError> {
        with_conn!(self, |c, driver| guarded!(c, driver::rollback(c)))
    }

    pub(crate) fn mark_dirty(&mut self) {
        with_pooled!(self, |c| c.mark_dirty())
    }

    pub(crate) fn mark_clean(&mut self) {
        with_pooled!(self, |c| c.mark_clean())
    }
}

/// A handle to a database: a [`Pool`] of connections plus the calls that borrow one per
/// statement. Cheap to clone.
///
/// Like Go's `sql.DB`: [`open`](Db::open) checks the DSN and returns at once; each call
/// borrows a connection and gives it back; [`begin`](Db::begin) keeps one for the
/// transaction; a call whose connection turns out dead **before its statement was sent**
/// is retried on another connection (twice on a cached-or-new one, then once on a new one),
/// and one that may have run is not retried and says so ([`DbError::may_have_run`]).
#[derive(Clone)]
pub struct Db {
    backend: Backend,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("driver", &self.driver())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Go's rule: two tries on a cached-or-new connection, then one on a forced new one.
const CACHED_TRIES: usize = 2;

impl Db {
    /// Opens a handle for `dsn` with the default pool [`Options`]: checks the DSN, picks the
    /// driver by scheme (`mysql://`, `postgres://`, `sqlite:`), connects to nothing.
    pub fn open(dsn: &str) -> Result<Db, DbError> {
        Db::open_with(dsn, Options::default())
    }

    /// A builder for the pool options, ending in [`open`](Builder::open).
    ///
    /// ```
    /// let db = longlink_pool::db::Db::builder().max_open(4).open("sqlite::memory:").unwrap();
    /// assert_eq!(db.stats().max_open, 4);
    /// ```
    pub fn builder() -> Builder<Db> {
        Builder::default()
    }

    /// Like [`open`](Db::open) with explicit pool options.
    pub fn open_with(dsn: &str, options: Options) -> Result<Db, DbError> {
        let scheme = dsn
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .ok_or_else(|| DbError::BadDsn {
                reason: "no scheme (expected mysql://, postgres:// or sqlite:)".to_owned(),
            })?;
        let backend = match scheme.as_str() {
            #[cfg(feature = "mysql")]
            "mysql" | "mariadb" => Backend::Mysql(Pool::new(
                MysqlManager::new(&dsn.replacen(&scheme, "mysql", 1))?,
                options,
            )),
            #[cfg(not(feature = "mysql"))]
            "mysql" | "mariadb" => {
                return Err(DbError::DriverNotEnabled {
                    scheme: "mysql",
                    feature: "mysql",
                });
            }
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => {
                Backend::Postgres(Pool::new(PgManager::new(dsn)?, options))
            }
            #[cfg(not(feature = "postgres"))]
            "postgres" | "postgresql" => {
                return Err(DbError::DriverNotEnabled {
                    scheme: "postgres",
                    feature: "postgres",
                });
            }
            #[cfg(feature = "sqlite")]
            "sqlite" => Backend::Sqlite(Pool::new(SqliteManager::new(dsn)?, options)),
            #[cfg(not(feature = "sqlite"))]
            "sqlite" => {
                return Err(DbError::DriverNotEnabled {
                    scheme: "sqlite",
                    feature: "sqlite",
                });
            }
            other => {
                return Err(DbError::UnsupportedScheme {
                    scheme: other.to_owned(),
                });
            }
        };
        Ok(Db { backend })
    }

    /// The driver in use.
    pub fn driver(&self) -> Driver {
        match &self.backend {
            #[cfg(feature = "mysql")]
            Backend::Mysql(_) => Driver::Mysql,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => Driver::Postgres,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => Driver::Sqlite,
        }
    }

    /// The pool's counters.
    pub fn stats(&self) -> Stats {
        with_pool!(&self.backend, |p| p.stats())
    }

    /// Closes the pool (see [`Pool::close`]).
    pub fn close(&self) {
        with_pool!(&self.backend, |p| p.close())
    }

    /// Resolves when every connection is closed after [`close`](Db::close).
    pub async fn wait_closed(&self) {
        with_pool!(&self.backend, |p| p.wait_closed().await)
    }

    /// The MySQL pool, when this handle drives MySQL (for benchmarks and adapters).
    #[cfg(feature = "mysql")]
    pub fn mysql_pool(&self) -> Option<&Pool<MysqlManager>> {
        match &self.backend {
            Backend::Mysql(p) => Some(p),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    #[track_caller]
    fn acquire(&self, fresh: bool) -> impl Future<Output = Result<AnyConn, DbError>> + Send + '_ {
        let location = std::panic::Location::caller();
        async move {
            Ok(match &self.backend {
                #[cfg(feature = "mysql")]
                Backend::Mysql(p) => AnyConn::Mysql(p.acquire_with(fresh, location).await?),
                #[cfg(feature = "postgres")]
                Backend::Postgres(p) => AnyConn::Postgres(p.acquire_with(fresh, location).await?),
                #[cfg(feature = "sqlite")]
                Backend::Sqlite(p) => AnyConn::Sqlite(p.acquire_with(fresh, location).await?),
            })
        }
    }

    /// Runs a statement that returns no rows (INSERT, UPDATE, DELETE, DDL).
    pub async fn exec(&self, sql: &str, params: impl Params) -> Result<ExecResult, DbError> {
        let values = params.into_values();
        let mut attempt = 0;
        loop {
            let mut conn = self.acquire(attempt >= CACHED_TRIES).await?;
            match conn.exec(sql, &values).await {
                Err(e) if retry(&e, attempt) => attempt += 1,
                result => return result,
            }
        }
    }

    /// Runs a query and returns every row.
    pub async fn query(&self, sql: &str, params: impl Params) -> Result<Vec<Row>, DbError> {
        let values = params.into_values();
        let mut attempt = 0;
        loop {
            let mut conn = self.acquire(attempt >= CACHED_TRIES).await?;
            match conn.query(sql, &values).await {
                Err(e) if retry(&e, attempt) => attempt += 1,
                result => return result,
            }
        }
    }

    /// Runs a query and reads every row as `T` (a tuple, or your [`FromRow`] type).
    pub async fn query_as<T: FromRow>(
        &self,
        sql: &str,
        params: impl Params,
    ) -> Result<Vec<T>, DbError> {
        self.query(sql, params)
            .await?
            .iter()
            .map(T::from_row)
            .collect()
    }

    /// Runs a query and reads its first row as `T`; no row is [`DbError::NoRows`].
    pub async fn query_one<T: FromRow>(
        &self,
        sql: &str,
        params: impl Params,
    ) -> Result<T, DbError> {
        let rows = self.query(sql, params).await?;
        T::from_row(rows.first().ok_or(DbError::NoRows)?)
    }

    /// Checks that the database answers (connecting if needed).
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut attempt = 0;
        loop {
            let mut conn = self.acquire(attempt >= CACHED_TRIES).await?;
            match conn.ping().await {
                Err(e) if retry(&e, attempt) => attempt += 1,
                result => return result,
            }
        }
    }

    /// Starts a transaction on one connection, kept until [`Tx::commit`] or
    /// [`Tx::rollback`]. A `Tx` dropped without either is rolled back before its connection
    /// is used again.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        let mut attempt = 0;
        loop {
            let mut conn = self.acquire(attempt >= CACHED_TRIES).await?;
            match conn.begin().await {
                Ok(()) => return Ok(Tx::new(conn)),
                Err(e) if retry(&e, attempt) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// One dedicated connection, for statements that must share a session.
    pub async fn conn(&self) -> Result<DbConn, DbError> {
        Ok(DbConn::new(self.acquire(false).await?))
    }
}

/// Retry only what provably did not run, and only as often as Go does.
fn retry(error: &DbError, attempt: usize) -> bool {
    error.is_broken() && !error.may_have_run() && attempt < CACHED_TRIES
}

impl Builder<Db> {
    /// Opens a [`Db`] for `dsn` with these options (see [`Db::open`]).
    pub fn open(self, dsn: &str) -> Result<Db, DbError> {
        Db::open_with(dsn, self.options())
    }
}
