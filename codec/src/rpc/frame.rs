//! Raw RPC frames: a header and an uninterpreted body.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::header::{FrameHeader, HEADER_LEN};
use super::{DEFAULT_MAX_FRAME_BYTES, Flags, Kind};
use crate::CodecError;

/// One RPC frame as it travels: kind, flags, id and the body bytes.
///
/// Most users want [`Message`](super::Message) and [`RpcCodec`](super::RpcCodec), which read
/// the body's fixed fields and join chunked messages; this is the layer below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcFrame {
    /// What the frame carries.
    pub kind: Kind,
    /// Frame flags.
    pub flags: Flags,
    /// Request or probe id.
    pub id: u64,
    /// The body after the 16-byte header.
    pub body: Bytes,
}

/// A [`Decoder`]/[`Encoder`] of raw [`RpcFrame`]s with a frame-size limit.
///
/// The limit is checked against the header's length field **before** reserving room for
/// the body, so a peer cannot make the reader allocate by announcing a large frame.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use longlink_codec::rpc::{Flags, Kind, RpcFrame, RpcFrameCodec};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = RpcFrameCodec::new();
/// let frame = RpcFrame { kind: Kind::Ping, flags: Flags::NONE, id: 1, body: Bytes::new() };
/// let mut wire = BytesMut::new();
/// codec.encode(frame.clone(), &mut wire).unwrap();
/// assert_eq!(wire.len(), 16);
/// assert_eq!(codec.decode(&mut wire).unwrap(), Some(frame));
/// ```
#[derive(Debug, Clone)]
pub struct RpcFrameCodec {
    max_frame_bytes: usize,
    /// Header of a frame whose body has not fully arrived yet, so it is parsed once.
    pending: Option<FrameHeader>,
}

impl Default for RpcFrameCodec {
    fn default() -> Self {
        RpcFrameCodec::new()
    }
}

impl RpcFrameCodec {
    /// A codec with the default limit of [`DEFAULT_MAX_FRAME_BYTES`] per body.
    pub fn new() -> RpcFrameCodec {
        RpcFrameCodec {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            pending: None,
        }
    }

    /// Sets the largest body accepted or sent, in bytes.
    pub fn max_frame_bytes(mut self, max: usize) -> RpcFrameCodec {
        self.max_frame_bytes = max;
        self
    }

    /// The largest body accepted or sent, in bytes.
    pub fn get_max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Writes a frame's header and body into `dst`, reserving room once.
    pub(crate) fn write_frame(
        &self,
        kind: Kind,
        flags: Flags,
        id: u64,
        parts: &[&[u8]],
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let body_len: usize = parts.iter().map(|p| p.len()).sum();
        if body_len > self.max_frame_bytes {
            return Err(CodecError::FrameTooLarge {
                len: body_len as u64,
                max: self.max_frame_bytes as u64,
            });
        }
        dst.reserve(HEADER_LEN + body_len);
        FrameHeader {
            body_len: body_len as u32,
            kind,
            flags,
            id,
        }
        .write(dst);
        for part in parts {
            dst.put_slice(part);
        }
        Ok(())
    }
}

impl Decoder for RpcFrameCodec {
    type Item = RpcFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RpcFrame>, CodecError> {
        let header = match self.pending {
            Some(header) => header,
            None => {
                if src.len() < HEADER_LEN {
                    return Ok(None);
                }
                let header = FrameHeader::parse(&src[..HEADER_LEN])?;
                if header.body_len as usize > self.max_frame_bytes {
                    return Err(CodecError::FrameTooLarge {
                        len: header.body_len.into(),
                        max: self.max_frame_bytes as u64,
                    });
                }
                header
            }
        };
        let frame_len = HEADER_LEN + header.body_len as usize;
        if src.len() < frame_len {
            // The length is within the limit: reserving for the whole frame now saves the
            // reader several smaller reallocations.
            src.reserve(frame_len - src.len());
            self.pending = Some(header);
            return Ok(None);
        }
        self.pending = None;
        bytes::Buf::advance(src, HEADER_LEN);
        let body = src.split_to(header.body_len as usize).freeze();
        Ok(Some(RpcFrame {
            kind: header.kind,
            flags: header.flags,
            id: header.id,
            body,
        }))
    }
}

impl Encoder<RpcFrame> for RpcFrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: RpcFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        if !frame.kind.allowed_flags().contains(frame.flags) {
            return Err(CodecError::BadFlags {
                what: frame.kind.name(),
                flags: frame.flags.bits(),
            });
        }
        self.write_frame(frame.kind, frame.flags, frame.id, &[&frame.body], dst)
    }
}
