//! Each push message's body in the protobuf encoding of `proto/push.proto`: field numbers
//! and types here are that file's, checked against it by `codec/tests/push_proto.rs`.

use bytes::{BufMut, Bytes};

use super::Payload;
use super::message::{
    Ack, Auth, AuthReply, Deliver, DeliveryMode, ErrorMessage, Kick, Net, Reconnect, Refresh,
    Subscribe, Upstream, UpstreamReply,
};
use super::proto::{Fields, Out, len_always_bytes, len_bytes, len_packed, len_strings, len_uint};
use crate::CodecError;

/// A message with a protobuf body.
pub(super) trait Body: Sized {
    /// Exact length of the encoded body.
    fn encoded_len(&self) -> usize;
    /// Writes the body (`encoded_len` bytes).
    fn write<B: BufMut>(&self, out: &mut Out<'_, B>);
    /// Reads a body; `body` is the frame's, so `bytes` fields are slices of it.
    fn read(fields: Fields<'_>) -> Result<Self, CodecError>;
}

fn len_opt(tag: u32, value: &Option<String>) -> usize {
    value
        .as_ref()
        .map_or(0, |v| len_always_bytes(tag, v.as_bytes()))
}

fn put_opt<B: BufMut>(out: &mut Out<'_, B>, tag: u32, value: &Option<String>) {
    if let Some(v) = value {
        out.always_bytes(tag, v.as_bytes());
    }
}

impl Net {
    /// The value of the `Net` enum of `proto/push.proto`.
    pub fn proto_value(self) -> u64 {
        match self {
            Net::G2 => 1,
            Net::G3 => 2,
            Net::G4 => 3,
            Net::G5 => 4,
            Net::Wifi => 5,
        }
    }

    fn from_proto(value: u64) -> Option<Net> {
        Net::ALL.into_iter().find(|n| n.proto_value() == value)
    }
}

impl DeliveryMode {
    /// The value of the `DeliveryMode` enum of `proto/push.proto`.
    pub fn proto_value(self) -> u64 {
        match self {
            DeliveryMode::AtLeastOnce => 0,
            DeliveryMode::AtMostOnce => 1,
            DeliveryMode::Notify => 2,
        }
    }

    fn from_proto(value: u64) -> Option<DeliveryMode> {
        [
            DeliveryMode::AtLeastOnce,
            DeliveryMode::AtMostOnce,
            DeliveryMode::Notify,
        ]
        .into_iter()
        .find(|m| m.proto_value() == value)
    }
}

/// Reads every field of a body with `each(tag, value)`; unknown tags are skipped.
macro_rules! read_fields {
    ($fields:ident, |$tag:ident, $value:ident| $body:block) => {{
        let mut $fields = $fields;
        while let Some(($tag, $value)) = $fields.next_field()? {
            $body
        }
    }};
}

impl Body for Auth {
    fn encoded_len(&self) -> usize {
        len_bytes(1, self.uid.as_bytes())
            + len_bytes(2, self.device.as_bytes())
            + len_uint(3, self.net.proto_value())
            + len_bytes(4, self.token.as_bytes())
            + len_strings(5, &self.apps)
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.bytes(1, self.uid.as_bytes());
        out.bytes(2, self.device.as_bytes());
        out.uint(3, self.net.proto_value());
        out.bytes(4, self.token.as_bytes());
        out.strings(5, &self.apps);
    }

    fn read(fields: Fields<'_>) -> Result<Auth, CodecError> {
        let (mut uid, mut device, mut net, mut token, mut apps) =
            (String::new(), String::new(), 0, String::new(), Vec::new());
        read_fields!(fields, |tag, v| {
            match tag {
                1 => uid = fields.string("auth.uid", v)?,
                2 => device = fields.string("auth.device", v)?,
                3 => net = fields.u64("auth.net", v)?,
                4 => token = fields.string("auth.token", v)?,
                5 => apps.push(fields.string("auth.apps", v)?),
                _ => {}
            }
        });
        let net = Net::from_proto(net).ok_or_else(|| CodecError::Malformed {
            what: "auth",
            reason: match net {
                0 => "auth.net is missing".to_owned(),
                n => format!("auth.net {n} is not a known network type"),
            },
        })?;
        Ok(Auth {
            uid,
            device,
            net,
            token,
            apps,
        })
    }
}

impl Body for AuthReply {
    fn encoded_len(&self) -> usize {
        len_uint(1, self.ok.into())
            + len_opt(2, &self.reason)
            + len_uint(3, self.heartbeat_secs.into())
            + len_opt(4, &self.session)
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.bool(1, self.ok);
        put_opt(out, 2, &self.reason);
        out.uint(3, self.heartbeat_secs.into());
        put_opt(out, 4, &self.session);
    }

    fn read(fields: Fields<'_>) -> Result<AuthReply, CodecError> {
        let mut m = AuthReply {
            ok: false,
            reason: None,
            heartbeat_secs: 0,
            session: None,
        };
        read_fields!(fields, |tag, v| {
            match tag {
                1 => m.ok = fields.bool("auth_reply.ok", v)?,
                2 => m.reason = Some(fields.string("auth_reply.reason", v)?),
                3 => m.heartbeat_secs = fields.u32("auth_reply.heartbeat_secs", v)?,
                4 => m.session = Some(fields.string("auth_reply.session", v)?),
                _ => {}
            }
        });
        Ok(m)
    }
}

impl Body for Deliver {
    fn encoded_len(&self) -> usize {
        len_uint(1, self.id)
            + len_bytes(2, self.app.as_bytes())
            + len_uint(3, self.mode.proto_value())
            + len_bytes(4, &self.body.0)
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.uint(1, self.id);
        out.bytes(2, self.app.as_bytes());
        out.uint(3, self.mode.proto_value());
        out.bytes(4, &self.body.0);
    }

    fn read(fields: Fields<'_>) -> Result<Deliver, CodecError> {
        let (mut id, mut app, mut mode, mut body) = (0, String::new(), 0, Bytes::new());
        read_fields!(fields, |tag, v| {
            match tag {
                1 => id = fields.u64("message.id", v)?,
                2 => app = fields.string("message.app", v)?,
                3 => mode = fields.u64("message.mode", v)?,
                4 => body = fields.bytes("message.body", v)?,
                _ => {}
            }
        });
        let mode = DeliveryMode::from_proto(mode).ok_or_else(|| CodecError::Malformed {
            what: "message",
            reason: format!("message.mode {mode} is not a known delivery mode"),
        })?;
        Ok(Deliver {
            id,
            app,
            mode,
            body: Payload(body),
        })
    }
}

impl Ack {
    /// Reads an ACK body's ids into `ids` (cleared first), keeping its capacity: decoding
    /// ACKs into one reused vector allocates nothing once it is large enough.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use longlink_codec::push::{Ack, PushMessage};
    /// let frame = PushMessage::Ack(Ack { ids: vec![7, 1 << 40] }).to_frame(1).unwrap();
    /// let mut ids = Vec::with_capacity(16);
    /// Ack::read_ids(&frame.body, &mut ids).unwrap();
    /// assert_eq!(ids, [7, 1 << 40]);
    /// ```
    pub fn read_ids(body: &Bytes, ids: &mut Vec<u64>) -> Result<(), CodecError> {
        ids.clear();
        let fields = Fields::new("ack", body);
        read_fields!(fields, |tag, v| {
            if tag == 1 {
                fields.u64s("ack.ids", v, ids)?;
            }
        });
        Ok(())
    }
}

impl Body for Ack {
    fn encoded_len(&self) -> usize {
        len_packed(1, &self.ids)
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.packed(1, &self.ids);
    }

    fn read(fields: Fields<'_>) -> Result<Ack, CodecError> {
        let mut ids = Vec::new();
        read_fields!(fields, |tag, v| {
            if tag == 1 {
                fields.u64s("ack.ids", v, &mut ids)?;
            }
        });
        Ok(Ack { ids })
    }
}

impl Body for Subscribe {
    fn encoded_len(&self) -> usize {
        len_strings(1, &self.apps)
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.strings(1, &self.apps);
    }

    fn read(fields: Fields<'_>) -> Result<Subscribe, CodecError> {
        let mut apps = Vec::new();
        read_fields!(fields, |tag, v| {
            if tag == 1 {
                apps.push(fields.string("subscribe.apps", v)?);
            }
        });
        Ok(Subscribe { apps })
    }
}

impl Body for Upstream {
    fn encoded_len(&self) -> usize {
        len_bytes(1, self.app.as_bytes())
            + len_bytes(2, self.kind.as_bytes())
            + len_bytes(3, &self.body.0)
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.bytes(1, self.app.as_bytes());
        out.bytes(2, self.kind.as_bytes());
        out.bytes(3, &self.body.0);
    }

    fn read(fields: Fields<'_>) -> Result<Upstream, CodecError> {
        let (mut app, mut kind, mut body) = (String::new(), String::new(), Bytes::new());
        read_fields!(fields, |tag, v| {
            match tag {
                1 => app = fields.string("upstream.app", v)?,
                2 => kind = fields.string("upstream.type", v)?,
                3 => body = fields.bytes("upstream.body", v)?,
                _ => {}
            }
        });
        Ok(Upstream {
            app,
            kind,
            body: Payload(body),
        })
    }
}

impl Body for UpstreamReply {
    fn encoded_len(&self) -> usize {
        len_uint(1, self.ok.into()) + len_opt(2, &self.reason)
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.bool(1, self.ok);
        put_opt(out, 2, &self.reason);
    }

    fn read(fields: Fields<'_>) -> Result<UpstreamReply, CodecError> {
        let mut m = UpstreamReply {
            ok: false,
            reason: None,
        };
        read_fields!(fields, |tag, v| {
            match tag {
                1 => m.ok = fields.bool("upstream_reply.ok", v)?,
                2 => m.reason = Some(fields.string("upstream_reply.reason", v)?),
                _ => {}
            }
        });
        Ok(m)
    }
}

impl Body for Kick {
    fn encoded_len(&self) -> usize {
        len_bytes(1, self.reason.as_bytes())
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.bytes(1, self.reason.as_bytes());
    }

    fn read(fields: Fields<'_>) -> Result<Kick, CodecError> {
        let mut reason = String::new();
        read_fields!(fields, |tag, v| {
            if tag == 1 {
                reason = fields.string("kick.reason", v)?;
            }
        });
        Ok(Kick { reason })
    }
}

impl Body for Reconnect {
    fn encoded_len(&self) -> usize {
        len_bytes(1, self.reason.as_bytes()) + len_uint(2, self.after_ms.into())
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.bytes(1, self.reason.as_bytes());
        out.uint(2, self.after_ms.into());
    }

    fn read(fields: Fields<'_>) -> Result<Reconnect, CodecError> {
        let mut m = Reconnect {
            reason: String::new(),
            after_ms: 0,
        };
        read_fields!(fields, |tag, v| {
            match tag {
                1 => m.reason = fields.string("reconnect.reason", v)?,
                2 => m.after_ms = fields.u32("reconnect.after_ms", v)?,
                _ => {}
            }
        });
        Ok(m)
    }
}

impl Body for ErrorMessage {
    fn encoded_len(&self) -> usize {
        len_uint(1, self.code.into()) + len_bytes(2, self.reason.as_bytes())
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.uint(1, self.code.into());
        out.bytes(2, self.reason.as_bytes());
    }

    fn read(fields: Fields<'_>) -> Result<ErrorMessage, CodecError> {
        let mut m = ErrorMessage {
            code: 0,
            reason: String::new(),
        };
        read_fields!(fields, |tag, v| {
            match tag {
                1 => {
                    let code = fields.u64("error.code", v)?;
                    m.code = u16::try_from(code).map_err(|_| CodecError::Malformed {
                        what: "error",
                        reason: format!("error.code {code} is over 65535"),
                    })?;
                }
                2 => m.reason = fields.string("error.reason", v)?,
                _ => {}
            }
        });
        Ok(m)
    }
}

impl Body for Refresh {
    fn encoded_len(&self) -> usize {
        len_bytes(1, self.token.as_bytes())
    }

    fn write<B: BufMut>(&self, out: &mut Out<'_, B>) {
        out.bytes(1, self.token.as_bytes());
    }

    fn read(fields: Fields<'_>) -> Result<Refresh, CodecError> {
        let mut token = String::new();
        read_fields!(fields, |tag, v| {
            if tag == 1 {
                token = fields.string("refresh.token", v)?;
            }
        });
        Ok(Refresh { token })
    }
}
