//! What a `sqlx` error (PostgreSQL or SQLite) means for the caller.

use super::DbError;

/// Sorts a `sqlx` error (PostgreSQL or SQLite) into what it means for the caller.
pub(crate) fn classify(error: sqlx::Error) -> DbError {
    match error {
        sqlx::Error::Database(e) => {
            let code = e.code().map(|c| c.into_owned());
            // SQLSTATE class 08 (connection exception) and 57P (operator intervention:
            // terminated, shutting down): the session is gone. PostgreSQL sends the same
            // 57P01 whether the backend was killed while idle or mid-statement, so this
            // cannot prove the statement did not run; the pool's ping before reuse is what
            // catches a connection killed while idle.
            if code
                .as_deref()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
            {
                return DbError::broken(true, sqlx::Error::Database(e));
            }
            DbError::Query {
                code,
                message: e.message().to_owned(),
            }
        }
        sqlx::Error::Io(io) => {
            // EPIPE: the write of the statement failed; the server never read it.
            let not_sent = io.kind() == std::io::ErrorKind::BrokenPipe;
            DbError::broken(!not_sent, sqlx::Error::Io(io))
        }
        e @ (sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed) => {
            DbError::broken(true, e)
        }
        sqlx::Error::ColumnDecode { index, source } => DbError::Decode {
            column: index,
            reason: source.to_string(),
        },
        sqlx::Error::Decode(e) => DbError::Decode {
            column: String::new(),
            reason: e.to_string(),
        },
        sqlx::Error::Configuration(e) => DbError::BadDsn {
            reason: e.to_string(),
        },
        other => DbError::Query {
            code: None,
            message: other.to_string(),
        },
    }
}

/// `true` for a refused login that another try would meet again: SQLSTATE class 28
/// (invalid authorization: wrong password `28P01`, unknown role or no `pg_hba.conf` entry
/// `28000`) and `3D000` (unknown database).
pub(crate) fn refused_for_good(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|code| code.starts_with("28") || code == "3D000"),
        _ => false,
    }
}
