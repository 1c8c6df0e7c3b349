//! Typed RPC messages: the fixed fields of each kind read out of the body.

use std::time::Duration;

use bytes::{Buf, Bytes};

use super::{Flags, Kind, Metadata, RpcFrame};
use crate::CodecError;

/// The status of a RESP. The values are part of the wire format; codes from 1000 up are
/// free for applications.
///
/// ```
/// use longlink_codec::rpc::Status;
/// assert!(Status::OK.is_ok());
/// assert_eq!(Status::REJECTED.name(), "rejected");
/// assert_eq!(Status(1042).name(), "application");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u16);

impl Status {
    /// The handler ran and answered.
    pub const OK: Status = Status(0);
    /// The server refused the request before running it (over its limits). Sent with
    /// `NOT_PROCESSED | RETRYABLE`.
    pub const REJECTED: Status = Status(1);
    /// The deadline passed on the server (before or while running).
    pub const DEADLINE_EXCEEDED: Status = Status(2);
    /// The request was cancelled.
    pub const CANCELLED: Status = Status(3);
    /// No handler for the method.
    pub const UNKNOWN_METHOD: Status = Status(4);
    /// The handler could not read the request.
    pub const BAD_REQUEST: Status = Status(5);
    /// The handler failed.
    pub const INTERNAL: Status = Status(6);
    /// The server is shutting down and did not run the request.
    pub const DRAINING: Status = Status(7);

    /// `true` for [`Status::OK`].
    pub fn is_ok(self) -> bool {
        self == Status::OK
    }

    /// A short lowercase name for logs.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "ok",
            1 => "rejected",
            2 => "deadline exceeded",
            3 => "cancelled",
            4 => "unknown method",
            5 => "bad request",
            6 => "internal",
            7 => "draining",
            1000.. => "application",
            _ => "unknown",
        }
    }
}

/// Codes of an ERR frame (connection-level errors, sent just before closing).
///
/// ```
/// use longlink_codec::rpc::ErrorCode;
/// assert_eq!(ErrorCode::PROTOCOL_MISMATCH.0, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The peer speaks another protocol version.
    pub const PROTOCOL_MISMATCH: ErrorCode = ErrorCode(1);
    /// The peer sent a frame over the limit.
    pub const FRAME_TOO_LARGE: ErrorCode = ErrorCode(2);
    /// The peer sent a frame that could not be read.
    pub const MALFORMED: ErrorCode = ErrorCode(3);
    /// The peer broke the protocol's rules (for example a REQ before HELLO).
    pub const PROTOCOL_VIOLATION: ErrorCode = ErrorCode(4);
    /// The server is over its connection limit.
    pub const OVERLOADED: ErrorCode = ErrorCode(5);
}

/// What a side of a connection takes beyond the base protocol: a bit set carried in HELLO
/// and HELLO_ACK as `features:u32`.
///
/// The client announces what it accepts; the server answers the intersection with what it
/// accepts; each side then uses a feature towards its peer only if the peer announced it.
/// Unknown bits are kept when read (an answer is an intersection, so they never come back).
///
/// ```
/// use longlink_codec::rpc::Features;
/// let offered = Features::ZSTD | Features::from_bits(1 << 7); // a future bit
/// let answered = offered & Features::ZSTD;
/// assert_eq!(answered, Features::ZSTD);
/// assert!(answered.contains(Features::ZSTD) && !Features::NONE.contains(Features::ZSTD));
/// assert_eq!(format!("{offered:?}"), "Features(ZSTD | 0x80)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features(u32);

impl Features {
    /// Nothing beyond the base protocol (also what a HELLO without the field means).
    pub const NONE: Features = Features(0);
    /// Bit 0: REQ/RESP payloads flagged [`Flags::COMPRESSED`] are accepted (one zstd frame
    /// that declares its content size).
    pub const ZSTD: Features = Features(1);

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Features from raw bits, unknown bits included.
    pub const fn from_bits(bits: u32) -> Features {
        Features(bits)
    }

    /// `true` if every feature of `other` is set.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Features {
    type Output = Features;
    fn bitor(self, rhs: Features) -> Features {
        Features(self.0 | rhs.0)
    }
}

impl std::ops::BitAnd for Features {
    type Output = Features;
    fn bitand(self, rhs: Features) -> Features {
        Features(self.0 & rhs.0)
    }
}

