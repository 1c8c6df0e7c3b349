//! MySQL / MariaDB through `mysql_async` (`mysql://user:pass@host:port/db`).

use std::sync::Arc;

use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Column, Conn, Opts};

use super::statement::Statement;
use super::{DbError, ExecResult, Row, Value};
use crate::Manager;

/// Opens `mysql_async` connections for a [`Pool`](crate::Pool).
///
/// **Local TCP becomes the Unix socket.** `mysql_async` connects to `127.0.0.1` or
/// `localhost` over TCP, asks the server for its socket path and switches to it
/// (`prefer_socket`, on by default): a proxy or TLS terminator in front of the server on
/// that port is bypassed, and the server sees a socket client. Add `?prefer_socket=false` to
/// keep TCP (the push system's proxy tests do). The pool leaves the driver's default: on the
/// socket, a connection the server closed while idle fails its next write at once, which
/// proves the statement was not sent and lets the pool retry it on a new connection — over
/// TCP the same close is only seen after the write, when the statement may have run.
///
/// ```
/// use longlink_pool::db::MysqlManager;
/// assert!(MysqlManager::new("mysql://root@127.0.0.1:3306/test").is_ok());
/// assert!(MysqlManager::new("mysql://root@127.0.0.1:3306/test?no_such_option=1").is_err());
/// ```
#[derive(Debug, Clone)]
pub struct MysqlManager {
    opts: Opts,
}

impl MysqlManager {
    /// Reads and checks the DSN; connects to nothing.
    pub fn new(dsn: &str) -> Result<MysqlManager, DbError> {
        let opts = Opts::from_url(dsn).map_err(|e| DbError::BadDsn {
            reason: e.to_string(),
        })?;
        Ok(MysqlManager { opts })
    }

    /// The connection options.
    pub fn opts(&self) -> &Opts {
        &self.opts
    }
}

impl Manager for MysqlManager {
    type Connection = Conn;
    type Error = mysql_async::Error;

    async fn connect(&self) -> Result<Conn, mysql_async::Error> {
        Conn::new(self.opts.clone()).await
    }

    async fn check(&self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        conn.ping().await
    }

    async fn reset(&self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        // A connection comes back dirty from a transaction dropped without commit or
        // rollback: end it. (COM_RESET_CONNECTION would also drop prepared statements.)
        conn.query_drop("ROLLBACK").await
    }
}

/// Sorts a `mysql_async` error into what it means for the caller.
pub(crate) fn classify(error: mysql_async::Error) -> DbError {
    use mysql_async::{DriverError, Error, IoError};
    match error {
        Error::Server(e) => match e.code {
            // ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED: the server dropped the session
            // while (or before) running the statement.
            1053 | 1927 => DbError::broken(true, Error::Server(e)),
            _ => DbError::Query {
                code: Some(e.code.to_string()),
                message: e.message,
            },
        },
        // Known closed before anything was written.
        Error::Driver(DriverError::ConnectionClosed) => DbError::broken(false, error),
        Error::Io(IoError::Io(ref io)) => {
            // EPIPE: the write of the statement itself failed, so the server never read
            // it (a connection the server closed while idle fails exactly like this).
            let not_sent = io.kind() == std::io::ErrorKind::BrokenPipe
                || io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<Error>())
                    .is_some_and(|inner| {
                        matches!(inner, Error::Driver(DriverError::ConnectionClosed))
                    });
            DbError::broken(!not_sent, error)
        }
        Error::Driver(
            DriverError::PacketOutOfOrder
            | DriverError::UnexpectedPacket { .. }
            | DriverError::BadCompressedPacketHeader,
        ) => DbError::broken(true, error),
        Error::Url(e) => DbError::BadDsn {
            reason: e.to_string(),
        },
        // Everything else is refused on the client before sending (bad parameters,
        // unsupported features).
        other => DbError::Query {
            code: None,
            message: other.to_string(),
        },
    }
}

/// `true` for a refused login that another try would meet again: access denied to the
/// database (1044), wrong password or unknown user (1045), unknown database (1049).
pub(crate) fn refused_for_good(error: &mysql_async::Error) -> bool {
    matches!(error, mysql_async::Error::Server(e) if matches!(e.code, 1044 | 1045 | 1049))
}

fn to_param(value: &Value) -> mysql_async::Value {
    use mysql_async::Value as M;
    match value {
        Value::Null => M::NULL,
        Value::Bool(b) => M::Int(i64::from(*b)),
        Value::I64(i) => M::Int(*i),
        Value::U64(u) => M::UInt(*u),
        Value::F64(f) => M::Double(*f),
        Value::Text(t) => M::Bytes(t.clone().into_bytes()),
        Value::Bytes(b) => M::Bytes(b.clone()),
    }
}

fn params(values: &[Value]) -> mysql_async::Params {
    mysql_async::Params::Positional(values.iter().map(to_param).collect())
}

/// The character set number MySQL uses for binary (non-text) data.
const BINARY_CHARSET: u16 = 63;

