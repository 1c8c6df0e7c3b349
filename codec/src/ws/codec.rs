//! Frames in, whole messages out: unmasking, reassembly of fragments, limits.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{FrameHeader, OpCode, apply_mask, encode_header, malformed};
use crate::CodecError;

/// A whole WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// Text; the decoder has checked it is UTF-8.
    Text(BytesMut),
    /// Binary data.
    Binary(BytesMut),
    /// A PING; answer with a PONG carrying the same payload.
    Ping(BytesMut),
    /// A PONG.
    Pong(BytesMut),
    /// The peer is closing, with its status code and reason if it gave them.
    Close(Option<(u16, String)>),
}

/// The server side of RFC 6455 framing as a `tokio_util` codec.
///
/// Decoding expects masked frames (a client must mask; an unmasked one is refused),
/// checks every length against its limit before reserving memory for it, reassembles
/// fragmented messages (control frames may arrive between fragments) and checks text is
/// UTF-8. A message that arrives in one frame is handed out without a copy (split off the
/// read buffer). Encoding
/// writes unmasked, unfragmented frames. No extension (compression) is spoken.
///
/// ```
/// use bytes::BytesMut;
/// use longlink_codec::ws::{WsCodec, WsMessage};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = WsCodec::new().max_message_bytes(1024);
/// let mut src = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58][..]);
/// assert_eq!(codec.decode(&mut src).unwrap(), Some(WsMessage::Text("Hello".into())));
///
/// let mut out = BytesMut::new();
/// codec.encode(WsMessage::Binary("hi".into()), &mut out).unwrap();
/// assert_eq!(&out[..], &[0x82, 2, b'h', b'i']);
/// ```
#[derive(Debug)]
pub struct WsCodec {
    max_message_bytes: usize,
    /// A fragmented message being joined: text or not, and what has come so far.
    partial: Option<(bool, BytesMut)>,
}

impl Default for WsCodec {
    fn default() -> WsCodec {
        WsCodec::new()
    }
}

impl WsCodec {
    /// A codec allowing messages up to 64 KiB.
    pub fn new() -> WsCodec {
        WsCodec {
            max_message_bytes: 64 * 1024,
            partial: None,
        }
    }

    /// The largest message (and so the largest frame) accepted.
    pub fn max_message_bytes(mut self, max: usize) -> WsCodec {
        self.max_message_bytes = max;
        self
    }

    /// `true` while a fragmented message is half received.
    pub fn is_joining(&self) -> bool {
        self.partial.is_some()
    }

    fn finish(text: bool, payload: BytesMut) -> Result<WsMessage, CodecError> {
        if text {
            std::str::from_utf8(&payload)
                .map_err(|e| malformed(format!("text message is not UTF-8: {e}")))?;
            Ok(WsMessage::Text(payload))
        } else {
            Ok(WsMessage::Binary(payload))
        }
    }
}

fn close_body(payload: &[u8]) -> Result<Option<(u16, String)>, CodecError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(malformed("close frame with a 1-byte body".into())),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|e| malformed(format!("close reason is not UTF-8: {e}")))?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

impl Decoder for WsCodec {
    type Item = WsMessage;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<WsMessage>, CodecError> {
        loop {
            let Some(header) = FrameHeader::parse(src, self.max_message_bytes)? else {
                return Ok(None);
            };
            let Some(key) = header.mask else {
                return Err(malformed("a client frame must be masked".into()));
            };
            let joined = self.partial.as_ref().map_or(0, |(_, buf)| buf.len());
            if !header.opcode.is_control() && joined + header.payload_len > self.max_message_bytes {
                return Err(CodecError::MessageTooLarge {
                    len: (joined + header.payload_len) as u64,
                    max: self.max_message_bytes as u64,
                });
            }
            let frame_len = header.header_len + header.payload_len;
            if src.len() < frame_len {
                src.reserve(frame_len - src.len());
                return Ok(None);
            }
            src.advance(header.header_len);
            let mut payload = src.split_to(header.payload_len);
            apply_mask(&mut payload, key);
            let message = match (header.opcode, self.partial.as_mut()) {
                (OpCode::Ping, _) => WsMessage::Ping(payload),
                (OpCode::Pong, _) => WsMessage::Pong(payload),
                (OpCode::Close, _) => WsMessage::Close(close_body(&payload)?),
                (OpCode::Text | OpCode::Binary, Some(_)) => {
                    return Err(malformed(
                        "a new message began before the fragmented one ended".into(),
                    ));
                }
                (OpCode::Text | OpCode::Binary, None) => {
                    let text = header.opcode == OpCode::Text;
                    if header.fin {
                        WsCodec::finish(text, payload)?
                    } else {
                        self.partial = Some((text, payload));
                        continue;
                    }
                }
                (OpCode::Continuation, None) => {
                    return Err(malformed(
                        "a continuation frame with nothing to continue".into(),
                    ));
                }
                (OpCode::Continuation, Some((_, joined))) => {
                    joined.extend_from_slice(&payload);
                    if !header.fin {
                        continue;
                    }
                    let (text, joined) = self.partial.take().expect("matched Some");
                    WsCodec::finish(text, joined)?
                }
            };
            return Ok(Some(message));
        }
    }
}

impl Encoder<WsMessage> for WsCodec {
    type Error = CodecError;

