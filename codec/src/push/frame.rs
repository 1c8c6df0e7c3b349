//! Raw push frames and their codec.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{DEFAULT_MAX_FRAME_BYTES, HEADER_LEN, Op, VERSION};
use crate::CodecError;

/// One push frame: `len:u32 | hlen:u16 | ver:u16 | op:u32 | seq:u32 | body`, big-endian, where
/// `len` counts the whole frame (header included) and `hlen` the header (16; a larger value
/// is accepted and the extra header bytes skipped, for future header fields).
///
/// ```
/// use bytes::Bytes;
/// use longlink_codec::push::{Op, PushFrame};
///
/// let frame = PushFrame::new(Op::HEARTBEAT, 7, Bytes::new());
/// assert_eq!(&frame.to_bytes()[..], &[0, 0, 0, 16, 0, 16, 0, 2, 0, 0, 0, 3, 0, 0, 0, 7]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushFrame {
    /// What the frame carries.
    pub op: Op,
    /// Chosen by the sender of a request and echoed in its reply (0 when unused).
    pub seq: u32,
    /// The body.
    pub body: Bytes,
}

impl PushFrame {
    /// A frame.
    pub fn new(op: Op, seq: u32, body: Bytes) -> PushFrame {
        PushFrame { op, seq, body }
    }

    /// Length on the wire, header included.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Writes the frame into `dst` (no size check; see [`PushCodec`] for that).
    pub fn write_to<B: BufMut>(&self, dst: &mut B) {
        dst.put_u32(self.wire_len() as u32);
        dst.put_u16(HEADER_LEN as u16);
        dst.put_u16(VERSION);
        dst.put_u32(self.op.value());
        dst.put_u32(self.seq);
        dst.put_slice(&self.body);
    }

    /// The frame's wire bytes in a new buffer. Encode once and share the `Bytes` to send the
    /// same frame on many connections.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.wire_len());
        self.write_to(&mut buf);
        buf.freeze()
    }

    /// A BATCH frame holding `frames` (each written whole into the body).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use longlink_codec::push::{Op, PushFrame};
    ///
    /// let a = PushFrame::new(Op::MESSAGE, 0, Bytes::from_static(b"a"));
    /// let b = PushFrame::new(Op::MESSAGE, 0, Bytes::from_static(b"b"));
    /// let batch = PushFrame::batch([&a, &b]);
    /// let inner: Vec<_> = batch.unbatch(64 * 1024).collect::<Result<_, _>>().unwrap();
    /// assert_eq!(inner, vec![a, b]);
    /// ```
    pub fn batch<'a>(frames: impl IntoIterator<Item = &'a PushFrame>) -> PushFrame {
        let mut body = BytesMut::new();
        for frame in frames {
            frame.write_to(&mut body);
        }
        PushFrame::new(Op::BATCH, 0, body.freeze())
    }

    /// The frames inside a BATCH body, each checked against `max_frame_bytes`, without copying.
    /// A BATCH inside a BATCH is an error.
    pub fn unbatch(&self, max_frame_bytes: usize) -> Unbatch {
        Unbatch {
            rest: self.body.clone(),
            max_frame_bytes,
        }
    }
}

/// Iterator over the frames of a BATCH body, from [`PushFrame::unbatch`].
#[derive(Debug)]
pub struct Unbatch {
    rest: Bytes,
    max_frame_bytes: usize,
}

impl Iterator for Unbatch {
    type Item = Result<PushFrame, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = (|| {
            if self.rest.len() < HEADER_LEN {
                return Err(CodecError::BodyTooShort {
                    what: "batch",
                    len: self.rest.len(),
                    need: HEADER_LEN,
                });
            }
            let header = Header::parse(&self.rest[..HEADER_LEN], self.max_frame_bytes)?;
            if header.op == Op::BATCH {
                return Err(CodecError::Malformed {
                    what: "batch",
                    reason: "nested batch".into(),
                });
            }
            if self.rest.len() < header.len as usize {
                return Err(CodecError::BodyTooShort {
                    what: "batch",
                    len: self.rest.len(),
                    need: header.len as usize,
                });
            }
            let mut frame = self.rest.split_to(header.len as usize);
            frame.advance(header.header_len as usize);
            Ok(PushFrame {
                op: header.op,
                seq: header.seq,
                body: frame,
            })
        })();
        if result.is_err() {
            self.rest.clear();
        }
        Some(result)
    }
}

