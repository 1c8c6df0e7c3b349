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
    #[error("connect failed: {}", Chain(.0.as_ref()))]
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

fn timeout_message<E: std::error::Error + 'static>(
    waited: Duration,
    cause: Option<&E>,
    stats: &Stats,
) -> String {
    let mut text = format!(
        "timed out after {waited:?} waiting for a connection ({} open of {}, {} in use, {} waiting)",
        stats.open, stats.max_open, stats.in_use, stats.waiting
    );
    if let Some(cause) = cause {
        text.push_str(&format!("; last connect error: {}", Chain(cause)));
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

/// Shows an error and its causes, each once: drivers repeat their causes in their own
/// text (mysql_async printed "Input/output error: Input/output error: connection refused"),
/// so a level's text keeps only what its cause does not already say.
///
/// Walks at most eight levels, from the outside in; a level that does not end with its
/// cause's text but contains it already says everything, and the walk stops there.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut level = Some(self.0);
        let mut depth = 0;
        while let Some(error) = level {
            let text = error.to_string();
            let cause = error.source().filter(|_| depth < 8);
            let own = match cause.map(|c| c.to_string()) {
                Some(inner) if !inner.is_empty() && text.ends_with(&inner) => {
                    let own = text[..text.len() - inner.len()].trim_end();
                    own.trim_end_matches(':').trim_end().to_owned()
                }
                Some(inner) if !inner.is_empty() && text.contains(&inner) => {
                    push_distinct(&mut parts, text);
                    break;
                }
                _ => text,
            };
            push_distinct(&mut parts, own);
            level = cause;
            depth += 1;
        }
        f.write_str(&parts.join(": "))
    }
}

fn push_distinct(parts: &mut Vec<String>, part: String) {
    if !part.is_empty() && parts.last() != Some(&part) {
        parts.push(part);
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug)]
    struct Wrap(&'static str, Option<Box<Wrap>>);

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)?;
            match &self.1 {
                Some(inner) if !self.0.is_empty() => write!(f, ": {inner}"),
                Some(inner) => write!(f, "{inner}"),
                None => Ok(()),
            }
        }
    }

    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn repeated_driver_prefixes_are_shown_once() {
        // mysql_async: Error::Io(IoError::Io(io)), both levels saying "Input/output error".
        let leaf = Wrap("connection refused", None);
        let io = Wrap("Input/output error", Some(Box::new(leaf)));
        let top = Wrap("Input/output error", Some(Box::new(io)));
        assert_eq!(
            top.to_string(),
            "Input/output error: Input/output error: connection refused"
        );
        assert_eq!(
            Chain(&top).to_string(),
            "Input/output error: connection refused"
        );
    }

    #[test]
    fn a_cause_left_out_of_the_text_is_added() {
        let top = Wrap("", Some(Box::new(Wrap("refused", None))));
        assert_eq!(Chain(&top).to_string(), "refused");
        #[derive(Debug)]
        struct Quiet(Wrap);
        impl std::fmt::Display for Quiet {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connect failed")
            }
        }
        impl std::error::Error for Quiet {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let quiet = Quiet(Wrap("timed out", None));
        assert_eq!(Chain(&quiet).to_string(), "connect failed: timed out");
    }
}