    fn encode(&mut self, message: WsMessage, dst: &mut BytesMut) -> Result<(), CodecError> {
        let (opcode, payload): (OpCode, &[u8]) = match &message {
            WsMessage::Text(b) => (OpCode::Text, b),
            WsMessage::Binary(b) => (OpCode::Binary, b),
            WsMessage::Ping(b) => (OpCode::Ping, b),
            WsMessage::Pong(b) => (OpCode::Pong, b),
            WsMessage::Close(None) => (OpCode::Close, &[]),
            WsMessage::Close(Some((code, reason))) => {
                let len = 2 + reason.len();
                if len > super::MAX_CONTROL_PAYLOAD {
                    return Err(CodecError::FrameTooLarge {
                        len: len as u64,
                        max: super::MAX_CONTROL_PAYLOAD as u64,
                    });
                }
                encode_header(OpCode::Close, len, dst);
                dst.put_u16(*code);
                dst.put_slice(reason.as_bytes());
                return Ok(());
            }
        };
        let max = if opcode.is_control() {
            super::MAX_CONTROL_PAYLOAD
        } else {
            self.max_message_bytes
        };
        if payload.len() > max {
            return Err(CodecError::FrameTooLarge {
                len: payload.len() as u64,
                max: max as u64,
            });
        }
        dst.reserve(super::MAX_HEADER_LEN + payload.len());
        encode_header(opcode, payload.len(), dst);
        dst.put_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key.
    fn client_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut out = Vec::new();
        out.push(if fin { 0x80 } else { 0 } | opcode.bits());
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        let mut body = payload.to_vec();
        apply_mask(&mut body, key);
        out.extend_from_slice(&body);
        out
    }

    fn decode_all(codec: &mut WsCodec, wire: &[u8]) -> Result<Vec<WsMessage>, CodecError> {
        let mut src = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(m) = codec.decode(&mut src)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn fragments_join_around_a_ping_and_byte_by_byte_input_decodes_the_same() {
        let mut wire = client_frame(false, OpCode::Text, b"hel");
        wire.extend(client_frame(true, OpCode::Ping, b"p"));
        wire.extend(client_frame(false, OpCode::Continuation, "lo ".as_bytes()));
        wire.extend(client_frame(true, OpCode::Continuation, "wörld".as_bytes()));
        wire.extend(client_frame(true, OpCode::Binary, &[7; 300]));
        wire.extend(client_frame(true, OpCode::Close, &[3, 232, b'o', b'k']));
        let expected = vec![
            WsMessage::Ping(BytesMut::from(&b"p"[..])),
            WsMessage::Text(BytesMut::from("hello wörld")),
            WsMessage::Binary(BytesMut::from(&[7; 300][..])),
            WsMessage::Close(Some((1000, "ok".into()))),
        ];
        assert_eq!(decode_all(&mut WsCodec::new(), &wire).unwrap(), expected);
        let mut codec = WsCodec::new();
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for b in &wire {
            src.put_u8(*b);
            while let Some(m) = codec.decode(&mut src).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, expected);
        assert!(src.is_empty() && !codec.is_joining());
    }

    #[test]
    fn oversized_frames_and_messages_are_refused_from_the_header_before_any_reserve() {
        let mut codec = WsCodec::new().max_message_bytes(100);
        // A header announcing 1 GiB: refused with 14 bytes in hand, nothing reserved.
        let mut src = BytesMut::from(&[0x82, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4][..]);
        let before = src.capacity();
        assert!(matches!(
            codec.decode(&mut src),
            Err(CodecError::FrameTooLarge {
                len: 1073741824,
                max: 100
            })
        ));
        assert_eq!(src.capacity(), before);
        // Fragments that pass alone but not together.
        let mut wire = client_frame(false, OpCode::Binary, &[0; 60]);
        wire.extend(client_frame(true, OpCode::Continuation, &[0; 60]));
        let err = decode_all(&mut WsCodec::new().max_message_bytes(100), &wire).unwrap_err();
        assert!(
            matches!(err, CodecError::MessageTooLarge { len: 120, max: 100 }),
            "{err}"
        );
    }

    #[test]
    fn protocol_violations_are_malformed_frames() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", vec![0x82, 1, 0]),
            ("reserved bits", {
                let mut f = client_frame(true, OpCode::Binary, b"x");
                f[0] |= 0x40;
                f
            }),
            ("unknown opcode", vec![0x83, 0x80, 0, 0, 0, 0]),
            ("fragmented ping", client_frame(false, OpCode::Ping, b"")),
            ("long ping", client_frame(true, OpCode::Ping, &[0; 126])),
            (
                "stray continuation",
                client_frame(true, OpCode::Continuation, b"x"),
            ),
            ("bad utf-8", client_frame(true, OpCode::Text, &[0xff, 0xfe])),
            ("one-byte close", client_frame(true, OpCode::Close, &[3])),
            ("interleaved message", {
                let mut f = client_frame(false, OpCode::Text, b"a");
                f.extend(client_frame(true, OpCode::Binary, b"b"));
                f
            }),
        ];
        for (what, wire) in cases {
            let err = decode_all(&mut WsCodec::new(), &wire).unwrap_err();
            assert!(
                matches!(
                    err,
                    CodecError::Malformed {
                        what: "websocket frame",
                        ..
                    }
                ),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn encodes_every_length_form_and_refuses_oversized_control_frames() {
        let mut codec = WsCodec::new().max_message_bytes(1 << 20);
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = BytesMut::new();
            codec
                .encode(
                    WsMessage::Binary(BytesMut::from(&vec![9; len][..])),
                    &mut out,
                )
                .unwrap();
            let header = FrameHeader::parse(&out, 1 << 20).unwrap().unwrap();
            assert_eq!((header.payload_len, header.mask), (len, None));
            assert_eq!(out.len(), header.header_len + len);
        }
        let mut out = BytesMut::new();
        let long = WsMessage::Close(Some((1000, "x".repeat(124))));
        assert!(matches!(
            codec.encode(long, &mut out),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }
}
