//! The one error type of the crate.

use std::io;

/// Everything that can go wrong while decoding or encoding a frame.
///
/// Every variant that describes bad input is raised **before** any memory is reserved for
/// the body, so a peer cannot make us allocate by announcing a large length. After a decode
/// error the byte stream is out of sync: the connection should be closed (after, where the
/// protocol allows, telling the peer why).
///
/// ```
/// use bytes::BytesMut;
/// use longlink_codec::{CodecError, rpc::RpcFrameCodec};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = RpcFrameCodec::new().max_frame_bytes(1024);
/// // A header announcing a 4 KiB body.
/// let mut src = BytesMut::from(&[0, 0, 16, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7][..]);
/// let err = codec.decode(&mut src).unwrap_err();
/// assert!(matches!(err, CodecError::FrameTooLarge { len: 4096, max: 1024 }));
/// assert_eq!(err.to_string(), "frame of 4096 bytes exceeds limit 1024");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The length announced in a header (or the length of a message being sent) is over the limit.
    #[error("frame of {len} bytes exceeds limit {max}")]
    FrameTooLarge {
        /// The announced length in bytes.
        len: u64,
        /// The configured limit in bytes.
        max: u64,
    },
    /// A message reassembled from `MORE` chunks grew past its limit.
    #[error("message of at least {len} bytes exceeds limit {max}")]
    MessageTooLarge {
        /// Bytes received so far for the message, including the chunk that broke the limit.
        len: u64,
        /// The configured limit in bytes.
        max: u64,
    },
    /// The header-length field of a push frame is smaller than the fixed header or larger than the frame.
    #[error("header length {header_len} does not fit a frame of {frame_len} bytes")]
    BadHeaderLength {
        /// The header length the peer announced.
        header_len: u16,
        /// The frame length the peer announced.
        frame_len: u32,
    },
    /// The frame carries a protocol version this side does not speak.
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion {
        /// The version found in the header.
        version: u16,
    },
    /// The RPC frame kind is not one this side knows.
    #[error("unknown frame kind {kind}")]
    UnknownKind {
        /// The kind byte found in the header.
        kind: u8,
    },
    /// The push operation is not one this side knows.
    #[error("unknown push op {op}")]
    UnknownOp {
        /// The op found in the header.
        op: u32,
    },
    /// The body is shorter than the fixed part its kind requires.
    #[error("{what} body of {len} bytes is shorter than the {need} bytes it requires")]
    BodyTooShort {
        /// Which frame kind or op was being read.
        what: &'static str,
        /// The body length received.
        len: usize,
        /// The minimum body length for that kind.
        need: usize,
    },
    /// A frame's flags are not allowed on its kind (for example `MORE` on a PING).
    #[error("flags {flags:#06x} are not valid on a {what} frame")]
    BadFlags {
        /// Which frame kind was being read.
        what: &'static str,
        /// The flags found in the header.
        flags: u16,
    },
    /// A continuation chunk does not match the message it continues (different kind).
    #[error("chunk for id {id} does not continue a {what} message")]
    UnexpectedChunk {
        /// The id of the frame.
        id: u64,
        /// The kind of the message that was being reassembled.
        what: &'static str,
    },
    /// More messages are being reassembled at once than the limit allows.
    #[error("more than {max} chunked messages in progress at once")]
    TooManyPartialMessages {
        /// The configured limit.
        max: usize,
    },
    /// Chunked messages being joined would hold more bytes than the limit allows.
    #[error("chunked messages in progress would hold {len} bytes, over the limit {max}")]
    PartialBytesExceeded {
        /// Bytes the joins would hold with the chunk that broke the limit.
        len: u64,
        /// The configured limit.
        max: u64,
    },
    /// A body could not be read as the typed message its op names.
    #[error("malformed {what} body: {reason}")]
    Malformed {
        /// Which op or kind was being read.
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A JSON text message could not be read or written.
    #[error("invalid json message: {0}")]
    Json(#[from] serde_json::Error),
    /// The transport failed (surfaced through `tokio_util::codec::Framed`).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl CodecError {
    /// `true` when the error came from the peer's bytes (as opposed to the transport).
    ///
    /// A server answers such errors with an error frame before closing; it simply closes on
    /// transport errors.
    ///
    /// ```
    /// use longlink_codec::CodecError;
    /// assert!(CodecError::UnknownKind { kind: 99 }.is_bad_input());
    /// assert!(!CodecError::Io(std::io::ErrorKind::BrokenPipe.into()).is_bad_input());
    /// ```
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, CodecError::Io(_))
    }
}
