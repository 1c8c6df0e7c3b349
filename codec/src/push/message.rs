//! Typed push messages, in a binary form (inside push frames) and a JSON form (for browsers).

use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::bodies::Body;
use super::proto::{Fields, Out};
use super::{HEADER_LEN, Op, Payload, PushFrame, VERSION};
use crate::CodecError;

/// The client's network type; the server picks the heartbeat interval from it.
///
/// ```
/// use longlink_codec::push::Net;
/// assert_eq!("wifi".parse::<Net>(), Ok(Net::Wifi));
/// assert_eq!(Net::G3.to_string(), "3g");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Net {
    /// 2G cellular.
    #[serde(rename = "2g")]
    G2,
    /// 3G cellular.
    #[serde(rename = "3g")]
    G3,
    /// 4G cellular.
    #[serde(rename = "4g")]
    G4,
    /// 5G cellular.
    #[serde(rename = "5g")]
    G5,
    /// Wi-Fi (or any fixed line).
    #[serde(rename = "wifi")]
    Wifi,
}

impl Net {
    /// Every network type.
    pub const ALL: [Net; 5] = [Net::G2, Net::G3, Net::G4, Net::G5, Net::Wifi];

    /// The name used on the wire and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Net::G2 => "2g",
            Net::G3 => "3g",
            Net::G4 => "4g",
            Net::G5 => "5g",
            Net::Wifi => "wifi",
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Net, String> {
        Net::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| format!("unknown network type {s:?} (expected 2g, 3g, 4g, 5g or wifi)"))
    }
}

/// How a message is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Stored, acknowledged, redelivered until ACKed or given up; the client drops duplicates.
    #[default]
    AtLeastOnce,
    /// Sent once, not stored, no ACK (presence-like data such as "typing…").
    AtMostOnce,
    /// Only a key goes down the connection; the client pulls the body over HTTP.
    Notify,
}

/// AUTH: who the client is. Its `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// The user.
    pub uid: String,
    /// The device (a user may be online on several).
    pub device: String,
    /// The network type.
    pub net: Net,
    /// The signed token proving `uid`.
    pub token: String,
    /// Apps whose messages this connection receives.
    #[serde(default)]
    pub apps: Vec<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("uid", &self.uid)
            .field("device", &self.device)
            .field("net", &self.net)
            .field("token", &"<token>")
            .field("apps", &self.apps)
            .finish()
    }
}

/// AUTH_REPLY: the outcome of AUTH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthReply {
    /// Whether the client is in.
    pub ok: bool,
    /// Why not, when refused.
    #[serde(default)]
    pub reason: Option<String>,
    /// Send a HEARTBEAT at least this often, in seconds.
    #[serde(default)]
    pub heartbeat_secs: u32,
    /// A session id the client may present to resume after a reconnect.
    #[serde(default)]
    pub session: Option<String>,
}

/// MESSAGE: a pushed message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliver {
    /// Unique message id (below 2^53, so it survives JavaScript numbers); ACKs name it.
    pub id: u64,
    /// The app the message belongs to.
    pub app: String,
    /// How it is delivered.
    #[serde(default)]
    pub mode: DeliveryMode,
    /// The content (for `notify`, the key to pull).
    pub body: Payload,
}

/// ACK: messages received.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ack {
    /// Ids of the messages received.
    pub ids: Vec<u64>,
}

/// SUBSCRIBE / UNSUBSCRIBE: the apps to add or remove on this connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Subscribe {
    /// App names.
    pub apps: Vec<String>,
}

/// REFRESH: a new token for the connection's user, sent before the current one expires.
/// The room answers with an [`AuthReply`] carrying the same seq: `ok`, or why not (the
/// connection keeps its current token then).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Refresh {
    /// The new token.
    pub token: String,
}

impl std::fmt::Debug for Refresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token is a credential: never in logs.
        f.debug_struct("Refresh")
            .field("token", &"<token>")
            .finish()
    }
}

/// UPSTREAM: data from the client for the app's business server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The app it is for.
    pub app: String,
    /// The app-defined type, used to route it.
    #[serde(rename = "type")]
    pub kind: String,
    /// The data.
    pub body: Payload,
}

/// UPSTREAM_REPLY: whether the upstream data was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamReply {
    /// Accepted or not.
    pub ok: bool,
    /// Why not.
    #[serde(default)]
    pub reason: Option<String>,
}

/// KICK: the server closes the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kick {
    /// Why.
    pub reason: String,
}

