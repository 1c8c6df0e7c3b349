//! A connection of whichever driver, and the one place a statement reaches a driver.

#[cfg(feature = "mysql")]
use super::MysqlManager;
#[cfg(feature = "postgres")]
use super::PgManager;
#[cfg(feature = "sqlite")]
use super::SqliteManager;
use super::statement::Statement;
use super::{DbError, Driver, ExecResult, Row};
use crate::PooledConn;

/// A connection of whichever driver, borrowed from the pool.
pub(crate) enum AnyConn {
    #[cfg(feature = "mysql")]
    Mysql(PooledConn<MysqlManager>),
    #[cfg(feature = "postgres")]
    Postgres(PooledConn<PgManager>),
    #[cfg(feature = "sqlite")]
    Sqlite(PooledConn<SqliteManager>),
}

/// Runs one step, `$op`, with `$raw` bound to the driver's connection and `$driver` to
/// the module with the driver's statement functions (PostgreSQL and SQLite share one).
///
/// While the step runs the connection is marked broken, so a future dropped mid-statement
/// closes it instead of returning a connection in an unknown protocol state; the mark is
/// lifted unless the step broke it.
macro_rules! guarded {
    ($conn:expr, |$raw:ident, $driver:ident| $op:expr) => {
        match $conn {
            #[cfg(feature = "mysql")]
            AnyConn::Mysql(pooled) => {
                use super::mysql as $driver;
                guarded!(@run pooled, $raw, $op)
            }
            #[cfg(feature = "postgres")]
            AnyConn::Postgres(pooled) => {
                use super::sqlx_driver as $driver;
                guarded!(@run pooled, $raw, $op)
            }
            #[cfg(feature = "sqlite")]
            AnyConn::Sqlite(pooled) => {
                use super::sqlx_driver as $driver;
                guarded!(@run pooled, $raw, $op)
            }
        }
    };
    (@run $pooled:ident, $raw:ident, $op:expr) => {{
        $pooled.mark_broken();
        let result = {
            let $raw = &mut **$pooled;
            $op.await
        };
        if !matches!(&result, Err(e) if e.is_broken()) {
            $pooled.unmark_broken();
        }
        result
    }};
}

/// Runs `$body` with `$c` bound to the driver's pooled connection.
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

impl AnyConn {
    pub(crate) fn driver(&self) -> Driver {
        match self {
            #[cfg(feature = "mysql")]
            AnyConn::Mysql(_) => Driver::Mysql,
            #[cfg(feature = "postgres")]
            AnyConn::Postgres(_) => Driver::Postgres,
            #[cfg(feature = "sqlite")]
            AnyConn::Sqlite(_) => Driver::Sqlite,
        }
    }

    pub(crate) async fn exec(&mut self, stmt: &Statement<'_>) -> Result<ExecResult, DbError> {
        debug_assert_eq!(stmt.driver(), self.driver());
        guarded!(self, |conn, driver| driver::exec(conn, stmt))
    }

    pub(crate) async fn query(&mut self, stmt: &Statement<'_>) -> Result<Vec<Row>, DbError> {
        debug_assert_eq!(stmt.driver(), self.driver());
        guarded!(self, |conn, driver| driver::query(conn, stmt))
    }

    pub(crate) async fn ping(&mut self) -> Result<(), DbError> {
        guarded!(self, |conn, driver| driver::ping(conn))
    }

    pub(crate) async fn begin(&mut self) -> Result<(), DbError> {
        guarded!(self, |conn, driver| driver::begin(conn))
    }

    pub(crate) async fn commit(&mut self) -> Result<(), DbError> {
        guarded!(self, |conn, driver| driver::commit(conn))
    }

    pub(crate) async fn rollback(&mut self) -> Result<(), DbError> {
        guarded!(self, |conn, driver| driver::rollback(conn))
    }

    pub(crate) fn mark_dirty(&mut self) {
        with_pooled!(self, |c| c.mark_dirty())
    }

    pub(crate) fn mark_clean(&mut self) {
        with_pooled!(self, |c| c.mark_clean())
    }
}
