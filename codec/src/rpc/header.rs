//! The fixed 16-byte RPC frame header and its fields.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use bytes::{Buf, BufMut};

use crate::CodecError;

/// Length of the fixed RPC frame header in bytes.
pub const HEADER_LEN: usize = 16;

/// The protocol version this crate speaks. A frame with another version is refused with
/// [`CodecError::UnsupportedVersion`].
pub const VERSION: u8 = 1;

/// What a frame carries. The byte values are part of the wire format.
///
/// ```
/// use longlink_codec::rpc::Kind;
/// assert_eq!(Kind::try_from(3).unwrap(), Kind::Request);
/// assert_eq!(Kind::Request.name(), "REQ");
/// assert!(Kind::try_from(0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client → server, first frame: `max_frame_bytes:u32 | max_in_flight:u32`.
    Hello = 1,
    /// Server → client answer to HELLO, same body: the server's limits.
    HelloAck = 2,
    /// A call: `deadline_us:u32 | method:u32 | [meta_len:u16 | metadata] | payload`.
    Request = 3,
    /// The answer to a call with the same id: `status:u16 | payload`.
    Response = 4,
    /// The caller gave up on the request with this id; empty body.
    Cancel = 5,
    /// Liveness probe; the peer answers PONG with the same id; empty body.
    Ping = 6,
    /// Answer to PING; empty body.
    Pong = 7,
    /// The sender will accept no request with an id above `last_id:u64` and will close
    /// once the ones at or below it are answered.
    GoAway = 8,
    /// The receiver may have `n:u32` more requests in flight (flow-control credit).
    Credit = 9,
    /// A connection-level error before closing: `code:u16 | utf-8 message`.
    Error = 10,
}

impl Kind {
    /// The short wire name used in logs and docs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "HELLO",
            Kind::HelloAck => "HELLO_ACK",
            Kind::Request => "REQ",
            Kind::Response => "RESP",
            Kind::Cancel => "CANCEL",
            Kind::Ping => "PING",
            Kind::Pong => "PONG",
            Kind::GoAway => "GOAWAY",
            Kind::Credit => "CREDIT",
            Kind::Error => "ERR",
        }
    }

    /// The flags this kind may carry.
    pub(crate) fn allowed_flags(self) -> Flags {
        match self {
            Kind::Request => Flags::MORE | Flags::METADATA | Flags::COMPRESSED,
            Kind::Response => {
                Flags::MORE | Flags::RETRYABLE | Flags::NOT_PROCESSED | Flags::COMPRESSED
            }
            _ => Flags::NONE,
        }
    }
}

impl TryFrom<u8> for Kind {
    type Error = CodecError;

    fn try_from(kind: u8) -> Result<Kind, CodecError> {
        Ok(match kind {
            1 => Kind::Hello,
            2 => Kind::HelloAck,
            3 => Kind::Request,
            4 => Kind::Response,
            5 => Kind::Cancel,
            6 => Kind::Ping,
            7 => Kind::Pong,
            8 => Kind::GoAway,
            9 => Kind::Credit,
            10 => Kind::Error,
            kind => return Err(CodecError::UnknownKind { kind }),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Frame flags (a bit set).
///
/// ```
/// use longlink_codec::rpc::Flags;
/// let f = Flags::RETRYABLE | Flags::NOT_PROCESSED;
/// assert!(f.contains(Flags::RETRYABLE));
/// assert!(!f.contains(Flags::MORE));
/// assert_eq!(f.bits(), 0b110);
/// assert_eq!(format!("{f:?}"), "Flags(RETRYABLE | NOT_PROCESSED)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// More chunks of this message follow (REQ, RESP).
    pub const MORE: Flags = Flags(1);
    /// The caller may retry the call (RESP).
    pub const RETRYABLE: Flags = Flags(2);
    /// The server did not run the handler (RESP): safe to retry even if not idempotent.
    pub const NOT_PROCESSED: Flags = Flags(4);
    /// A metadata section follows the fixed fields (REQ, first frame only).
    pub const METADATA: Flags = Flags(8);
    /// The payload — the whole joined message's, after the REQ metadata section — is one
    /// zstd frame (REQ, RESP; first frame only). Sent only to a peer that announced
    /// [`Features::ZSTD`](super::Features::ZSTD) in its HELLO / HELLO_ACK.
    pub const COMPRESSED: Flags = Flags(16);

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags from raw bits, unknown bits included.
    pub const fn from_bits(bits: u16) -> Flags {
        Flags(bits)
    }

    /// `true` if every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags without those of `other`.
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// `true` if no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::MORE, "MORE"),
            (Flags::RETRYABLE, "RETRYABLE"),
            (Flags::NOT_PROCESSED, "NOT_PROCESSED"),
            (Flags::METADATA, "METADATA"),
            (Flags::COMPRESSED, "COMPRESSED"),
        ];
        f.write_str("Flags(")?;
        let mut first = true;
        let mut rest = self.0;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{rest:#x}")?;
        }
        f.write_str(")")
    }
}

/// A decoded RPC frame header: `len:u32 | ver:u8 | kind:u8 | flags:u16 | id:u64`, big-endian,
/// where `len` is the length of the body that follows the 16 header bytes.
///
/// ```
/// use longlink_codec::rpc::{FrameHeader, Kind, Flags};
/// let header = FrameHeader { body_len: 5, kind: Kind::Request, flags: Flags::MORE, id: 9 };
/// let mut wire = Vec::new();
/// header.write(&mut wire);
/// assert_eq!(wire, [0, 0, 0, 5, 1, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]);
/// assert_eq!(FrameHeader::parse(&wire).unwrap(), header);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Length of the body after the header.
    pub body_len: u32,
    /// What the frame carries.
    pub kind: Kind,
    /// Flags; which are allowed depends on the kind.
    pub flags: Flags,
    /// Request id (REQ, RESP, CANCEL), probe id (PING, PONG), or 0.
    pub id: u64,
}

impl FrameHeader {
    /// Reads a header from the first [`HEADER_LEN`] bytes of `src`.
    ///
    /// Checks the version and the kind; the caller checks the length against its limit.
    ///
    /// # Panics
    /// If `src` is shorter than [`HEADER_LEN`].
    pub fn parse(mut src: &[u8]) -> Result<FrameHeader, CodecError> {
        let body_len = src.get_u32();
        let version = src.get_u8();
        let kind = src.get_u8();
        let flags = Flags(src.get_u16());
        let id = src.get_u64();
        if version != VERSION {
            return Err(CodecError::UnsupportedVersion {
                version: version.into(),
            });
        }
        let kind = Kind::try_from(kind)?;
        if !kind.allowed_flags().contains(flags) {
            return Err(CodecError::BadFlags {
                what: kind.name(),
                flags: flags.0,
            });
        }
        Ok(FrameHeader {
            body_len,
            kind,
            flags,
            id,
        })
    }

    /// Writes the header (with [`VERSION`]).
    pub fn write<B: BufMut>(&self, dst: &mut B) {
        dst.put_u32(self.body_len);
        dst.put_u8(VERSION);
        dst.put_u8(self.kind as u8);
        dst.put_u16(self.flags.0);
        dst.put_u64(self.id);
    }
}
