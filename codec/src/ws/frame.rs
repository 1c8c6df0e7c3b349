//! One WebSocket frame header (RFC 6455 §5.2): reading it with its limits, writing it.

use bytes::BufMut;

use crate::CodecError;

/// The longest header: 2 bytes, a 64-bit length, a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;
/// The largest payload of a control frame (PING, PONG, CLOSE).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation,
    /// UTF-8 text (a whole message or its first fragment).
    Text,
    /// Binary data (a whole message or its first fragment).
    Binary,
    /// The peer is closing.
    Close,
    /// Asks for a PONG with the same payload.
    Ping,
    /// Answers a PING.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Result<OpCode, CodecError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(malformed(format!("unknown opcode {other:#x}"))),
        })
    }

    /// The four bits on the wire.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// `true` for CLOSE, PING and PONG.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last fragment of its message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key, present on every frame a client sends.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Header length in bytes (2 to 14).
    pub header_len: usize,
}

impl FrameHeader {
    /// Reads a header from the start of `src`; `Ok(None)` until all of it is there.
    ///
    /// Everything the header promises is checked before the caller reserves a byte for the
    /// payload: known opcode, no reserved bits (no extension is negotiated), control frames
    /// whole and at most 125 bytes, the payload at most `max_payload`.
    ///
    /// ```
    /// use longlink_codec::ws::{FrameHeader, OpCode};
    ///
    /// // RFC 6455 §5.7: a masked "Hello" from a client.
    /// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    /// let header = FrameHeader::parse(&wire, 1024).unwrap().unwrap();
    /// assert_eq!((header.opcode, header.fin, header.payload_len), (OpCode::Text, true, 5));
    /// assert_eq!(header.header_len, 6);
    /// assert!(FrameHeader::parse(&wire[..3], 1024).unwrap().is_none());
    /// ```
    pub fn parse(src: &[u8], max_payload: usize) -> Result<Option<FrameHeader>, CodecError> {
        if src.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (src[0], src[1]);
        if b0 & 0x70 != 0 {
            return Err(malformed(format!(
                "reserved bits {:#x} set without an extension",
                b0 & 0x70
            )));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = OpCode::from_bits(b0 & 0x0F)?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut header_len) = match b1 & 0x7F {
            126 => {
                if src.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([src[2], src[3]]) as u64, 4)
            }
            127 => {
                if src.len() < 10 {
                    return Ok(None);
                }
                let mut len = [0; 8];
                len.copy_from_slice(&src[2..10]);
                (u64::from_be_bytes(len), 10)
            }
            short => (short as u64, 2),
        };
        if opcode.is_control() && (!fin || payload_len > MAX_CONTROL_PAYLOAD as u64) {
            return Err(malformed(format!(
                "control frame of {payload_len} bytes{}",
                if fin { "" } else { " fragmented" }
            )));
        }
        if payload_len > max_payload as u64 {
            return Err(CodecError::FrameTooLarge {
                len: payload_len,
                max: max_payload as u64,
            });
        }
        let mask = if masked {
            if src.len() < header_len + 4 {
                return Ok(None);
            }
            let mut key = [0; 4];
            key.copy_from_slice(&src[header_len..header_len + 4]);
            header_len += 4;
            Some(key)
        } else {
            None
        };
        Ok(Some(FrameHeader {
            fin,
            opcode,
            mask,
            payload_len: payload_len as usize,
            header_len,
        }))
    }
}

/// Writes the header of a whole (FIN), unmasked frame, as a server sends it.
///
/// ```
/// use bytes::BytesMut;
/// use longlink_codec::ws::{OpCode, encode_header};
///
/// let mut out = BytesMut::new();
/// encode_header(OpCode::Binary, 300, &mut out);
/// assert_eq!(&out[..], &[0x82, 126, 1, 44]);
/// ```
pub fn encode_header(opcode: OpCode, payload_len: usize, dst: &mut impl BufMut) {
    dst.put_u8(0x80 | opcode.bits());
    if payload_len < 126 {
        dst.put_u8(payload_len as u8);
    } else if payload_len <= u16::MAX as usize {
        dst.put_u8(126);
        dst.put_u16(payload_len as u16);
    } else {
        dst.put_u8(127);
        dst.put_u64(payload_len as u64);
    }
}

/// XORs `payload` with the masking key in place (masking and unmasking are the same).
///
/// ```
/// let mut data = *b"Hello";
/// longlink_codec::ws::apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
pub fn apply_mask(payload: &mut [u8], key: [u8; 4]) {
    let word = u32::from_ne_bytes(key);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i];
    }
}

pub(super) fn malformed(reason: String) -> CodecError {
    CodecError::Malformed {
        what: "websocket frame",
        reason,
    }
}
