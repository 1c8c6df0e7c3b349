//! PostgreSQL through `sqlx` (`postgres://user:pass@host:port/db`).

use std::str::FromStr;
use std::sync::Arc;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgConnection, PgRow, PgTypeInfo, Postgres,
};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, Executor, Row as _, TypeInfo, ValueRef,
};

use super::sqlx_error::classify;
use super::statement::Statement;
use super::{DbError, ExecResult, Row, Value};
use crate::Manager;

/// Opens `sqlx` PostgreSQL connections for a [`Pool`](crate::Pool).
///
/// ```
/// use longlink_pool::db::PgManager;
/// assert!(PgManager::new("postgres://postgres@127.0.0.1:5432/test").is_ok());
/// assert!(PgManager::new("postgres://postgres@127.0.0.1:5432/test?sslmode=sometimes").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct PgManager {
    options: PgConnectOptions,
}

impl PgManager {
    /// Reads and checks the DSN; connects to nothing.
    pub fn new(dsn: &str) -> Result<PgManager, DbError> {
        let options = PgConnectOptions::from_str(dsn).map_err(|e| DbError::BadDsn {
            reason: e.to_string(),
        })?;
        Ok(PgManager { options })
    }

    /// The connection options.
    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }
}

impl Manager for PgManager {
    type Connection = PgConnection;
    type Error = sqlx::Error;

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    async fn check(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        conn.ping().await
    }

    async fn reset(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        // Outside a transaction PostgreSQL only warns about ROLLBACK.
        conn.execute("ROLLBACK").await.map(drop)
    }
}

/// A NULL of no declared type: PostgreSQL infers it from the statement (a typed NULL of
/// the wrong type would be refused: "column is of type integer but expression is of type
/// text").
struct UntypedNull;

impl sqlx::Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(Oid(0))
    }
}

impl sqlx::Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

fn bind<'q>(mut query: PgQuery<'q>, values: &[Value]) -> PgQuery<'q> {
    for value in values {
        query = match value {
            Value::Null => query.bind(UntypedNull),
            Value::Bool(b) => query.bind(*b),
            Value::I64(i) => query.bind(*i),
            // PostgreSQL has no unsigned type.
            Value::U64(u) => match i64::try_from(*u) {
                Ok(i) => query.bind(i),
                Err(_) => query.bind(u.to_string()),
            },
            Value::F64(f) => query.bind(*f),
            Value::Text(t) => query.bind(t.clone()),
            Value::Bytes(b) => query.bind(b.clone()),
        };
    }
    query
}

fn decode(row: &PgRow, i: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    let get = |e: sqlx::Error| e.to_string();
    Ok(match type_name.as_str() {
        "BOOL" => Value::Bool(row.try_get(i).map_err(get)?),
        "INT2" => Value::I64(row.try_get::<i16, _>(i).map_err(get)?.into()),
        "INT4" => Value::I64(row.try_get::<i32, _>(i).map_err(get)?.into()),
        "INT8" => Value::I64(row.try_get(i).map_err(get)?),
        "OID" => Value::I64(row.try_get::<Oid, _>(i).map_err(get)?.0.into()),
        "FLOAT4" => Value::F64(row.try_get::<f32, _>(i).map_err(get)?.into()),
        "FLOAT8" => Value::F64(row.try_get(i).map_err(get)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "UNKNOWN" => {
            Value::Text(row.try_get(i).map_err(get)?)
        }
        "BYTEA" => Value::Bytes(row.try_get(i).map_err(get)?),
        "VOID" => Value::Null,
        other => {
            return Err(format!(
                "unsupported PostgreSQL type {other}; cast it in SQL (for example `::text`)"
            ));
        }
    })
}

fn convert_rows(rows: Vec<PgRow>) -> Result<Vec<Row>, DbError> {
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
                    decode(row, i).map_err(|reason| DbError::Decode {
                        column: names[i].clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Row::new(Arc::clone(&names), values))
        })
        .collect()
}

pub(crate) async fn exec(
    conn: &mut PgConnection,
    stmt: &Statement<'_>,
) -> Result<ExecResult, DbError> {
    let done = bind(
        sqlx::query(AssertSqlSafe(stmt.sql().to_owned())),
        stmt.values(),
    )
    .execute(conn)
    .await
    .map_err(classify)?;
    Ok(ExecResult {
        rows_affected: done.rows_affected(),
        last_insert_id: None,
    })
}

pub(crate) async fn query(
    conn: &mut PgConnection,
    stmt: &Statement<'_>,
) -> Result<Vec<Row>, DbError> {
    let rows = bind(
        sqlx::query(AssertSqlSafe(stmt.sql().to_owned())),
        stmt.values(),
    )
    .fetch_all(conn)
    .await
    .map_err(classify)?;
    convert_rows(rows)
}

pub(crate) async fn ping(conn: &mut PgConnection) -> Result<(), DbError> {
    conn.ping().await.map_err(classify)
}

pub(crate) async fn begin(conn: &mut PgConnection) -> Result<(), DbError> {
    conn.execute("BEGIN").await.map(drop).map_err(classify)
}

pub(crate) async fn commit(conn: &mut PgConnection) -> Result<(), DbError> {
    conn.execute("COMMIT").await.map(drop).map_err(classify)
}

pub(crate) async fn rollback(conn: &mut PgConnection) -> Result<(), DbError> {
    conn.execute("ROLLBACK").await.map(drop).map_err(classify)
}
