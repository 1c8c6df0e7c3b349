//! Push operations (the `op` field of a push frame).

use std::fmt;

use crate::CodecError;

/// What a push frame carries. The values are part of the wire format.
///
/// ```
/// use longlink_codec::push::Op;
/// assert_eq!(Op::try_from(5).unwrap(), Op::MESSAGE);
/// assert_eq!(Op::MESSAGE.name(), "message");
/// assert!(Op::try_from(999).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Op(u32);

macro_rules! ops {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $text:literal;)*) => {
        impl Op {
            $($(#[$doc])* pub const $name: Op = Op($value);)*

            /// Every known op, in wire order.
            pub const ALL: &'static [Op] = &[$(Op::$name),*];

            /// The op's name, as used in the JSON form (`"op": "auth_reply"`).
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($value => $text,)*
                    _ => "unknown",
                }
            }
        }

        impl TryFrom<u32> for Op {
            type Error = CodecError;
            fn try_from(op: u32) -> Result<Op, CodecError> {
                match op {
                    $($value => Ok(Op::$name),)*
                    op => Err(CodecError::UnknownOp { op }),
                }
            }
        }
    };
}

ops! {
    /// Client → server, first frame: who the client is and its token.
    AUTH = 1, "auth";
    /// Server → client: accepted (with the heartbeat interval) or refused (with a reason).
    AUTH_REPLY = 2, "auth_reply";
    /// Client → server keep-alive.
    HEARTBEAT = 3, "heartbeat";
    /// Server → client answer to a heartbeat.
    HEARTBEAT_REPLY = 4, "heartbeat_reply";
    /// Server → client: a pushed message.
    MESSAGE = 5, "message";
    /// Client → server: messages received.
    ACK = 6, "ack";
    /// Client → server: receive the messages of more apps on this connection.
    SUBSCRIBE = 7, "subscribe";
    /// Client → server: stop receiving an app's messages.
    UNSUBSCRIBE = 8, "unsubscribe";
    /// Client → server: data for the app's business server.
    UPSTREAM = 9, "upstream";
    /// Server → client: outcome of an UPSTREAM.
    UPSTREAM_REPLY = 10, "upstream_reply";
    /// Server → client: the session is closed by the server, with a reason.
    KICK = 11, "kick";
    /// Server → client: reconnect (elsewhere) after a delay; sent when a room drains.
    RECONNECT = 12, "reconnect";
    /// Either way: a request could not be served.
    ERROR = 13, "error";
    /// Server → client: several complete push frames in one body (one write, many messages).
    BATCH = 14, "batch";
    /// Client → server: a new token for this connection, before the old one expires
    /// (answered by an AUTH_REPLY with the same seq).
    REFRESH = 15, "refresh";
}

impl Op {
    /// The raw value.
    pub const fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Op({})", self.name())
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
