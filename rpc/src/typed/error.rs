//! What a typed handler fails with.

use std::fmt;

use crate::{Flags, Response, Status};

/// An error a typed handler returns: a status and a message, and whether the handler did
/// nothing (so the caller may send the call again, or elsewhere). The caller sees it as
/// [`RpcError::Remote`](crate::RpcError::Remote).
///
/// Any `std::error::Error` converts into it, so a handler can use `?` on a database error
/// or an I/O error: the status is [`Status::INTERNAL`] and the message the error's text with
/// its sources. (For that conversion to exist, `ServiceError` itself does not implement
/// `std::error::Error` — as with `anyhow::Error`.)
///
/// ```
/// use longlink_rpc::ServiceError;
///
/// fn parse(text: &str) -> Result<u32, ServiceError> {
///     Ok(text.parse::<u32>()?) // a ParseIntError becomes a ServiceError
/// }
/// let e = parse("x").unwrap_err();
/// assert_eq!(e.status, longlink_rpc::Status::INTERNAL.0);
/// assert_eq!(e.message, "invalid digit found in string");
///
/// // Say that nothing was done, and that trying again may work (a dependency was down):
/// let e = ServiceError::new(1001, "store unavailable").not_processed().retryable();
/// assert!(e.not_processed && e.retryable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceError {
    /// The status code (values below 1000 are the protocol's; use 1000 and up).
    pub status: u16,
    /// What went wrong.
    pub message: String,
    /// The handler did nothing: the caller's error says the call did not run.
    pub not_processed: bool,
    /// Trying again (later, or elsewhere) may succeed.
    pub retryable: bool,
}

impl ServiceError {
    /// An application error (the handler may have done part of its work).
    pub fn new(status: u16, message: impl Into<String>) -> ServiceError {
        ServiceError {
            status,
            message: message.into(),
            not_processed: false,
            retryable: false,
        }
    }

    /// Marks it as "nothing was done": the caller may send the call again or elsewhere
    /// (a typed client over a [`Balancer`](crate::Balancer) fails over on it).
    pub fn not_processed(mut self) -> ServiceError {
        self.not_processed = true;
        self
    }

    /// Marks it as worth trying again.
    pub fn retryable(mut self) -> ServiceError {
        self.retryable = true;
        self
    }

    /// The answer the server sends for it.
    pub fn into_response(self) -> Response {
        let mut flags = Flags::NONE;
        if self.not_processed {
            flags |= Flags::NOT_PROCESSED;
        }
        if self.retryable {
            flags |= Flags::RETRYABLE;
        }
        Response::error(Status(self.status), self.message).with_flags(flags)
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {}: {}", self.status, self.message)?;
        if self.not_processed {
            f.write_str(" (not processed)")?;
        }
        Ok(())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ServiceError {
    fn from(e: E) -> ServiceError {
        // The error's text, then each source's that it does not already contain (many
        // errors repeat their source's text in their own).
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        ServiceError::new(Status::INTERNAL.0, message)
    }
}
