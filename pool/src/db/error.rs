//! The database layer's error type.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use super::Driver;
use crate::error::Chain;
use crate::{PoolError, Stats};

/// A driver error, shared (a connect error reaches every waiter that tried).
pub type Cause = Arc<dyn StdError + Send + Sync>;

/// What went wrong with a database call, and whether the statement may have run.
///
/// The text says each cause once (drivers that repeat their causes are shortened), and
/// [`source`](std::error::Error::source) gives the driver's own error.
///
/// ```
/// use longlink_pool::db::{Db, DbError};
/// let err = Db::open("mysql://root@/test?pool_min=abc").unwrap_err();
/// assert!(matches!(err, DbError::BadDsn { .. }));
/// assert!(!err.may_have_run());
/// let err = Db::open("oracle://scott@tiger/db").unwrap_err();
/// assert_eq!(err.to_string(), "unsupported database scheme \"oracle\" (expected mysql, postgres or sqlite)");
/// let err = DbError::ParamCount { expected: 2, given: 1 };
/// assert_eq!(err.to_string(), "statement has 2 placeholders but 1 parameter was given");
/// assert!(!err.may_have_run() && !err.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The DSN could not be read.
    #[error("bad dsn: {reason}")]
    BadDsn {
        /// What is wrong with it.
        reason: String,
    },
    /// The DSN names a database this crate does not drive.
    #[error("unsupported database scheme {scheme:?} (expected mysql, postgres or sqlite)")]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// The DSN names a driver that was compiled out.
    #[error("the {scheme} driver is not enabled (cargo feature {feature:?})")]
    DriverNotEnabled {
        /// The scheme found.
        scheme: &'static str,
        /// The cargo feature that enables it.
        feature: &'static str,
    },
    /// Opening a connection failed: the database is unreachable, or it refused (bad
    /// credentials, unknown database — see [`is_retryable`](DbError::is_retryable)).
    #[error("connect failed: {}", Chain(&**source))]
    Connect {
        /// The driver's error.
        source: Cause,
    },
    /// No connection became free in time.
    #[error("timed out after {waited:?} waiting for a connection ({} open of {}, {} in use, {} waiting){}",
        stats.open, stats.max_open, stats.in_use, stats.waiting,
        last_connect_error.as_ref().map(|e| format!("; last connect error: {}", Chain(&**e))).unwrap_or_default())]
    Timeout {
        /// How long the call waited.
        waited: Duration,
        /// Why connects failed meanwhile, if they did.
        last_connect_error: Option<Cause>,
        /// The pool's counters when it gave up.
        stats: Box<Stats>,
    },
    /// The pool was closed.
    #[error("database handle is closed")]
    Closed,
    /// The database ran the statement and refused it (syntax, constraint, lock...): it had
    /// no effect.
    #[error("query failed{}: {message}", code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Query {
        /// The database's error code (MySQL number, SQLSTATE, SQLite code).
        code: Option<String>,
        /// The database's message.
        message: String,
    },
    /// The connection broke during the call.
    #[error("connection broken ({}): {}", if *may_have_run { "the statement may have run" } else { "the statement was not sent" }, Chain(&**source))]
    Broken {
        /// `false` only when it is proven that the statement never reached the server.
        may_have_run: bool,
        /// The driver's error.
        source: Cause,
    },
    /// The statement's placeholders and the parameters given differ in number; nothing
    /// was sent (SQLite would have bound NULL for a missing one).
    #[error("statement has {} but {} {} given", counted(*expected, "placeholder"), counted(*given, "parameter"), if *given == 1 { "was" } else { "were" })]
    ParamCount {
        /// The parameters the statement takes (for `?NNN` and `$n`, the highest number).
        expected: usize,
        /// The parameters given.
        given: usize,
    },
    /// A placeholder in another database's style; nothing was sent.
    #[error("placeholder {found} does not work on {driver}: use {}", driver.placeholder())]
    Placeholder {
        /// The placeholder found (`$1`, `?`).
        found: String,
        /// The database the statement was for.
        driver: Driver,
    },
    /// `query_one` found no row.
    #[error("query returned no rows")]
    NoRows,
    /// A row has fewer columns than the Rust type reads (or, for a single value such as
    /// `i64`, more than one).
    #[error("cannot read a row of {} as {target} ({wanted} wanted)", counted(*found, "column"))]
    ColumnCount {
        /// The columns the row has.
        found: usize,
        /// The columns the type reads.
        wanted: usize,
        /// The Rust type asked for.
        target: String,
    },
    /// A value could not be read as the Rust type asked for.
    #[error("cannot decode column {column:?}: {reason}")]
    Decode {
        /// The column.
        column: String,
        /// Why.
        reason: String,
    },
    /// No column has that name or position.
    #[error("no column {column}")]
    ColumnNotFound {
        /// The name or position asked for.
        column: String,
    },
}

/// "1 column", "2 columns".
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl DbError {
    /// `true` if the statement may have run on the server: only a connection that broke
    /// after the statement was sent leaves that open. A refused statement had no effect.
    pub fn may_have_run(&self) -> bool {
        matches!(
            self,
            DbError::Broken {
                may_have_run: true,
                ..
            }
        )
    }

    /// `true` if trying again (later, or on another connection) may succeed: an unreachable
    /// database, a timeout, a connection that broke before the statement was sent. A server
    /// that refused the login — wrong password, unknown user or database, no permission
    /// (MySQL 1044, 1045, 1049; SQLSTATE 28000, 28P01, 3D000) — refuses the next try too.
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::Connect { source } => !refused_for_good(source),
            DbError::Timeout {
                last_connect_error, ..
            } => !last_connect_error.as_ref().is_some_and(refused_for_good),
            DbError::Broken { may_have_run, .. } => !may_have_run,
            _ => false,
        }
    }

    /// The database's error code for a refused statement.
    pub fn code(&self) -> Option<&str> {
        match self {
            DbError::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// `true` for a broken connection (the pool closes it rather than reuse it).
    pub(crate) fn is_broken(&self) -> bool {
        matches!(self, DbError::Broken { .. })
    }

    pub(crate) fn broken(
        may_have_run: bool,
        source: impl StdError + Send + Sync + 'static,
    ) -> DbError {
        DbError::Broken {
            may_have_run,
            source: Arc::new(source),
        }
    }
}

/// `true` when the server refused the connection for a reason another try will not fix.
fn refused_for_good(cause: &Cause) -> bool {
    #[cfg(feature = "mysql")]
    if let Some(e) = cause.downcast_ref::<mysql_async::Error>() {
        return super::mysql::refused_for_good(e);
    }
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    if let Some(e) = cause.downcast_ref::<sqlx::Error>() {
        return super::sqlx_error::refused_for_good(e);
    }
    let _ = cause;
    false
}

impl<E: StdError + Send + Sync + 'static> From<PoolError<E>> for DbError {
    fn from(err: PoolError<E>) -> DbError {
        match err {
            PoolError::Closed => DbError::Closed,
            PoolError::Connect(e) => DbError::Connect { source: e },
            PoolError::Timeout {
                waited,
                last_connect_error,
                stats,
            } => DbError::Timeout {
                waited,
                last_connect_error: last_connect_error.map(|e| e as Cause),
                stats,
            },
        }
    }
}