#[derive(Debug, Clone, Copy)]
struct Header {
    len: u32,
    header_len: u16,
    op: Op,
    seq: u32,
}

impl Header {
    /// Reads and checks a header; every check happens before any body is touched.
    fn parse(mut src: &[u8], max_frame_bytes: usize) -> Result<Header, CodecError> {
        let len = src.get_u32();
        let header_len = src.get_u16();
        let version = src.get_u16();
        let op = src.get_u32();
        let seq = src.get_u32();
        if len as usize > max_frame_bytes {
            return Err(CodecError::FrameTooLarge {
                len: len.into(),
                max: max_frame_bytes as u64,
            });
        }
        if (header_len as usize) < HEADER_LEN || u32::from(header_len) > len {
            return Err(CodecError::BadHeaderLength {
                header_len,
                frame_len: len,
            });
        }
        if version != VERSION {
            return Err(CodecError::UnsupportedVersion { version });
        }
        let op = Op::try_from(op)?;
        Ok(Header {
            len,
            header_len,
            op,
            seq,
        })
    }
}

/// A [`Decoder`]/[`Encoder`] of [`PushFrame`]s with a frame-size limit (whole frame, header
/// included; default [`DEFAULT_MAX_FRAME_BYTES`]).
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use longlink_codec::{CodecError, push::{Op, PushCodec, PushFrame}};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = PushCodec::new().max_frame_bytes(100);
/// let mut wire = BytesMut::new();
/// codec.encode(PushFrame::new(Op::MESSAGE, 1, Bytes::from_static(b"hi")), &mut wire).unwrap();
/// let frame = codec.decode(&mut wire).unwrap().unwrap();
/// assert_eq!(&frame.body[..], b"hi");
///
/// let too_big = PushFrame::new(Op::MESSAGE, 1, Bytes::from(vec![0; 200]));
/// assert!(matches!(codec.encode(too_big, &mut wire), Err(CodecError::FrameTooLarge { len: 216, max: 100 })));
/// ```
#[derive(Debug, Clone)]
pub struct PushCodec {
    max_frame_bytes: usize,
    pending: Option<Header>,
}

impl Default for PushCodec {
    fn default() -> Self {
        PushCodec::new()
    }
}

impl PushCodec {
    /// A codec with the default limit.
    pub fn new() -> PushCodec {
        PushCodec {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            pending: None,
        }
    }

    /// Sets the largest frame (header included) accepted or sent.
    pub fn max_frame_bytes(mut self, max: usize) -> PushCodec {
        self.max_frame_bytes = max;
        self
    }

    /// The largest frame accepted or sent.
    pub fn get_max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    fn check_len(&self, frame: &PushFrame) -> Result<(), CodecError> {
        if frame.wire_len() > self.max_frame_bytes {
            return Err(CodecError::FrameTooLarge {
                len: frame.wire_len() as u64,
                max: self.max_frame_bytes as u64,
            });
        }
        Ok(())
    }
}

impl Decoder for PushCodec {
    type Item = PushFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<PushFrame>, CodecError> {
        let header = match self.pending {
            Some(header) => header,
            None => {
                if src.len() < HEADER_LEN {
                    return Ok(None);
                }
                Header::parse(&src[..HEADER_LEN], self.max_frame_bytes)?
            }
        };
        let len = header.len as usize;
        if src.len() < len {
            src.reserve(len - src.len());
            self.pending = Some(header);
            return Ok(None);
        }
        self.pending = None;
        src.advance(header.header_len as usize);
        let body = src.split_to(len - header.header_len as usize).freeze();
        Ok(Some(PushFrame {
            op: header.op,
            seq: header.seq,
            body,
        }))
    }
}

impl Encoder<PushFrame> for PushCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: PushFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&PushFrame> for PushCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &PushFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.check_len(frame)?;
        dst.reserve(frame.wire_len());
        frame.write_to(dst);
        Ok(())
    }
}
