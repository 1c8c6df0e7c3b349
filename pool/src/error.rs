//! The pool's error type.

use std::sync::Arc;
use std::time::Duration;

use crate::Stats;

/// Why an acquire failed. `E` is the manager's error.
///
/// No variant means a statement ran: an acquire sends nothing but connects and pings.
///
/// ```
/// use longlink_pool::PoolError;
/// let err: PoolError<std::io::Error> = PoolError::Closed;
/// assert_eq!(err.to_string(), "pool is closed");
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E: std::error::Error + 'static> {
    /// The pool was closed.
    #[error("pool is closed")]
    Closed,
    /// Opening a connection for this acquire failed: the database is unreachable or refused.
    #[error("connect failed: {0}")]
    Connect(#[source] Arc<E>),
    /// No connection became free in time. When connects failed meanwhile, `last_connect_error`
    /// says why (the database is down, not merely busy).
    #[error("{}", timeout_message(*waited, last_connect_error.as_deref(), stats))]
    Timeout {
        /// How long the acquire waited.
        waited: Duration,
        /// The most recent connect failure while it waited, if any.
        last_connect_error: Option<Arc<E>>,
        /// The pool's counters when it gave up.
        stats: Box<Stats>,
    },
}

fn timeout_message<E: std::fmt::Display>(
    waited: Duration,
    cause: Option<&E>,
    stats: &Stats,
) -> String {
    let mut text = format!(
        "timed out after {waited:?} waiting for a connection ({} open of {}, {} in use, {} waiting)",
        stats.open, stats.max_open, stats.in_use, stats.waiting
    );
    if let Some(cause) = cause {
        text.push_str(&format!("; last connect error: {cause}"));
    }
    text
}

impl<E: std::error::Error + 'static> PoolError<E> {
    /// `true` when trying again later may succeed (a timeout or a failed connect).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, PoolError::Closed)
    }

    /// The driver error behind a connect failure or a timeout, if there is one.
    pub fn cause(&self) -> Option<&E> {
        match self {
            PoolError::Connect(e) => Some(e),
            PoolError::Timeout {
                last_connect_error, ..
            } => last_connect_error.as_deref(),
            PoolError::Closed => None,
        }
    }
}
