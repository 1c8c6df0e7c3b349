//! Go's retry rule, written once: every `Db` call goes through [`Db::with_retry`].

use std::future::Future;

use super::any_conn::AnyConn;
use super::statement::Statement;
use super::{Backend, Db, DbError, ExecResult, Row};

/// Go's rule: two tries on a cached-or-new connection, then one on a forced new one.
const CACHED_TRIES: usize = 2;

impl Db {
    /// Borrows a connection: any (idle or new), or, with `fresh`, a newly opened one
    /// ([`Pool::acquire_new`](crate::Pool::acquire_new)).
    pub(super) async fn acquire(&self, fresh: bool) -> Result<AnyConn, DbError> {
        macro_rules! get {
            ($pool:expr) => {
                if fresh {
                    $pool.acquire_new().await?
                } else {
                    $pool.acquire().await?
                }
            };
        }
        Ok(match &self.backend {
            #[cfg(feature = "mysql")]
            Backend::Mysql(p) => AnyConn::Mysql(get!(p)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => AnyConn::Postgres(get!(p)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(p) => AnyConn::Sqlite(get!(p)),
        })
    }

    /// Runs `op` on a borrowed connection and hands back its output with the connection.
    ///
    /// When `op` fails because the connection is dead and it is **proven** that nothing was
    /// sent ([`DbError::may_have_run`] is `false`), it runs again: on a cached-or-new
    /// connection for the first [`CACHED_TRIES`], then once on a new one. Anything else —
    /// success, a refused statement, a break that may have run — is final.
    pub(super) async fn with_retry<A: Attempt>(
        &self,
        mut op: A,
    ) -> Result<(A::Output, AnyConn), DbError> {
        let mut attempt = 0;
        loop {
            let mut conn = self.acquire(attempt >= CACHED_TRIES).await?;
            match op.run(&mut conn).await {
                Ok(out) => return Ok((out, conn)),
                Err(e) if retry(&e, attempt) => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Retry only what provably did not run, and only as often as Go does.
fn retry(error: &DbError, attempt: usize) -> bool {
    error.is_broken() && !error.may_have_run() && attempt < CACHED_TRIES
}

/// One try of a `Db` call, run on each connection [`Db::with_retry`] borrows.
///
/// A trait rather than an async closure: the futures of an async closure cannot yet be
/// proven `Send` for every borrow of the connection, and [`Executor`](super::Executor)
/// promises `Send` futures.
pub(super) trait Attempt: Send {
    type Output: Send;

    fn run(
        &mut self,
        conn: &mut AnyConn,
    ) -> impl Future<Output = Result<Self::Output, DbError>> + Send;
}

/// A statement that returns no rows.
pub(super) struct Exec<'s>(pub(super) &'s Statement<'s>);

/// A query.
pub(super) struct Query<'s>(pub(super) &'s Statement<'s>);

/// A ping.
pub(super) struct Ping;

/// `BEGIN`.
pub(super) struct Begin;

impl Attempt for Exec<'_> {
    type Output = ExecResult;

    fn run(
        &mut self,
        conn: &mut AnyConn,
    ) -> impl Future<Output = Result<ExecResult, DbError>> + Send {
        conn.exec(self.0)
    }
}

impl Attempt for Query<'_> {
    type Output = Vec<Row>;

    fn run(
        &mut self,
        conn: &mut AnyConn,
    ) -> impl Future<Output = Result<Vec<Row>, DbError>> + Send {
        conn.query(self.0)
    }
}

impl Attempt for Ping {
    type Output = ();

    fn run(&mut self, conn: &mut AnyConn) -> impl Future<Output = Result<(), DbError>> + Send {
        conn.ping()
    }
}

impl Attempt for Begin {
    type Output = ();

    fn run(&mut self, conn: &mut AnyConn) -> impl Future<Output = Result<(), DbError>> + Send {
        conn.begin()
    }
}
