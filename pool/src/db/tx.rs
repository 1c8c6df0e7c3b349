//! Transactions and dedicated connections: one connection kept for several statements.

use std::fmt;

use super::{AnyConn, DbError, ExecResult, FromRow, Params, Row};

/// A transaction: every statement runs on the same connection until
/// [`commit`](Tx::commit) or [`rollback`](Tx::rollback).
///
/// Dropped without either (or with a statement still running), the connection is rolled
/// back — or closed — before anyone uses it again; no task is spawned to do it.
/// Statements are never retried inside a transaction.
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

    /// Runs a statement that returns no rows.
    pub async fn exec(&mut self, sql: &str, params: impl Params) -> Result<ExecResult, DbError> {
        self.conn.exec(sql, &params.into_values()).await
    }

    /// Runs a query and returns every row.
    pub async fn query(&mut self, sql: &str, params: impl Params) -> Result<Vec<Row>, DbError> {
        self.conn.query(sql, &params.into_values()).await
    }

    /// Runs a query and reads every row as `T`.
    pub async fn query_as<T: FromRow>(
        &mut self,
        sql: &str,
        params: impl Params,
    ) -> Result<Vec<T>, DbError> {
        self.query(sql, params)
            .await?
            .iter()
            .map(T::from_row)
            .collect()
    }

    /// Runs a query and reads its first row as `T`.
    pub async fn query_one<T: FromRow>(
        &mut self,
        sql: &str,
        params: impl Params,
    ) -> Result<T, DbError> {
        let rows = self.query(sql, params).await?;
        T::from_row(rows.first().ok_or(DbError::NoRows)?)
    }

    /// Commits.
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
/// tables, session variables, locks). Returned to the pool when dropped.
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

    /// Runs a statement that returns no rows.
    pub async fn exec(&mut self, sql: &str, params: impl Params) -> Result<ExecResult, DbError> {
        self.conn.exec(sql, &params.into_values()).await
    }

    /// Runs a query and returns every row.
    pub async fn query(&mut self, sql: &str, params: impl Params) -> Result<Vec<Row>, DbError> {
        self.conn.query(sql, &params.into_values()).await
    }

    /// Runs a query and reads every row as `T`.
    pub async fn query_as<T: FromRow>(
        &mut self,
        sql: &str,
        params: impl Params,
    ) -> Result<Vec<T>, DbError> {
        self.query(sql, params)
            .await?
            .iter()
            .map(T::from_row)
            .collect()
    }

    /// Runs a query and reads its first row as `T`.
    pub async fn query_one<T: FromRow>(
        &mut self,
        sql: &str,
        params: impl Params,
    ) -> Result<T, DbError> {
        let rows = self.query(sql, params).await?;
        T::from_row(rows.first().ok_or(DbError::NoRows)?)
    }

    /// Checks that the connection answers.
    pub async fn ping(&mut self) -> Result<(), DbError> {
        self.conn.ping().await
    }
}
