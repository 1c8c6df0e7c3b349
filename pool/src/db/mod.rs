//! The database layer: `Db::open(dsn)` → exec, query, transactions, on MySQL/MariaDB,
//! PostgreSQL or SQLite, with Go `database/sql` semantics.
//!
//! [`Db`], [`Tx`] and [`DbConn`] run statements through one trait, [`Executor`]: a helper
//! that takes `impl Executor` runs on any of them (see the trait for who retries what).
//!
//! ```no_run
//! use longlink_pool::db::Db;
//! # async fn run() -> Result<(), longlink_pool::db::DbError> {
//! let db = Db::open("sqlite://data/app.db")?; // checks the DSN, connects to nothing
//! db.exec("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)", ()).await?;
//! db.exec("INSERT INTO kv (k, v) VALUES (?, ?)", ("a", "1")).await?;
//! let v: String = db.query_one("SELECT v FROM kv WHERE k = ?", ("a",)).await?;
//! let mut tx = db.begin().await?; // one connection until commit or rollback
//! tx.exec("DELETE FROM kv", ()).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```

#[cfg(any(feature = "bb8", feature = "deadpool"))]
mod adapters;
mod any_conn;
mod error;
mod executor;
#[cfg(feature = "mysql")]
mod mysql;
mod placeholders;
#[cfg(feature = "postgres")]
mod postgres;
mod retry;
mod row;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sqlx_driver;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sqlx_error;
mod statement;
mod tx;
mod value;

use std::fmt;

pub use error::{Cause, DbError};
pub use executor::Executor;
#[cfg(feature = "mysql")]
pub use mysql::MysqlManager;
#[cfg(feature = "postgres")]
pub use postgres::PgManager;
pub use row::{ColumnIndex, ExecResult, FromRow, Row};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteManager;
pub use tx::{DbConn, Tx};
pub use value::{FromValue, Params, ToValue, Value};

use crate::{Builder, Options, Pool, Stats};

/// Which database a [`Db`] talks to.
///
/// ```
/// use longlink_pool::db::{Db, Driver};
/// let db = Db::open("sqlite://:memory:").unwrap();
/// assert_eq!(db.driver(), Driver::Sqlite);
/// assert_eq!(Driver::Postgres.to_string(), "PostgreSQL");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// MySQL or MariaDB (`mysql://`).
    Mysql,
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// SQLite (`sqlite://`).
    Sqlite,
}

impl Driver {
    /// How the driver's placeholders are written, for error messages.
    fn placeholder(self) -> &'static str {
        match self {
            Driver::Mysql | Driver::Sqlite => "`?` (parameters bind in order)",
            Driver::Postgres => "`$1`, `$2`, …",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::Mysql => "MySQL",
            Driver::Postgres => "PostgreSQL",
            Driver::Sqlite => "SQLite",
        })
    }
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

/// A handle to a database: a [`Pool`] of connections plus the calls that borrow one per
/// statement. Cheap to clone.
///
/// Like Go's `sql.DB`: [`open`](Db::open) checks the DSN and returns at once; each call
/// borrows a connection and gives it back; [`begin`](Db::begin) keeps one for the
/// transaction; a call whose connection turns out dead **before its statement was sent**
/// is retried on another connection (twice on a cached-or-new one, then once on a new one),
/// and one that may have run is not retried and says so ([`DbError::may_have_run`]).
///
/// The statement methods (`exec`, `query`, `query_as`, `query_one`, `query_optional`) are
/// those of [`Executor`], callable without importing it.
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

impl Db {
    /// Opens a handle for `dsn` with the default pool [`Options`]: checks the DSN, picks the
    /// driver by scheme (`mysql://`, `postgres://`, `sqlite://`), connects to nothing.
    ///
    /// ```
    /// use longlink_pool::db::Db;
    /// let db = Db::open("postgres://postgres@127.0.0.1:5432/test").unwrap();
    /// assert_eq!(db.stats().open, 0); // nothing opened yet
    /// ```
    pub fn open(dsn: &str) -> Result<Db, DbError> {
        Db::open_with(dsn, Options::default())
    }

    /// A builder for the pool options, ending in [`open`](Builder::open).
    ///
    /// ```
    /// let db = longlink_pool::db::Db::builder().max_open(4).open("sqlite://:memory:").unwrap();
    /// assert_eq!(db.stats().max_open, 4);
    /// ```
    pub fn builder() -> Builder<Db> {
        Builder::default()
    }

