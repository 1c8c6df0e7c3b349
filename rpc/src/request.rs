//! The request and response that travel through `tower::Service`s on both sides.

use std::time::Instant;

use bytes::Bytes;
pub use longlink_codec::rpc::Status;

/// A call: which method, its payload, and when the caller stops waiting.
///
/// On the server, `deadline` is the client's relative deadline turned into an instant at
/// arrival; on the client, it is when the call gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method id (see [`method_id`](crate::method_id) for ids derived from names).
    pub method: u32,
    /// The payload.
    pub body: Bytes,
    /// When the caller stops waiting, if ever.
    pub deadline: Option<Instant>,
}

impl Request {
    /// A request without a deadline.
    pub fn new(method: u32, body: impl Into<Bytes>) -> Request {
        Request {
            method,
            body: body.into(),
            deadline: None,
        }
    }

    /// The same request with a deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Request {
        self.deadline = Some(deadline);
        self
    }
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The outcome.
    pub status: Status,
    /// The payload (for a failure, a message).
    pub body: Bytes,
}

impl Response {
    /// A successful answer.
    ///
    /// ```
    /// use longlink_rpc::{Response, Status};
    /// assert_eq!(Response::ok("hi").status, Status::OK);
    /// ```
    pub fn ok(body: impl Into<Bytes>) -> Response {
        Response {
            status: Status::OK,
            body: body.into(),
        }
    }

    /// A failure with a status (1000 and up for application codes) and a message.
    pub fn error(status: Status, message: impl Into<String>) -> Response {
        Response {
            status,
            body: Bytes::from(message.into()),
        }
    }
}

/// A stable method id from a name: 32-bit FNV-1a, so reordering methods never changes ids.
///
/// ```
/// const ECHO: u32 = longlink_rpc::method_id("Echo.echo");
/// assert_eq!(ECHO, longlink_rpc::method_id("Echo.echo"));
/// assert_ne!(ECHO, longlink_rpc::method_id("Echo.add"));
/// ```
pub const fn method_id(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}
