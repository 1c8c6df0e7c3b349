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
}
