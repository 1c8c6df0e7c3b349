//! PostgreSQL through `sqlx` (`postgres://user:pass@host:port/db`).

use std::str::FromStr;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgConnection, PgQueryResult, PgRow, PgTypeInfo, Postgres,
};
use sqlx::{ConnectOptions, Connection, Executor, Row as _};

use super::sqlx_driver::{Dialect, SqlxQuery, bind_non_null, type_name};
use super::{DbError, ExecResult, Value};
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

impl Dialect for Postgres {
    fn executor<'c>(conn: &'c mut PgConnection) -> impl Executor<'c, Database = Postgres> {
        conn
    }

    fn bind<'q>(query: SqlxQuery<'q, Postgres>, value: &Value) -> SqlxQuery<'q, Postgres> {
        match value {
            Value::Null => query.bind(UntypedNull),
            value => bind_non_null(query, value),
        }
    }

    fn decode(row: &PgRow, i: usize) -> Result<Value, String> {
        let Some(type_name) = type_name(row, i)? else {
            return Ok(Value::Null);
        };
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

    fn exec_result(done: &PgQueryResult) -> ExecResult {
        ExecResult {
            rows_affected: done.rows_affected(),
            last_insert_id: None,
        }
    }
}
