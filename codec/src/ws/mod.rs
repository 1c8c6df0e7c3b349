//! WebSocket framing (RFC 6455), server side, for rooms that hold their connections
//! without a per-connection read buffer: read into a pooled buffer when the socket is
//! readable, decode every whole message with [`WsCodec`], give the buffer back.
//!
//! ```text
//!  0               1               2
//!  +-+-+-+-+-------+-+-------------+-------------------------------+
//!  |F|R|R|R| opcode|M| len (7)     | len (16 or 64, if 126 or 127) |
//!  |I|S|S|S|  (4)  |A|             |                               |
//!  |N|V|V|V|       |S|             | masking key (4, if MASK)      |
//!  +-+-+-+-+-------+-+-------------+-------------------------------+
//! ```
//!
//! The opening handshake is HTTP and stays with the server that accepts it; this module
//! starts once the connection has switched protocols.

mod codec;
mod frame;

pub use codec::{WsCodec, WsMessage};
pub use frame::{
    FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, apply_mask, encode_header,
};
