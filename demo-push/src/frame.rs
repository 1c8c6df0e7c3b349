//! A message to clients, encoded once in both forms the rooms speak (a binary push frame
//! and the JSON text), where it is first needed — the center for a push, the room for a
//! redelivery — and carried as bytes from there: to every connection it goes to, and over
//! RPC to the rooms of a cluster, without being built again.

use bytes::{Bytes, BytesMut};
use longlink_codec::CodecError;
use longlink_codec::push::{Deliver, DeliveryMode, Payload as Body, PushMessage};
use serde::{Deserialize, Serialize};

use crate::model::Message;

/// A message encoded once in both forms, shared by every connection it goes to.
///
/// ```
/// use longlink_push::frame::Frame;
/// use longlink_codec::push::PushMessage;
/// let frame = Frame::new(0, &PushMessage::HeartbeatReply).unwrap();
/// assert_eq!(frame.binary().len(), 16); // a header, no body
/// assert!(frame.json().starts_with(b"{"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    binary: Bytes,
    json: Bytes,
}

impl Frame {
    /// Encodes `message` (with `seq`) in both forms.
    pub fn new(seq: u32, message: &PushMessage) -> Result<Frame, CodecError> {
        let mut binary = BytesMut::new();
        message.encode(seq, &mut binary)?;
        Ok(Frame {
            binary: binary.freeze(),
            json: Bytes::from(message.to_json(seq)),
        })
    }

    /// The MESSAGE frame that carries `message` to clients. A notify message carries only
    /// its id (as decimal text): the client pulls the body.
    pub fn message(message: &Message) -> Result<Frame, CodecError> {
        let body = if message.mode == DeliveryMode::Notify {
            Body::from(message.id.to_string())
        } else {
            Body(message.body.clone())
        };
        Frame::new(
            0,
            &PushMessage::Message(Deliver {
                id: message.id,
                app: message.app.clone(),
                mode: message.mode,
                body,
            }),
        )
    }

    /// The binary push frame.
    pub fn binary(&self) -> &Bytes {
        &self.binary
    }

    /// The JSON text.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The binary frame's size.
    pub fn len(&self) -> usize {
        self.binary.len()
    }

    /// `true` for an empty frame (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.binary.is_empty()
    }
}