fn from_mysql(value: mysql_async::Value, column: &Column) -> Result<Value, String> {
    use mysql_async::Value as M;
    Ok(match value {
        M::NULL => Value::Null,
        // The binary protocol sends small unsigned values as Int: keep the column's type.
        M::Int(i) if i >= 0 && column.flags().contains(ColumnFlags::UNSIGNED_FLAG) => {
            Value::U64(i as u64)
        }
        M::Int(i) => Value::I64(i),
        M::UInt(u) => Value::U64(u),
        M::Float(f) => Value::F64(f64::from(f)),
        M::Double(d) => Value::F64(d),
        M::Date(y, mo, d, h, mi, s, us) => {
            let mut text = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            if us > 0 {
                text.push_str(&format!(".{us:06}"));
            }
            Value::Text(text)
        }
        M::Time(negative, days, h, mi, s, us) => {
            let hours = days * 24 + u32::from(h);
            let sign = if negative { "-" } else { "" };
            let mut text = format!("{sign}{hours:02}:{mi:02}:{s:02}");
            if us > 0 {
                text.push_str(&format!(".{us:06}"));
            }
            Value::Text(text)
        }
        // The text protocol sends everything as bytes: read them by the column's type.
        M::Bytes(bytes) => {
            let text = || String::from_utf8(bytes.clone()).map_err(|_| "not utf-8 text".to_owned());
            match column.column_type() {
                ColumnType::MYSQL_TYPE_TINY
                | ColumnType::MYSQL_TYPE_SHORT
                | ColumnType::MYSQL_TYPE_LONG
                | ColumnType::MYSQL_TYPE_INT24
                | ColumnType::MYSQL_TYPE_LONGLONG
                | ColumnType::MYSQL_TYPE_YEAR => {
                    let t = text()?;
                    if column.flags().contains(ColumnFlags::UNSIGNED_FLAG) {
                        Value::U64(t.parse().map_err(|_| format!("bad integer {t:?}"))?)
                    } else {
                        Value::I64(t.parse().map_err(|_| format!("bad integer {t:?}"))?)
                    }
                }
                ColumnType::MYSQL_TYPE_FLOAT | ColumnType::MYSQL_TYPE_DOUBLE => {
                    let t = text()?;
                    Value::F64(t.parse().map_err(|_| format!("bad number {t:?}"))?)
                }
                ColumnType::MYSQL_TYPE_NULL => Value::Null,
                ColumnType::MYSQL_TYPE_BIT | ColumnType::MYSQL_TYPE_GEOMETRY => Value::Bytes(bytes),
                _ if column.character_set() == BINARY_CHARSET
                    && !is_temporal_or_decimal(column) =>
                {
                    Value::Bytes(bytes)
                }
                _ => Value::Text(text()?),
            }
        }
    })
}

fn is_temporal_or_decimal(column: &Column) -> bool {
    matches!(
        column.column_type(),
        ColumnType::MYSQL_TYPE_DECIMAL
            | ColumnType::MYSQL_TYPE_NEWDECIMAL
            | ColumnType::MYSQL_TYPE_DATE
            | ColumnType::MYSQL_TYPE_TIME
            | ColumnType::MYSQL_TYPE_DATETIME
            | ColumnType::MYSQL_TYPE_TIMESTAMP
    )
}

fn convert_rows(rows: Vec<mysql_async::Row>) -> Result<Vec<Row>, DbError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let columns = first.columns();
    let names: Arc<[String]> = columns.iter().map(|c| c.name_str().into_owned()).collect();
    rows.into_iter()
        .map(|row| {
            let values = row
                .unwrap()
                .into_iter()
                .zip(columns.iter())
                .map(|(v, c)| {
                    from_mysql(v, c).map_err(|reason| DbError::Decode {
                        column: c.name_str().into_owned(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Row::new(Arc::clone(&names), values))
        })
        .collect()
}

pub(crate) async fn exec(conn: &mut Conn, stmt: &Statement<'_>) -> Result<ExecResult, DbError> {
    let (sql, values) = (stmt.sql(), stmt.values());
    // The text protocol for plain statements, prepared (and cached per connection) ones
    // for statements with parameters.
    if values.is_empty() {
        let result = conn.query_iter(sql).await.map_err(classify)?;
        let out = ExecResult {
            rows_affected: result.affected_rows(),
            last_insert_id: result.last_insert_id(),
        };
        result.drop_result().await.map_err(classify)?;
        Ok(out)
    } else {
        let result = conn
            .exec_iter(sql, params(values))
            .await
            .map_err(classify)?;
        let out = ExecResult {
            rows_affected: result.affected_rows(),
            last_insert_id: result.last_insert_id(),
        };
        result.drop_result().await.map_err(classify)?;
        Ok(out)
    }
}

pub(crate) async fn query(conn: &mut Conn, stmt: &Statement<'_>) -> Result<Vec<Row>, DbError> {
    let (sql, values) = (stmt.sql(), stmt.values());
    let rows: Vec<mysql_async::Row> = if values.is_empty() {
        conn.query_iter(sql)
            .await
            .map_err(classify)?
            .collect_and_drop()
            .await
    } else {
        conn.exec_iter(sql, params(values))
            .await
            .map_err(classify)?
            .collect_and_drop()
            .await
    }
    .map_err(classify)?;
    convert_rows(rows)
}

pub(crate) async fn ping(conn: &mut Conn) -> Result<(), DbError> {
    conn.ping().await.map_err(classify)
}

pub(crate) async fn begin(conn: &mut Conn) -> Result<(), DbError> {
    conn.query_drop("BEGIN").await.map_err(classify)
}

pub(crate) async fn commit(conn: &mut Conn) -> Result<(), DbError> {
    conn.query_drop("COMMIT").await.map_err(classify)
}

pub(crate) async fn rollback(conn: &mut Conn) -> Result<(), DbError> {
    conn.query_drop("ROLLBACK").await.map_err(classify)
}
