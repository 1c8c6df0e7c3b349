//! Transactions and dedicated connections: one connection kept for several statements.
//! Their statements are those of [`Executor`](super::Executor).

use std::fmt;

use super::DbError;
use super::any_conn::AnyConn;

/// A transaction: every statement runs on the same connection until
/// [`commit`](Tx::commit) or [`rollback`](Tx::rollback).
///
/// Dropped without either (or with a statement still running), the connection is rolled
/// back — or closed — before anyone uses it again; no task is spawned to do it.
/// Statements are never retried inside a transaction (see [`Executor`](super::Executor)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
/// let db = longlink_pool::db::Db::builder().max_open(1).open("sqlite://:memory:")?;
/// db.exec("CREATE TABLE t (n INTEGER)", ()).await?;
/// let mut tx = db.begin().await?;
/// tx.exec("INSERT INTO t (n) VALUES (?)", (1,)).await?;
/// assert_eq!(tx.query_one::<i64>("SELECT COUNT(*) FROM t", ()).await?, 1);
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub struct Tx {
    conn: AnyConn,
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Tx {
    pub(crate) fn new(mut conn: AnyConn) -> Tx {
        // Until it ends properly, the connection must be rolled back before reuse.
        conn.mark_dirty();
        Tx { conn }
    }

    pub(crate) fn conn_mut(&mut self) -> &mut AnyConn {
        &mut self.conn
    }

    /// Commits. An error that [may have run](DbError::may_have_run) leaves open whether
    /// the transaction was committed.
    pub async fn commit(mut self) -> Result<(), DbError> {
        self.conn.commit().await?;
        self.conn.mark_clean();
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<(), DbError> {
        self.conn.rollback().await?;
        self.conn.mark_clean();
        Ok(())
    }
}

/// One connection kept for several statements that must share a session (temporary
/// tables, session variables, locks). Returned to the pool when dropped; its statements
/// are never retried.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), longlink_pool::db::DbError> {
/// let db = longlink_pool::db::Db::open("sqlite://:memory:")?;
/// let mut conn = db.conn().await?;
/// conn.ping().await?;
/// assert_eq!(conn.query_one::<i64>("SELECT 2", ()).await?, 2);
/// # Ok(()) }
/// ```
pub struct DbConn {
    conn: AnyConn,
}

impl fmt::Debug for DbConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConn").finish_non_exhaustive()
    }
}

impl DbConn {
    pub(crate) fn new(conn: AnyConn) -> DbConn {
        DbConn { conn }
    }

    pub(crate) fn conn_mut(&mut self) -> &mut AnyConn {
        &mut self.conn
    }

    /// Checks that the connection answers.
    pub async fn ping(&mut self) -> Result<(), DbError> {
        self.conn.ping().await
    }
}
