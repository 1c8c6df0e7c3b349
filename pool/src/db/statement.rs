//! A statement and the values for its placeholders, as the drivers run it.

use super::{DbError, Driver, Value};

/// A statement and its values; the only thing [`AnyConn`](super::any_conn::AnyConn) runs.
#[derive(Debug)]
pub(crate) struct Statement<'a> {
    driver: Driver,
    sql: &'a str,
    values: &'a [Value],
}

impl<'a> Statement<'a> {
    /// A statement of `sql` with `values`, for `driver`.
    pub(crate) fn new(
        driver: Driver,
        sql: &'a str,
        values: &'a [Value],
    ) -> Result<Statement<'a>, DbError> {
        Ok(Statement {
            driver,
            sql,
            values,
        })
    }

    pub(crate) fn driver(&self) -> Driver {
        self.driver
    }

    pub(crate) fn sql(&self) -> &str {
        self.sql
    }

    pub(crate) fn values(&self) -> &'a [Value] {
        self.values
    }
}