/// RECONNECT: reconnect, possibly elsewhere, after a delay (a room is draining).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconnect {
    /// Why.
    pub reason: String,
    /// Wait this long before reconnecting, in milliseconds (spreads the move out).
    pub after_ms: u32,
}

/// ERROR: a request could not be served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// A numeric code (HTTP-like: 400 bad request, 401 unauthenticated, 413 too large, 429 limited, 503 unavailable).
    pub code: u16,
    /// What went wrong.
    pub reason: String,
}

/// A typed push message: the body of a push frame read according to its op.
///
/// The binary form is the frame (op and seq in the header) with a protobuf body (the
/// messages of `proto/push.proto`); the JSON form is one object with `"op"` and `"seq"`
/// beside the message's fields, for browser clients on WebSocket text frames.
///
/// ```
/// use longlink_codec::push::{Ack, PushMessage};
///
/// let ack = PushMessage::Ack(Ack { ids: vec![1, 2] });
/// let json = ack.to_json(9);
/// assert_eq!(json, r#"{"seq":9,"op":"ack","ids":[1,2]}"#);
/// assert_eq!(PushMessage::from_json(&json, 1024).unwrap(), (9, ack.clone()));
///
/// let frame = ack.to_frame(9).unwrap();
/// assert_eq!(PushMessage::from_frame(&frame).unwrap(), ack);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PushMessage {
    /// See [`Auth`].
    Auth(Auth),
    /// See [`AuthReply`].
    AuthReply(AuthReply),
    /// Client keep-alive.
    Heartbeat,
    /// Answer to a heartbeat.
    HeartbeatReply,
    /// See [`Deliver`].
    Message(Deliver),
    /// See [`Ack`].
    Ack(Ack),
    /// See [`Subscribe`].
    Subscribe(Subscribe),
    /// See [`Subscribe`].
    Unsubscribe(Subscribe),
    /// See [`Upstream`].
    Upstream(Upstream),
    /// See [`UpstreamReply`].
    UpstreamReply(UpstreamReply),
    /// See [`Kick`].
    Kick(Kick),
    /// See [`Reconnect`].
    Reconnect(Reconnect),
    /// See [`ErrorMessage`].
    Error(ErrorMessage),
    /// See [`Refresh`].
    Refresh(Refresh),
}

#[derive(Serialize)]
struct JsonOut<'a> {
    seq: u32,
    #[serde(flatten)]
    message: &'a PushMessage,
}

#[derive(Deserialize)]
struct JsonIn {
    #[serde(default)]
    seq: u32,
    #[serde(flatten)]
    message: PushMessage,
}

fn put<M: Body>(message: &M, dst: &mut BytesMut) {
    message.write(&mut Out(dst));
}

fn body<M: Body>(what: &'static str, bytes: &Bytes) -> Result<M, CodecError> {
    M::read(Fields::new(what, bytes))
}

fn body_len<M: Body>(message: &M) -> usize {
    message.encoded_len()
}

impl PushMessage {
    /// The op this message travels as.
    pub fn op(&self) -> Op {
        match self {
            PushMessage::Auth(_) => Op::AUTH,
            PushMessage::AuthReply(_) => Op::AUTH_REPLY,
            PushMessage::Heartbeat => Op::HEARTBEAT,
            PushMessage::HeartbeatReply => Op::HEARTBEAT_REPLY,
            PushMessage::Message(_) => Op::MESSAGE,
            PushMessage::Ack(_) => Op::ACK,
            PushMessage::Subscribe(_) => Op::SUBSCRIBE,
            PushMessage::Unsubscribe(_) => Op::UNSUBSCRIBE,
            PushMessage::Upstream(_) => Op::UPSTREAM,
            PushMessage::UpstreamReply(_) => Op::UPSTREAM_REPLY,
            PushMessage::Kick(_) => Op::KICK,
            PushMessage::Reconnect(_) => Op::RECONNECT,
            PushMessage::Error(_) => Op::ERROR,
            PushMessage::Refresh(_) => Op::REFRESH,
        }
    }

    /// Length of the protobuf body.
    fn body_len(&self) -> usize {
        match self {
            PushMessage::Auth(m) => body_len(m),
            PushMessage::AuthReply(m) => body_len(m),
            PushMessage::Heartbeat | PushMessage::HeartbeatReply => 0,
            PushMessage::Message(m) => body_len(m),
            PushMessage::Ack(m) => body_len(m),
            PushMessage::Subscribe(m) | PushMessage::Unsubscribe(m) => body_len(m),
            PushMessage::Upstream(m) => body_len(m),
            PushMessage::UpstreamReply(m) => body_len(m),
            PushMessage::Kick(m) => body_len(m),
            PushMessage::Reconnect(m) => body_len(m),
            PushMessage::Error(m) => body_len(m),
            PushMessage::Refresh(m) => body_len(m),
        }
    }

