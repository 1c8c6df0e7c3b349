//! The message-level codec: typed messages in, typed messages out, chunks joined.

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::message::parse;
use super::{ChunkedMessage, Flags, Kind, Message, RpcFrame, RpcFrameCodec};
use crate::CodecError;

/// Default size of the chunks large REQ/RESP bodies are split into: 64 KiB.
pub const DEFAULT_MAX_CHUNK_BYTES: usize = 64 * 1024;
/// Default largest REQ/RESP body accepted or sent across chunks: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Default most chunked messages being joined at once on one connection.
pub const DEFAULT_MAX_PARTIAL_MESSAGES: usize = 64;
/// Default most bytes held by chunked messages being joined on one connection: 32 MiB.
pub const DEFAULT_MAX_PARTIAL_BYTES: usize = 32 * 1024 * 1024;

/// A [`Decoder`]/[`Encoder`] of [`Message`]s.
///
/// Decoding reads each frame's fixed fields, checks flags against the kind, and joins the
/// chunks of a large REQ/RESP (frames flagged `MORE`) into one message, within limits on the
/// message size, on how many messages are being joined and on the bytes they hold. A CANCEL
/// for a request being joined drops what was received of it. Encoding splits REQ/RESP bodies
/// over `max_chunk_bytes` into chunks (see [`ChunkedMessage`] to interleave them with other
/// messages).
///
/// A single-frame message's body is a slice of the read buffer: no copy, no allocation.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use longlink_codec::rpc::{Flags, Message, Response, RpcCodec, Status};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = RpcCodec::new().max_chunk_bytes(1024);
/// let resp = Message::Response(Response {
///     id: 42,
///     status: Status::OK,
///     flags: Flags::NONE,
///     body: Bytes::from(vec![7u8; 5000]),
/// });
/// let mut wire = BytesMut::new();
/// codec.encode(resp.clone(), &mut wire).unwrap();
/// assert_eq!(wire.len(), 5 * 16 + 2 + 5000); // five frames
/// assert_eq!(codec.decode(&mut wire).unwrap(), Some(resp));
/// ```
#[derive(Debug)]
pub struct RpcCodec {
    frames: RpcFrameCodec,
    max_chunk_bytes: usize,
    max_message_bytes: usize,
    max_partial_messages: usize,
    max_partial_bytes: usize,
    /// Messages being joined, by id, with the bytes they hold in `partial_bytes`.
    partial: HashMap<u64, Partial>,
    partial_bytes: usize,
}

#[derive(Debug)]
struct Partial {
    /// The first chunk's message, its body empty.
    head: Message,
    body: BytesMut,
}

impl Default for RpcCodec {
    fn default() -> Self {
        RpcCodec::new()
    }
}

impl RpcCodec {
    /// A codec with the default limits ([`DEFAULT_MAX_FRAME_BYTES`](super::DEFAULT_MAX_FRAME_BYTES), [`DEFAULT_MAX_CHUNK_BYTES`],
    /// [`DEFAULT_MAX_MESSAGE_BYTES`], [`DEFAULT_MAX_PARTIAL_MESSAGES`], [`DEFAULT_MAX_PARTIAL_BYTES`]).
    pub fn new() -> RpcCodec {
        RpcCodec {
            frames: RpcFrameCodec::new(),
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_partial_messages: DEFAULT_MAX_PARTIAL_MESSAGES,
            max_partial_bytes: DEFAULT_MAX_PARTIAL_BYTES,
            partial: HashMap::new(),
            partial_bytes: 0,
        }
    }

    /// Largest frame body accepted or sent.
    pub fn max_frame_bytes(mut self, max: usize) -> RpcCodec {
        self.frames = self.frames.max_frame_bytes(max);
        self
    }

    /// Largest REQ/RESP payload per frame when sending; longer bodies are chunked.
    pub fn max_chunk_bytes(mut self, max: usize) -> RpcCodec {
        self.max_chunk_bytes = max.max(1);
        self
    }

    /// Largest REQ/RESP payload accepted or sent across all its chunks.
    pub fn max_message_bytes(mut self, max: usize) -> RpcCodec {
        self.max_message_bytes = max;
        self
    }

    /// Most chunked messages being joined at once.
    pub fn max_partial_messages(mut self, max: usize) -> RpcCodec {
        self.max_partial_messages = max;
        self
    }

    /// Most bytes held by all chunked messages being joined.
    pub fn max_partial_bytes(mut self, max: usize) -> RpcCodec {
        self.max_partial_bytes = max;
        self
    }

    /// The frame-size limit.
    pub fn get_max_frame_bytes(&self) -> usize {
        self.frames.get_max_frame_bytes()
    }

    /// The chunk size used when sending.
    pub fn get_max_chunk_bytes(&self) -> usize {
        self.max_chunk_bytes
    }

    /// The message-size limit.
    pub fn get_max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Chunked messages being joined right now, and the bytes they hold.
    pub fn partial_messages(&self) -> (usize, usize) {
        (self.partial.len(), self.partial_bytes)
    }

    pub(crate) fn frame_codec(&self) -> &RpcFrameCodec {
        &self.frames
    }

