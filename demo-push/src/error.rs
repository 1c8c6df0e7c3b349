//! The push system's error type.

use longlink_pool::db::DbError;

/// What went wrong inside the push system.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The message store failed (the push was not accepted: nothing is half-stored).
    #[error("storage unavailable: {0}")]
    Storage(#[from] DbError),
    /// A bounded queue was full.
    #[error(transparent)]
    Overloaded(#[from] crate::workers::Overloaded),
    /// A request was not valid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Another service of the cluster failed or refused (it is down, overloaded or timed
    /// out): the request was not completed.
    #[error("{service} unavailable: {detail}")]
    Unavailable {
        /// Which service (`store` when the message store itself failed behind the saver).
        service: &'static str,
        /// What happened, including whether the call may have run.
        detail: String,
    },
}
