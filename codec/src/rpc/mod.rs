//! The RPC frame format used between services over long-lived TCP connections.
//!
//! Every frame starts with a 16-byte big-endian header, then `body_len` bytes of body:
//!
//! ```text
//!  0       4     5      6       8               16
//!  +-------+-----+------+-------+---------------+------------------+
//!  |  len  | ver | kind | flags |      id       | body (len bytes) |
//!  +-------+-----+------+-------+---------------+------------------+
//!    u32     u8    u8     u16         u64
//! ```
//!
//! | kind | body | id |
//! |---|---|---|
//! | HELLO (1), HELLO_ACK (2) | `max_frame_bytes:u32 \| max_in_flight:u32 \| features:u32` ([`Features`]; an 8-byte body is read as none) | 0 |
//! | REQ (3) | `deadline_us:u32 \| method:u32 \| [meta_len:u16 \| metadata] \| payload` (deadline 0 = none) | request id |
//! | RESP (4) | `status:u16 \| payload` | request id |
//! | CANCEL (5) | empty | request id |
//! | PING (6), PONG (7) | empty | probe id |
//! | GOAWAY (8) | `last_id:u64` | 0 |
//! | CREDIT (9) | `n:u32` | 0 |
//! | ERR (10) | `code:u16 \| utf-8 message` | 0 |
//!
//! Flags: `MORE` (1, REQ/RESP: another chunk of this message follows; continuation chunks
//! carry payload only), `RETRYABLE` (2, RESP), `NOT_PROCESSED` (4, RESP), `METADATA` (8, REQ: a [`Metadata`] section follows the fixed
//! fields; first frame only), `COMPRESSED` (16, REQ/RESP: the joined payload is one zstd
//! frame; first frame only). Any other flag, or a
//! flag on a kind that does not allow it, is an error.
//!
//! Two layers: [`RpcFrameCodec`] reads and writes raw [`RpcFrame`]s; [`RpcCodec`] reads and
//! writes typed [`Message`]s, joining and splitting chunks. `docs/protocol.md` describes the
//! conversation (HELLO first, out-of-order answers, cancellation, draining).

mod chunked;
mod codec;
mod frame;
mod header;
mod message;
mod metadata;

pub use chunked::ChunkedMessage;
pub use codec::{
    DEFAULT_MAX_CHUNK_BYTES, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_PARTIAL_BYTES,
    DEFAULT_MAX_PARTIAL_MESSAGES, RpcCodec,
};
pub use frame::{RpcFrame, RpcFrameCodec};
pub use header::{Flags, FrameHeader, HEADER_LEN, Kind, VERSION};
pub use message::{ErrorCode, ErrorFrame, Features, Hello, Message, Request, Response, Status};
pub use metadata::{MAX_METADATA_BYTES, Metadata, MetadataBuilder, MetadataError};

/// Default largest frame body: 1 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;
