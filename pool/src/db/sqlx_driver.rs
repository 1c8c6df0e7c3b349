//! Statements on `sqlx` connections, written once for PostgreSQL and SQLite.
//!
//! A driver gives only what differs, as a [`Dialect`]: how NULL is bound, how a column is
//! read by its type name, and what an `exec` reports.

use std::sync::Arc;

use sqlx::{
    AssertSqlSafe, Column, Connection, Database, IntoArguments, Row as _, TypeInfo, ValueRef,
};

use super::sqlx_error::classify;
use super::statement::Statement;
use super::{DbError, ExecResult, Row, Value};

/// A `sqlx` query with the database's own arguments.
pub(crate) type SqlxQuery<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments>;

/// What one `sqlx` database does its own way.
pub(crate) trait Dialect: Database<Arguments: IntoArguments<Self>> {
    /// The connection as a `sqlx` executor (a reborrow; generic code cannot name the
    /// executor impls, which `sqlx` writes per database).
    fn executor<'c>(conn: &'c mut Self::Connection) -> impl sqlx::Executor<'c, Database = Self>;

    /// Binds one value: its own NULL, the rest through [`bind_non_null`].
    fn bind<'q>(query: SqlxQuery<'q, Self>, value: &Value) -> SqlxQuery<'q, Self>;

    /// Reads column `i` of `row` (through [`type_name`] for the type it holds).
    fn decode(row: &Self::Row, i: usize) -> Result<Value, String>;

    /// What a statement did.
    fn exec_result(done: &Self::QueryResult) -> ExecResult;
}

/// Binds every value but NULL, the same on both databases (neither has an unsigned type:
/// a `u64` past `i64::MAX` goes as text).
pub(crate) fn bind_non_null<'q, DB: Database>(
    query: SqlxQuery<'q, DB>,
    value: &Value,
) -> SqlxQuery<'q, DB>
where
    for<'e> bool: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> i64: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> f64: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> String: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    for<'e> Vec<u8>: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
{
    match value {
        Value::Bool(b) => query.bind(*b),
        Value::I64(i) => query.bind(*i),
        Value::U64(u) => match i64::try_from(*u) {
            Ok(i) => query.bind(i),
            Err(_) => query.bind(u.to_string()),
        },
        Value::F64(f) => query.bind(*f),
        Value::Text(t) => query.bind(t.clone()),
        Value::Bytes(b) => query.bind(b.clone()),
        Value::Null => unreachable!("each dialect binds its own NULL"),
    }
}

/// The type the database reports for the value in column `i`, or `None` for NULL.
pub(crate) fn type_name<R>(row: &R, i: usize) -> Result<Option<String>, String>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
{
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    Ok((!raw.is_null()).then(|| raw.type_info().name().to_owned()))
}

fn prepare<'q, DB: Dialect>(stmt: &Statement<'_>) -> SqlxQuery<'q, DB> {
    stmt.values()
        .iter()
        .fold(sqlx::query(AssertSqlSafe(stmt.sql().to_owned())), DB::bind)
}

pub(crate) async fn exec<C>(conn: &mut C, stmt: &Statement<'_>) -> Result<ExecResult, DbError>
where
    C: Connection<Database: Dialect>,
{
    let done = prepare::<C::Database>(stmt)
        .execute(C::Database::executor(conn))
        .await
        .map_err(classify)?;
    Ok(<C::Database as Dialect>::exec_result(&done))
}

pub(crate) async fn query<C>(conn: &mut C, stmt: &Statement<'_>) -> Result<Vec<Row>, DbError>
where
    C: Connection<Database: Dialect>,
{
    let rows = prepare::<C::Database>(stmt)
        .fetch_all(C::Database::executor(conn))
        .await
        .map_err(classify)?;
    convert_rows::<C::Database>(&rows)
}

pub(crate) async fn ping<C: Connection>(conn: &mut C) -> Result<(), DbError> {
    conn.ping().await.map_err(classify)
}

pub(crate) async fn begin<C: Connection<Database: Dialect>>(conn: &mut C) -> Result<(), DbError> {
    run(conn, "BEGIN").await
}

pub(crate) async fn commit<C: Connection<Database: Dialect>>(conn: &mut C) -> Result<(), DbError> {
    run(conn, "COMMIT").await
}

pub(crate) async fn rollback<C: Connection<Database: Dialect>>(
    conn: &mut C,
) -> Result<(), DbError> {
    run(conn, "ROLLBACK").await
}

async fn run<C: Connection<Database: Dialect>>(
    conn: &mut C,
    sql: &'static str,
) -> Result<(), DbError> {
    sqlx::Executor::execute(C::Database::executor(conn), sql)
        .await
        .map(drop)
        .map_err(classify)
}

fn convert_rows<DB: Dialect>(rows: &[DB::Row]) -> Result<Vec<Row>, DbError> {
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
                    DB::decode(row, i).map_err(|reason| DbError::Decode {
                        column: names[i].clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Row::new(Arc::clone(&names), values))
        })
        .collect()
}