    /// Like [`open`](Db::open) with explicit pool options.
    ///
    /// ```
    /// use longlink_pool::{Options, db::Db};
    /// let db = Db::open_with("sqlite://:memory:", Options::default()).unwrap();
    /// assert_eq!(db.stats().max_open, 10);
    /// ```
    pub fn open_with(dsn: &str, options: Options) -> Result<Db, DbError> {
        let scheme = dsn
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .ok_or_else(|| DbError::BadDsn {
                reason: "no scheme (expected mysql://, postgres:// or sqlite://)".to_owned(),
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
    ///
    /// ```
    /// use longlink_pool::db::{Db, Driver};
    /// assert_eq!(Db::open("mariadb://root@127.0.0.1/test").unwrap().driver(), Driver::Mysql);
    /// ```
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
    ///
    /// ```
    /// let db = longlink_pool::db::Db::open("sqlite://:memory:").unwrap();
    /// assert_eq!((db.stats().open, db.stats().in_use), (0, 0));
    /// ```
    pub fn stats(&self) -> Stats {
        with_pool!(&self.backend, |p| p.stats())
    }

    /// Closes the pool (see [`Pool::close`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let db = longlink_pool::db::Db::open("sqlite://:memory:").unwrap();
    /// db.close();
    /// db.wait_closed().await;
    /// assert!(matches!(db.ping().await, Err(longlink_pool::db::DbError::Closed)));
    /// # }
    /// ```
    pub fn close(&self) {
        with_pool!(&self.backend, |p| p.close())
    }

    /// Resolves when every connection is closed after [`close`](Db::close).
    pub async fn wait_closed(&self) {
        with_pool!(&self.backend, |p| p.wait_closed().await)
    }

    /// Checks that the database answers (connecting if needed), retried like a statement.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let db = longlink_pool::db::Db::open("sqlite://:memory:").unwrap();
    /// db.ping().await.unwrap();
    /// assert_eq!(db.stats().open, 1);
    /// # }
    /// ```
    pub async fn ping(&self) -> Result<(), DbError> {
        let ((), _conn) = self.with_retry(retry::Ping).await?;
        Ok(())
    }

    /// Starts a transaction on one connection, kept until [`Tx::commit`] or
    /// [`Tx::rollback`]. A `Tx` dropped without either is rolled back before its connection
    /// is used again. `BEGIN` is retried like a statement; nothing inside the transaction
    /// is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
    /// let db = longlink_pool::db::Db::builder().max_open(1).open("sqlite://:memory:")?;
    /// db.exec("CREATE TABLE t (n INTEGER)", ()).await?;
    /// let mut tx = db.begin().await?;
    /// tx.exec("INSERT INTO t (n) VALUES (?)", (1,)).await?;
    /// tx.rollback().await?;
    /// assert_eq!(db.query_one::<i64>("SELECT COUNT(*) FROM t", ()).await?, 0);
    /// # Ok(()) }
    /// ```
    pub async fn begin(&self) -> Result<Tx, DbError> {
        let ((), conn) = self.with_retry(retry::Begin).await?;
        Ok(Tx::new(conn))
    }

    /// One dedicated connection, for statements that must share a session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
    /// let db = longlink_pool::db::Db::open("sqlite://:memory:")?;
    /// let mut conn = db.conn().await?;
    /// conn.exec("CREATE TEMP TABLE scratch (n INTEGER)", ()).await?; // this session only
    /// conn.exec("INSERT INTO scratch (n) VALUES (1)", ()).await?;
    /// assert_eq!(conn.query_one::<i64>("SELECT n FROM scratch", ()).await?, 1);
    /// # Ok(()) }
    /// ```
    pub async fn conn(&self) -> Result<DbConn, DbError> {
        Ok(DbConn::new(self.acquire(false).await?))
    }
}

impl Builder<Db> {
    /// Opens a [`Db`] for `dsn` with these options (see [`Db::open`]).
    ///
    /// ```
    /// let db = longlink_pool::db::Db::builder().max_idle(2).open("sqlite://:memory:").unwrap();
    /// assert_eq!(db.stats().max_open, 10);
    /// ```
    pub fn open(self, dsn: &str) -> Result<Db, DbError> {
        Db::open_with(dsn, self.options())
    }
}
