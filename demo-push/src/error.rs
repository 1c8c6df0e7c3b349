//! The push system's error type.

use longlink_pool::db::DbError;

/// What went wrong inside the push system, and whether the request may have had effects.
///
/// ```
/// use longlink_push::PushError;
/// let e = PushError::Invalid("uid is empty".into());
/// assert!(!e.may_have_run());
/// let e = PushError::Unavailable { service: "saver", detail: "timed out".into(), may_have_run: true };
/// assert!(e.may_have_run());
/// assert_eq!(e.to_string(), "saver unavailable: timed out (it may have run)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The message store failed; [`DbError::may_have_run`] says whether the statement may
    /// have taken effect.
    #[error("storage unavailable: {0}")]
    Storage(#[from] DbError),
    /// A bounded queue was full: nothing was done.
    #[error(transparent)]
    Overloaded(#[from] crate::workers::Overloaded),
    /// A request was not valid: nothing was done.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Another service of the cluster failed or refused (down, overloaded, timed out).
    #[error("{service} unavailable: {detail}{}", if *may_have_run { " (it may have run)" } else { " (it did not run)" })]
    Unavailable {
        /// Which service (`store` when the message store itself failed behind the saver).
        service: &'static str,
        /// What happened.
        detail: String,
        /// Whether the call may have had effects there.
        may_have_run: bool,
    },
}

impl PushError {
    /// `true` unless it is proven that the request had no effect.
    pub fn may_have_run(&self) -> bool {
        match self {
            PushError::Storage(e) => e.may_have_run(),
            PushError::Overloaded(_) | PushError::Invalid(_) => false,
            PushError::Unavailable { may_have_run, .. } => *may_have_run,
        }
    }

    /// A failure of `service` that provably did nothing (it was not reached).
    pub fn unavailable(service: &'static str, detail: impl Into<String>) -> PushError {
        PushError::Unavailable {
            service,
            detail: detail.into(),
            may_have_run: false,
        }
    }
}