    /// Writes a message that is never chunked.
    pub(crate) fn encode_single(
        &self,
        message: &Message,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let mut fixed = [0u8; 12];
        let mut p = &mut fixed[..];
        let body: &[u8] = match message {
            Message::Hello(h) | Message::HelloAck(h) => {
                p.put_u32(h.max_frame_bytes);
                p.put_u32(h.max_in_flight);
                p.put_u32(h.features.bits());
                &[]
            }
            Message::GoAway { last_id } => {
                p.put_u64(*last_id);
                &[]
            }
            Message::Credit { n } => {
                p.put_u32(*n);
                &[]
            }
            Message::Error(e) => {
                p.put_u16(e.code.0);
                e.message.as_bytes()
            }
            Message::Cancel { .. } | Message::Ping { .. } | Message::Pong { .. } => &[],
            Message::Request(_) | Message::Response(_) => {
                unreachable!("chunkable messages go through ChunkedMessage")
            }
        };
        let fixed_len = 12 - p.len();
        self.frames.write_frame(
            message.kind(),
            Flags::NONE,
            message.id(),
            &[&fixed[..fixed_len], body],
            dst,
        )
    }

    fn join(&mut self, frame: RpcFrame) -> Result<Option<Message>, CodecError> {
        let id = frame.id;
        let more = frame.flags.contains(Flags::MORE);
        // Checking for emptiness first keeps the common case (no chunked message in
        // progress) from hashing every frame's id.
        let joining = if self.partial.is_empty() {
            None
        } else {
            self.partial.get_mut(&id)
        };
        if let Some(partial) = joining {
            // What the payload is (metadata, compressed) is said by the first frame only.
            let first_only = Flags::METADATA | Flags::COMPRESSED;
            if partial.head.kind() != frame.kind || frame.flags.bits() & first_only.bits() != 0 {
                return Err(CodecError::UnexpectedChunk {
                    id,
                    what: partial.head.kind().name(),
                });
            }
            let len = partial.body.len() + frame.body.len();
            if len > self.max_message_bytes {
                return Err(CodecError::MessageTooLarge {
                    len: len as u64,
                    max: self.max_message_bytes as u64,
                });
            }
            let held = self.partial_bytes + frame.body.len();
            if held > self.max_partial_bytes {
                return Err(CodecError::PartialBytesExceeded {
                    len: held as u64,
                    max: self.max_partial_bytes as u64,
                });
            }
            partial.body.extend_from_slice(&frame.body);
            self.partial_bytes += frame.body.len();
            if more {
                return Ok(None);
            }
            let partial = self.partial.remove(&id).expect("present above");
            self.partial_bytes -= partial.body.len();
            self.shrink_after_burst();
            let body = partial.body.freeze();
            return Ok(Some(match partial.head {
                Message::Request(mut r) => {
                    r.body = body;
                    Message::Request(r)
                }
                Message::Response(mut r) => {
                    r.body = body;
                    Message::Response(r)
                }
                _ => unreachable!("only REQ and RESP are joined"),
            }));
        }
        let mut message = parse(frame)?;
        if !more {
            return Ok(Some(message));
        }
        // First chunk of a chunked message.
        if self.partial.len() >= self.max_partial_messages {
            return Err(CodecError::TooManyPartialMessages {
                max: self.max_partial_messages,
            });
        }
        let first = match &mut message {
            Message::Request(r) => std::mem::take(&mut r.body),
            Message::Response(r) => std::mem::take(&mut r.body),
            _ => unreachable!("MORE is only allowed on REQ and RESP"),
        };
        if first.len() > self.max_message_bytes {
            return Err(CodecError::MessageTooLarge {
                len: first.len() as u64,
                max: self.max_message_bytes as u64,
            });
        }
        self.check_partial_bytes(first.len())?;
        self.partial_bytes += first.len();
        self.partial.insert(
            id,
            Partial {
                head: message,
                body: BytesMut::from(&first[..]),
            },
        );
        Ok(None)
    }

    fn check_partial_bytes(&self, adding: usize) -> Result<(), CodecError> {
        let len = self.partial_bytes + adding;
        if len > self.max_partial_bytes {
            return Err(CodecError::PartialBytesExceeded {
                len: len as u64,
                max: self.max_partial_bytes as u64,
            });
        }
        Ok(())
    }

    /// Long-lived maps keep their peak capacity; give it back once a burst is over.
    fn shrink_after_burst(&mut self) {
        if self.partial.is_empty() && self.partial.capacity() > 16 {
            self.partial.shrink_to_fit();
        }
    }
}

impl Decoder for RpcCodec {
    type Item = Message;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        loop {
            let Some(frame) = self.frames.decode(src)? else {
                return Ok(None);
            };
            match frame.kind {
                Kind::Request | Kind::Response => {
                    if let Some(message) = self.join(frame)? {
                        return Ok(Some(message));
                    }
                }
                Kind::Cancel => {
                    if let Some(p) = self.partial.remove(&frame.id) {
                        self.partial_bytes -= p.body.len();
                        self.shrink_after_burst();
                    }
                    return Ok(Some(Message::Cancel { id: frame.id }));
                }
                _ => return parse(frame).map(Some),
            }
        }
    }
}

impl Encoder<Message> for RpcCodec {
    type Error = CodecError;

    fn encode(&mut self, message: Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut chunks = ChunkedMessage::new(message);
        while !chunks.encode_next(self, dst)? {}
        Ok(())
    }
}
