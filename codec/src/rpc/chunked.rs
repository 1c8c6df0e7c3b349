//! Writing one message as one or more frames, a chunk at a time.

use bytes::{BufMut, BytesMut};

use super::message::deadline_to_micros;
use super::{Flags, Message, RpcCodec};
use crate::CodecError;

/// A message being written frame by frame.
///
/// REQ and RESP bodies longer than the codec's `max_chunk_bytes` go out as several frames
/// (all but the last flagged `MORE`). A connection writer that encodes one chunk of a large
/// message, then the small messages queued behind it, then the next chunk, keeps a 1 MiB
/// call from holding up the small ones. [`RpcCodec`]'s `Encoder` impl writes every chunk at
/// once.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use longlink_codec::rpc::{ChunkedMessage, Message, Request, RpcCodec};
/// use tokio_util::codec::Decoder;
///
/// let codec = RpcCodec::new().max_chunk_bytes(4);
/// let req = Message::Request(Request { id: 3, deadline: None, method: 1, metadata: Default::default(), compressed: false, body: Bytes::from_static(b"0123456789") });
/// let mut chunks = ChunkedMessage::new(req.clone());
/// let mut wire = BytesMut::new();
/// let mut frames = 0;
/// while !chunks.encode_next(&codec, &mut wire).unwrap() {
///     frames += 1;
/// }
/// assert_eq!(frames + 1, 3); // 4 + 4 + 2 bytes
/// assert_eq!(RpcCodec::new().decode(&mut wire).unwrap(), Some(req));
/// ```
#[derive(Debug, Clone)]
pub struct ChunkedMessage {
    message: Message,
    /// Body bytes already written.
    written: usize,
    started: bool,
    done: bool,
}

impl ChunkedMessage {
    /// Prepares `message` for writing.
    pub fn new(message: Message) -> ChunkedMessage {
        ChunkedMessage {
            message,
            written: 0,
            started: false,
            done: false,
        }
    }

    /// The message being written.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// `true` once the last frame has been written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Body bytes not yet written.
    pub fn remaining_body_bytes(&self) -> usize {
        match &self.message {
            Message::Request(r) => r.body.len() - self.written,
            Message::Response(r) => r.body.len() - self.written,
            _ => 0,
        }
    }

    /// Writes the next frame of the message into `dst`; returns `true` when that was the last.
    ///
    /// Errors (a message over the codec's limits) are returned before anything is written.
    /// Calling it again after it returned `true` writes nothing and returns `true`.
    pub fn encode_next(
        &mut self,
        codec: &RpcCodec,
        dst: &mut BytesMut,
    ) -> Result<bool, CodecError> {
        if self.done {
            return Ok(true);
        }
        let frames = codec.frame_codec();
        let (prefix, prefix_len, meta, body, flags) = match &self.message {
            Message::Request(r) => {
                let mut prefix = [0u8; 10];
                let mut p = &mut prefix[..];
                p.put_u32(deadline_to_micros(r.deadline));
                p.put_u32(r.method);
                let meta = r.metadata.as_bytes();
                let flags = if r.compressed {
                    Flags::COMPRESSED
                } else {
                    Flags::NONE
                };
                if meta.is_empty() {
                    (prefix, 8, meta, &r.body, flags)
                } else {
                    p.put_u16(meta.len() as u16);
                    (prefix, 10, meta, &r.body, flags | Flags::METADATA)
                }
            }
            Message::Response(r) => {
                let mut prefix = [0u8; 10];
                (&mut prefix[..]).put_u16(r.status.0);
                let flags = r.flags.without(Flags::MORE);
                (prefix, 2, &[][..], &r.body, flags)
            }
            other => {
                codec.encode_single(other, dst)?;
                self.done = true;
                return Ok(true);
            }
        };
        if !self.started && body.len() > codec.get_max_message_bytes() {
            return Err(CodecError::MessageTooLarge {
                len: body.len() as u64,
                max: codec.get_max_message_bytes() as u64,
            });
        }
        let id = self.message.id();
        let kind = self.message.kind();
        // A chunk plus the fixed prefix (and the metadata, in the first frame) must fit in
        // one frame.
        let head = prefix_len + if self.started { 0 } else { meta.len() };
        let max_chunk = codec
            .get_max_chunk_bytes()
            .min(frames.get_max_frame_bytes().saturating_sub(head))
            .max(1);
        let end = (self.written + max_chunk).min(body.len());
        let chunk = &body[self.written..end];
        let more = end < body.len();
        let flags = if more { flags | Flags::MORE } else { flags };
        if self.started {
            // Continuations carry payload only: the first frame's flags say what it is.
            let flags = flags.without(Flags::METADATA | Flags::COMPRESSED);
            frames.write_frame(kind, flags, id, &[chunk], dst)?;
        } else {
            frames.write_frame(kind, flags, id, &[&prefix[..prefix_len], meta, chunk], dst)?;
            self.started = true;
        }
        self.written = end;
        self.done = !more;
        Ok(self.done)
    }
}