impl std::fmt::Debug for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Features(")?;
        let rest = self.0 & !Features::ZSTD.0;
        let zstd = self.contains(Features::ZSTD);
        match (zstd, rest) {
            (false, 0) => f.write_str("NONE")?,
            (true, 0) => f.write_str("ZSTD")?,
            (false, rest) => write!(f, "{rest:#x}")?,
            (true, rest) => write!(f, "ZSTD | {rest:#x}")?,
        }
        f.write_str(")")
    }
}

/// HELLO / HELLO_ACK body: the limits of the side that sends it, and its features.
///
/// On the wire `max_frame_bytes:u32 | max_in_flight:u32 | features:u32`. A peer from before
/// the features field sends 8 bytes, read as [`Features::NONE`]; this crate always writes 12
/// (an older reader ignores the extra bytes, as the protocol reserves them).
///
/// ```
/// use bytes::BytesMut;
/// use longlink_codec::rpc::{Features, Hello, Message, RpcCodec};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let hello = Hello { max_frame_bytes: 1 << 20, max_in_flight: 0, features: Features::ZSTD };
/// let mut wire = BytesMut::new();
/// RpcCodec::new().encode(Message::Hello(hello), &mut wire).unwrap();
/// assert_eq!(&wire[16..], &[0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
/// // An old peer's 8-byte HELLO: no features.
/// let mut old = BytesMut::from(&[0, 0, 0, 8, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0][..]);
/// let Some(Message::Hello(read)) = RpcCodec::new().decode(&mut old).unwrap() else { panic!() };
/// assert_eq!(read.features, Features::NONE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The largest frame body the sender accepts.
    pub max_frame_bytes: u32,
    /// How many requests the sender lets the peer keep in flight on this connection
    /// (0 = no limit announced).
    pub max_in_flight: u32,
    /// What the sender accepts (a client: what it offers; a server: the intersection).
    pub features: Features,
}

/// A call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Chosen by the caller, unique among its requests in flight on the connection.
    pub id: u64,
    /// Time the caller still waits, measured from when the frame was sent; `None` for no
    /// deadline. Carried in whole microseconds, rounded up, at most `u32::MAX` µs (~71 min).
    pub deadline: Option<Duration>,
    /// Which method to run.
    pub method: u32,
    /// Trace context, auth, baggage: empty for most calls (then nothing goes on the wire).
    pub metadata: Metadata,
    /// `body` is one zstd frame (the frame flag [`Flags::COMPRESSED`]). The codec only
    /// carries the flag; compressing and decompressing are the RPC layer's business.
    pub compressed: bool,
    /// The payload.
    pub body: Bytes,
}

/// The answer to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The id of the request answered.
    pub id: u64,
    /// The outcome.
    pub status: Status,
    /// `RETRYABLE`, `NOT_PROCESSED`, `COMPRESSED` (`body` is one zstd frame). `MORE` is the
    /// codec's business and never shows here.
    pub flags: Flags,
    /// The payload (for a failed status, usually an error message).
    pub body: Bytes,
}

/// ERR body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    /// What went wrong.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

/// One complete RPC message, as [`RpcCodec`](super::RpcCodec) reads and writes it.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use longlink_codec::rpc::{Message, Request, RpcCodec};
/// use std::time::Duration;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let req = Message::Request(Request {
///     id: 1,
///     deadline: Some(Duration::from_millis(250)),
///     method: 7,
///     metadata: Default::default(),
///     compressed: false,
///     body: Bytes::from_static(b"ping"),
/// });
/// let mut codec = RpcCodec::new();
/// let mut wire = BytesMut::new();
/// codec.encode(req.clone(), &mut wire).unwrap();
/// assert_eq!(codec.decode(&mut wire).unwrap(), Some(req));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client's opening message.
    Hello(Hello),
    /// Server's answer to HELLO.
    HelloAck(Hello),
    /// A call.
    Request(Request),
    /// The answer to a call.
    Response(Response),
    /// The caller gave up on a request.
    Cancel {
        /// The request's id.
        id: u64,
    },
    /// Liveness probe.
    Ping {
        /// Echoed in the PONG.
        id: u64,
    },
    /// Answer to a PING.
    Pong {
        /// The PING's id.
        id: u64,
    },
    /// The sender takes no request above `last_id` and closes when those are answered.
    GoAway {
        /// Highest request id the sender will still answer.
        last_id: u64,
    },
    /// Flow-control credit: the receiver may send `n` more requests.
    Credit {
        /// Number of requests.
        n: u32,
    },
    /// A connection-level error, sent before closing.
    Error(ErrorFrame),
}

