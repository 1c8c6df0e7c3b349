//! The client's error type: what happened, and whether the request may have run.

use std::fmt;

/// Which bound an overloaded call hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverloadScope {
    /// `max_in_flight` calls were in flight and the queue was full.
    Queue,
    /// The call waited `max_queue_wait` in the queue without getting a slot.
    QueueWait,
    /// Every connection was at the limit the server advertised in its HELLO_ACK.
    Server,
}

impl fmt::Display for OverloadScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverloadScope::Queue => "in-flight limit reached and queue full",
            OverloadScope::QueueWait => "no slot within the queue wait",
            OverloadScope::Server => "every connection at the server's advertised limit",
        })
    }
}

/// Where a deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadlinePhase {
    /// Before the request was sent (waiting for a slot or a connection): it did not run.
    Queued,
    /// After it was sent, waiting for the answer: it may have run.
    InFlight,
    /// The server dropped it before running the handler.
    BeforeDispatch,
    /// The server gave up on the running handler.
    InHandler,
}

impl fmt::Display for DeadlinePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeadlinePhase::Queued => "before the request was sent",
            DeadlinePhase::InFlight => "waiting for the answer (the request may have run)",
            DeadlinePhase::BeforeDispatch => "before the server ran the handler",
            DeadlinePhase::InHandler => "while the handler ran",
        })
    }
}

/// Why a call failed. Every variant answers two questions a caller deciding to retry has:
/// [`may_have_run`](RpcError::may_have_run) and [`is_retryable`](RpcError::is_retryable).
///
/// ```
/// use longlink_rpc::{OverloadScope, RpcError};
/// let e = RpcError::Overloaded { scope: OverloadScope::Queue };
/// assert!(!e.may_have_run() && e.is_retryable());
/// assert_eq!(e.to_string(), "overloaded: in-flight limit reached and queue full");
/// let e = RpcError::ConnectionLost { written: true };
/// assert!(e.may_have_run() && !e.is_retryable());
/// // A handler that said it did nothing (its database was down, say) is safe to retry.
/// let e = RpcError::Remote { status: 1001, message: "store down".into(), not_processed: true, retryable: true };
/// assert!(!e.may_have_run() && e.is_retryable());
/// assert_eq!(e.to_string(), "remote error 1001: store down (not processed)");
/// // A certificate refused: it did not run, and the same call will fail the same way.
/// let e = RpcError::Tls { reason: "invalid peer certificate: UnknownIssuer".into() };
/// assert!(!e.may_have_run() && !e.is_retryable());
/// // An answer that could not be decompressed: the call reached the server.
/// let e = RpcError::BadResponse { reason: "corrupt compressed body: not a zstd frame".into() };
/// assert!(e.may_have_run() && !e.is_retryable());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// Refused locally by the target's flow control; not sent.
    #[error("overloaded: {scope}")]
    Overloaded {
        /// The bound that was hit.
        scope: OverloadScope,
    },
    /// The server refused it before running the handler (over its limits).
    #[error("rejected by the server: {message}")]
    Rejected {
        /// Whether the server said retrying is fine.
        retryable: bool,
        /// The server's explanation.
        message: String,
    },
    /// The deadline passed.
    #[error("deadline exceeded {phase}")]
    DeadlineExceeded {
        /// Where.
        phase: DeadlinePhase,
    },
    /// The server cancelled the request.
    #[error("cancelled by the server")]
    Cancelled,
    /// No connection to the target could be made.
    #[error("target unavailable: {reason}")]
    Unavailable {
        /// Why (the connect error, or that reconnecting is backing off).
        reason: String,
    },
    /// The TLS handshake with the target failed, or the target refused this client's
    /// certificate (feature `tls`): an unknown CA, a certificate for another name, a
    /// server that wants a client certificate, a peer that does not speak TLS. Nothing was
    /// sent; retrying will not help until a certificate or the configuration changes.
    #[error("TLS with the target failed: {reason}")]
    Tls {
        /// What rustls said, with a hint.
        reason: String,
    },
    /// The connection broke before the answer arrived.
    #[error("connection lost {}", if *written { "after the request was sent" } else { "before the request was sent" })]
    ConnectionLost {
        /// Whether the request had been written to the socket.
        written: bool,
    },
    /// The server is shutting down and did not take the request.
    #[error("server is draining")]
    Draining,
    /// The peer speaks another protocol version or broke the protocol.
    #[error("protocol mismatch: {detail}")]
    ProtocolMismatch {
        /// What did not match.
        detail: String,
    },
    /// The request is larger than the limit (the frame limit, or the whole in-flight byte
    /// budget).
    #[error("request of {len} bytes exceeds limit {max}")]
    FrameTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The server answered, but the answer could not be read: a compressed body that is
    /// corrupt, does not declare its size, declares more than the message limit, or came
    /// on a connection where this client did not offer compression. The call reached the
    /// server, so it may have run; the same call is likely to fail the same way.
    #[error("unreadable answer from the server (the call may have run): {reason}")]
    BadResponse {
        /// What was wrong with it.
        reason: String,
    },
    /// The handler failed. It ran, unless it said it did no work (`not_processed`, from
    /// [`ServiceError::not_processed`](crate::ServiceError::not_processed)).
    #[error("remote error {status}: {message}{}", if *not_processed { " (not processed)" } else { "" })]
    Remote {
        /// The status code (1000 and up: the application's).
        status: u16,
        /// The handler's message.
        message: String,
        /// The handler said it did nothing: the call may be sent again (or elsewhere).
        not_processed: bool,
        /// The handler said trying again later may succeed.
        retryable: bool,
    },
}

impl RpcError {
    /// `true` when the request may have run on the server (it reached it, or nothing
    /// proves it did not).
    pub fn may_have_run(&self) -> bool {
        match self {
            RpcError::Overloaded { .. }
            | RpcError::Rejected { .. }
            | RpcError::Unavailable { .. }
            | RpcError::Tls { .. }
            | RpcError::Draining
            | RpcError::ProtocolMismatch { .. }
            | RpcError::FrameTooLarge { .. } => false,
            RpcError::DeadlineExceeded { phase } => {
                matches!(phase, DeadlinePhase::InFlight | DeadlinePhase::InHandler)
            }
            RpcError::ConnectionLost { written } => *written,
            RpcError::Remote { not_processed, .. } => !not_processed,
            RpcError::Cancelled | RpcError::BadResponse { .. } => true,
        }
    }

    /// `true` when sending the same request again (later, or elsewhere) is safe and may
    /// succeed: it did not run, and the failure is not permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            RpcError::Overloaded { .. } | RpcError::Unavailable { .. } | RpcError::Draining => true,
            RpcError::Rejected { retryable, .. } => *retryable,
            RpcError::Remote {
                not_processed,
                retryable,
                ..
            } => *not_processed && *retryable,
            RpcError::ConnectionLost { written } => !written,
            RpcError::DeadlineExceeded { phase } => {
                matches!(phase, DeadlinePhase::Queued | DeadlinePhase::BeforeDispatch)
            }
            _ => false,
        }
    }
}
