//! The push frame format spoken between clients and rooms (raw TCP and WebSocket binary
//! frames), and its JSON twin for browsers (WebSocket text frames).
//!
//! ```text
//!  0       4      6      8       12      16
//!  +-------+------+------+-------+-------+-----------+
//!  |  len  | hlen | ver  |  op   |  seq  |   body    |
//!  +-------+------+------+-------+-------+-----------+
//!    u32     u16    u16    u32     u32
//! ```
//!
//! `len` is the whole frame, header included (as in goim); `hlen` is 16. Ops are listed on
//! [`Op`]. [`PushCodec`] reads and writes frames; [`PushMessage`] turns a frame's body into a
//! typed message (a protobuf body in binary frames, the messages of `proto/push.proto`) and
//! back, and reads and writes the JSON form.

mod bodies;
mod dispatch;
mod frame;
mod message;
mod op;
mod payload;
mod proto;

pub use dispatch::{Dispatch, RoomAddress};
pub use frame::{PushCodec, PushFrame, Unbatch};
pub use message::{
    Ack, Auth, AuthReply, Deliver, DeliveryMode, ErrorMessage, Kick, Net, PushMessage, Reconnect,
    Refresh, Subscribe, Upstream, UpstreamReply,
};
pub use op::Op;
pub use payload::Payload;

/// Length of the push frame header in bytes.
pub const HEADER_LEN: usize = 16;
/// The push protocol version this crate speaks: 2, protobuf bodies. (Version 1 carried
/// postcard bodies; a frame of it is refused as [`CodecError::UnsupportedVersion`].)
///
/// [`CodecError::UnsupportedVersion`]: crate::CodecError::UnsupportedVersion
pub const VERSION: u16 = 2;
/// Default largest push frame, header included: 64 KiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