impl Message {
    /// The frame kind this message travels as.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::HelloAck(_) => Kind::HelloAck,
            Message::Request(_) => Kind::Request,
            Message::Response(_) => Kind::Response,
            Message::Cancel { .. } => Kind::Cancel,
            Message::Ping { .. } => Kind::Ping,
            Message::Pong { .. } => Kind::Pong,
            Message::GoAway { .. } => Kind::GoAway,
            Message::Credit { .. } => Kind::Credit,
            Message::Error(_) => Kind::Error,
        }
    }

    /// The id carried in the frame header.
    pub fn id(&self) -> u64 {
        match self {
            Message::Request(r) => r.id,
            Message::Response(r) => r.id,
            Message::Cancel { id } | Message::Ping { id } | Message::Pong { id } => *id,
            _ => 0,
        }
    }
}

/// Microseconds on the wire for a deadline (0 means none).
pub(crate) fn deadline_to_micros(deadline: Option<Duration>) -> u32 {
    match deadline {
        None => 0,
        // Round up so a short deadline never becomes 0 ("none").
        Some(d) => {
            let micros = d.as_nanos().div_ceil(1000);
            micros.clamp(1, u32::MAX as u128) as u32
        }
    }
}

fn need(what: &'static str, body: &Bytes, need: usize) -> Result<(), CodecError> {
    if body.len() < need {
        return Err(CodecError::BodyTooShort {
            what,
            len: body.len(),
            need,
        });
    }
    Ok(())
}

/// Reads a single-frame message, or the first chunk of a chunked one (whose `MORE` flag the
/// caller handles). Longer-than-needed fixed bodies are accepted: the extra bytes are
/// reserved for future fields.
pub(crate) fn parse(frame: RpcFrame) -> Result<Message, CodecError> {
    let RpcFrame {
        kind,
        flags,
        id,
        mut body,
    } = frame;
    let what = kind.name();
    Ok(match kind {
        Kind::Hello | Kind::HelloAck => {
            need(what, &body, 8)?;
            let hello = Hello {
                max_frame_bytes: body.get_u32(),
                max_in_flight: body.get_u32(),
                // Added after the first version: an 8-byte body is a peer without it.
                features: if body.len() >= 4 {
                    Features(body.get_u32())
                } else {
                    Features::NONE
                },
            };
            if kind == Kind::Hello {
                Message::Hello(hello)
            } else {
                Message::HelloAck(hello)
            }
        }
        Kind::Request => {
            need(what, &body, 8)?;
            let micros = body.get_u32();
            let method = body.get_u32();
            let deadline = (micros != 0).then(|| Duration::from_micros(micros.into()));
            let metadata = if flags.contains(Flags::METADATA) {
                need("REQ metadata length", &body, 2)?;
                let len = body.get_u16() as usize;
                need("REQ metadata", &body, len)?;
                Metadata::from_wire(body.split_to(len))?
            } else {
                Metadata::new()
            };
            Message::Request(Request {
                id,
                deadline,
                method,
                metadata,
                compressed: flags.contains(Flags::COMPRESSED),
                body,
            })
        }
        Kind::Response => {
            need(what, &body, 2)?;
            let status = Status(body.get_u16());
            Message::Response(Response {
                id,
                status,
                flags: flags.without(Flags::MORE),
                body,
            })
        }
        Kind::Cancel => Message::Cancel { id },
        Kind::Ping => Message::Ping { id },
        Kind::Pong => Message::Pong { id },
        Kind::GoAway => {
            need(what, &body, 8)?;
            Message::GoAway {
                last_id: body.get_u64(),
            }
        }
        Kind::Credit => {
            need(what, &body, 4)?;
            Message::Credit { n: body.get_u32() }
        }
        Kind::Error => {
            need(what, &body, 2)?;
            let code = ErrorCode(body.get_u16());
            let message = String::from_utf8(body.to_vec()).map_err(|e| CodecError::Malformed {
                what,
                reason: e.to_string(),
            })?;
            Message::Error(ErrorFrame { code, message })
        }
    })
}
