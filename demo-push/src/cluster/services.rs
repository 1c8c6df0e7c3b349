//! The internal services, declared once with `longlink_rpc::service!`: each gets a typed
//! client and a server adapter. Errors cross the wire as statuses (see [`status`]).

use longlink_codec::push::{Upstream, UpstreamReply};
use longlink_rpc::ServiceError;
use serde::{Deserialize, Serialize};

use crate::PushError;
use crate::model::{Message, Session};
use crate::saver::{MessageStatus, Pending, Recipient};

/// Application statuses of the internal services.
pub mod status {
    /// The request was not valid ([`PushError::Invalid`](crate::PushError::Invalid)).
    pub const INVALID: u16 = 1000;
    /// The message store (MySQL) or Redis failed.
    pub const STORE: u16 = 1001;
    /// A bounded queue was full.
    pub const OVERLOADED: u16 = 1002;
    /// A service further down failed.
    pub const UNAVAILABLE: u16 = 1003;
}

/// A [`PushError`] as a service answers it.
pub fn to_service_error(e: PushError) -> ServiceError {
    match e {
        PushError::Invalid(m) => ServiceError::new(status::INVALID, m),
        PushError::Storage(e) => ServiceError::new(status::STORE, e.to_string()),
        PushError::Overloaded(o) => ServiceError::new(status::OVERLOADED, o.to_string()),
        PushError::Unavailable { service, detail } => ServiceError::new(
            if service == "store" {
                status::STORE
            } else {
                status::UNAVAILABLE
            },
            format!("{service}: {detail}"),
        ),
    }
}

/// A failed internal call as a [`PushError`]: what the center answers with (503 for
/// anything but an invalid request).
pub fn from_rpc_error(service: &'static str, e: longlink_rpc::RpcError) -> PushError {
    match e {
        longlink_rpc::RpcError::Remote {
            status, message, ..
        } => match status {
            status::INVALID => PushError::Invalid(message),
            status::STORE => PushError::Unavailable {
                service: "store",
                detail: message,
            },
            _ => PushError::Unavailable {
                service,
                detail: message,
            },
        },
        e => {
            let may = if e.may_have_run() {
                " (the call may have run)"
            } else {
                " (the call did not run)"
            };
            PushError::Unavailable {
                service,
                detail: format!("{e}{may}"),
            }
        }
    }
}

/// The register's answer to a lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// The sessions of each uid asked about, in order.
    pub sessions: Vec<Vec<Session>>,
    /// The register lost its state recently and rooms may not have re-filled it yet:
    /// an empty answer proves nothing.
    pub settling: bool,
}

/// A group membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOp {
    /// The app.
    pub app: String,
    /// The group.
    pub group: String,
    /// The user.
    pub uid: String,
}

/// A message for some users of one room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Its recipients (those on this room get it).
    pub uids: Vec<String>,
    /// Only this device, if set.
    pub device: Option<String>,
}

/// What a room delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomReached {
    /// Users reached.
    pub users: Vec<String>,
    /// Connections written to.
    pub deliveries: u64,
}

longlink_rpc::service! {
    /// The register service: sessions and groups, in Redis.
    pub mod register_svc {
        /// Records (or refreshes) sessions.
        fn connect(sessions: Vec<Session>);
        /// Forgets sessions.
        fn disconnect(sessions: Vec<Session>);
        /// The sessions of each uid.
        fn lookup(uids: Vec<String>) -> Lookup;
        /// Adds a user to a group.
        fn bind(op: GroupOp);
        /// Removes a user from a group.
        fn unbind(op: GroupOp);
        /// A group's members: (app, group).
        fn members(app: String, group: String) -> Vec<String>;
        /// (online users, groups).
        fn counts() -> (u64, u64);
        /// The register's epoch: it changes when the register lost its state.
        fn epoch() -> String;
    }
}

longlink_rpc::service! {
    /// The saver service: store-then-send state, in MySQL (durable) and Redis (hot).
    pub mod saver_svc {
        /// Stores a message for its recipients (before it is sent).
        fn store(message: Message, recipients: Vec<Recipient>);
        /// Marks a message delivered to users.
        fn delivered(id: u64, uids: Vec<String>);
        /// A user's ACKs; answers how many rows changed.
        fn ack(uid: String, ids: Vec<u64>) -> u64;
        /// Gives up a message for a user.
        fn expire(id: u64, uid: String);
        /// What a user's device is owed: (uid, device, now_ms, limit).
        fn pending(uid: String, device: String, now_ms: u64, limit: u32) -> Vec<Pending>;
        /// A message's status.
        fn status(id: u64) -> Option<MessageStatus>;
        /// A message, if it was sent to this user: (id, uid).
        fn message_for(id: u64, uid: String) -> Option<Message>;
        /// Marks messages past their TTL expired.
        fn sweep(now_ms: u64) -> u64;
        /// The highest message id stored.
        fn max_id() -> u64;
    }
}

longlink_rpc::service! {
    /// The coordinator service: webhooks (upstream, online/offline).
    pub mod coordinator_svc {
        /// An online (true) or offline callback.
        fn presence(session: Session, online: bool);
        /// Upstream data from a client.
        fn upstream(session: Session, upstream: Upstream) -> UpstreamReply;
    }
}

longlink_rpc::service! {
    /// A room: delivers to the connections it holds.
    pub mod room_svc {
        /// Delivers to some users.
        fn deliver(delivery: Delivery) -> RoomReached;
        /// Delivers to everyone in the message's app.
        fn broadcast(message: Message) -> RoomReached;
        /// The users online in an app.
        fn users_in(app: String) -> Vec<String>;
        /// Kicks a user's connections in an app: (uid, app, reason).
        fn kick(uid: String, app: String, reason: String) -> u64;
        /// Drains the room over a window in milliseconds.
        fn drain(window_ms: u64);
    }
}
