//! The request and response that travel through `tower::Service`s on both sides.

use std::time::Instant;

use bytes::Bytes;
pub use longlink_codec::rpc::{Flags, Metadata, MetadataError, Status};

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
    /// Entries carried beside the payload: trace context (see [`trace`](crate::trace)),
    /// auth, baggage. Empty by default, and then nothing goes on the wire.
    pub metadata: Metadata,
}

impl Request {
    /// A request without a deadline.
    pub fn new(method: u32, body: impl Into<Bytes>) -> Request {
        Request {
            method,
            body: body.into(),
            deadline: None,
            metadata: Metadata::new(),
        }
    }

    /// The same request with a deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Request {
        self.deadline = Some(deadline);
        self
    }

    /// The same request with these metadata entries.
    ///
    /// ```
    /// use longlink_rpc::{Metadata, Request};
    /// let mut meta = Metadata::builder();
    /// meta.insert("authorization", "Bearer abc")?;
    /// let req = Request::new(1, "hi").with_metadata(meta.build());
    /// assert_eq!(req.metadata.get_str("authorization"), Some("Bearer abc"));
    /// # Ok::<(), longlink_rpc::MetadataError>(())
    /// ```
    pub fn with_metadata(mut self, metadata: Metadata) -> Request {
        self.metadata = metadata;
        self
    }
}

/// A server's answer. Build it with [`ok`](Response::ok) or [`error`](Response::error).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// The outcome.
    pub status: Status,
    /// The payload (for a failure, a message).
    pub body: Bytes,
    /// What the client learns besides the status: [`Flags::NOT_PROCESSED`] (the handler
    /// did nothing, so the call may go elsewhere) and [`Flags::RETRYABLE`].
    pub flags: Flags,
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
            flags: Flags::NONE,
        }
    }

    /// A failure with a status (1000 and up for application codes) and a message.
    pub fn error(status: Status, message: impl Into<String>) -> Response {
        Response {
            status,
            body: Bytes::from(message.into()),
            flags: Flags::NONE,
        }
    }

    /// The same answer with `flags` added: a failure the handler marks
    /// `NOT_PROCESSED | RETRYABLE` reaches the caller as an error that did not run.
    ///
    /// ```
    /// use longlink_rpc::{Flags, Response, Status};
    /// let r = Response::error(Status(1001), "store down").with_flags(Flags::NOT_PROCESSED | Flags::RETRYABLE);
    /// assert!(r.flags.contains(Flags::NOT_PROCESSED));
    /// ```
    pub fn with_flags(mut self, flags: Flags) -> Response {
        // Framing flags are the server's business, not the handler's.
        self.flags |= flags.without(Flags::MORE | Flags::COMPRESSED);
        self
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