    /// Length of the binary frame, header included.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }

    /// Writes the message as a binary push frame (protobuf body) into `dst`: it reserves
    /// exactly [`frame_len`](Self::frame_len) bytes and writes the body in place, so into a
    /// buffer with room it allocates nothing. A body over 4 GiB cannot be framed.
    pub fn encode(&self, seq: u32, dst: &mut BytesMut) -> Result<(), CodecError> {
        let len = self.frame_len();
        let Ok(wire_len) = u32::try_from(len) else {
            return Err(CodecError::FrameTooLarge {
                len: len as u64,
                max: u32::MAX.into(),
            });
        };
        dst.reserve(len);
        dst.put_u32(wire_len);
        dst.put_u16(HEADER_LEN as u16);
        dst.put_u16(VERSION);
        dst.put_u32(self.op().value());
        dst.put_u32(seq);
        match self {
            PushMessage::Auth(m) => put(m, dst),
            PushMessage::AuthReply(m) => put(m, dst),
            PushMessage::Heartbeat | PushMessage::HeartbeatReply => {}
            PushMessage::Message(m) => put(m, dst),
            PushMessage::Ack(m) => put(m, dst),
            PushMessage::Subscribe(m) | PushMessage::Unsubscribe(m) => put(m, dst),
            PushMessage::Upstream(m) => put(m, dst),
            PushMessage::UpstreamReply(m) => put(m, dst),
            PushMessage::Kick(m) => put(m, dst),
            PushMessage::Reconnect(m) => put(m, dst),
            PushMessage::Error(m) => put(m, dst),
            PushMessage::Refresh(m) => put(m, dst),
        }
        Ok(())
    }

    /// The message as a push frame.
    pub fn to_frame(&self, seq: u32) -> Result<PushFrame, CodecError> {
        let mut buf = BytesMut::new();
        self.encode(seq, &mut buf)?;
        bytes::Buf::advance(&mut buf, HEADER_LEN);
        Ok(PushFrame::new(self.op(), seq, buf.freeze()))
    }

    /// Reads a frame's body according to its op. BATCH is not a message: use
    /// [`PushFrame::unbatch`].
    pub fn from_frame(frame: &PushFrame) -> Result<PushMessage, CodecError> {
        let b = &frame.body;
        let what = frame.op.name();
        Ok(match frame.op {
            Op::AUTH => PushMessage::Auth(body(what, b)?),
            Op::AUTH_REPLY => PushMessage::AuthReply(body(what, b)?),
            Op::HEARTBEAT => PushMessage::Heartbeat,
            Op::HEARTBEAT_REPLY => PushMessage::HeartbeatReply,
            Op::MESSAGE => PushMessage::Message(body(what, b)?),
            Op::ACK => PushMessage::Ack(body(what, b)?),
            Op::SUBSCRIBE => PushMessage::Subscribe(body(what, b)?),
            Op::UNSUBSCRIBE => PushMessage::Unsubscribe(body(what, b)?),
            Op::UPSTREAM => PushMessage::Upstream(body(what, b)?),
            Op::UPSTREAM_REPLY => PushMessage::UpstreamReply(body(what, b)?),
            Op::KICK => PushMessage::Kick(body(what, b)?),
            Op::RECONNECT => PushMessage::Reconnect(body(what, b)?),
            Op::ERROR => PushMessage::Error(body(what, b)?),
            Op::REFRESH => PushMessage::Refresh(body(what, b)?),
            op => {
                return Err(CodecError::Malformed {
                    what: op.name(),
                    reason: "not a single message".into(),
                });
            }
        })
    }

    /// The JSON form: `{"seq": .., "op": "..", fields..}`.
    pub fn to_json(&self, seq: u32) -> String {
        // Serializing these types to JSON cannot fail: no maps with non-string keys, no
        // failing Serialize impls.
        serde_json::to_string(&JsonOut { seq, message: self })
            .expect("push messages always serialize to json")
    }

    /// Reads the JSON form; `seq` defaults to 0. Text over `max_bytes` is refused before parsing.
    pub fn from_json(text: &str, max_bytes: usize) -> Result<(u32, PushMessage), CodecError> {
        if text.len() > max_bytes {
            return Err(CodecError::FrameTooLarge {
                len: text.len() as u64,
                max: max_bytes as u64,
            });
        }
        let JsonIn { seq, message } = serde_json::from_str(text)?;
        Ok((seq, message))
    }
}
