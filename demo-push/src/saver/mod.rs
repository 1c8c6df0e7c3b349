//! Store-then-send: every at-least-once (and notify) message is stored before it is sent,
//! marked delivered when sent, acknowledged by the client, redelivered until acknowledged,
//! and given up (expired) after its TTL or too many unacknowledged sends.
//! [`SqlSaver`] keeps it in SQLite (one process) or MySQL/MariaDB through `longlink-pool`;
//! the cluster's saver service puts a Redis index in front ([`HotSaver`]).

mod hot;
mod sql;

use serde::{Deserialize, Serialize};

pub use self::hot::HotSaver;
pub use self::sql::SqlSaver;
use crate::model::{DeliveryStatus, Message};

/// A recipient row: a user, and a device or `"*"` for any of the user's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The user.
    pub uid: String,
    /// A device, or `"*"`.
    pub device: String,
}

/// A stored message still owed to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The message.
    pub message: Message,
    /// Times it was sent to this user so far.
    pub attempts: u32,
}

/// One recipient's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientStatus {
    /// The user.
    pub uid: String,
    /// The device, or `"*"`.
    pub device: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Times sent.
    pub attempts: u32,
    /// Last change (Unix ms).
    pub updated_ms: u64,
}

/// A message and its recipients' states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageStatus {
    /// The id.
    pub id: u64,
    /// The app.
    pub app: String,
    /// When it was accepted (Unix ms).
    pub created_ms: u64,
    /// When its TTL ends (Unix ms).
    pub expires_ms: u64,
    /// Every recipient.
    pub recipients: Vec<RecipientStatus>,
}

/// A push made before with the same idempotency key, as it was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    /// Its message id.
    pub id: u64,
    /// Its recipients.
    pub recipients: u64,
    /// Whether it stored its message.
    pub stored: bool,
}

crate::contract! {
    /// What the rest of the system asks of the message store.
    pub trait Saver: service saver_svc as "saver" {
        // Idempotent (retried even after it may have run): the reads, and the writes that
        // move a row to a final state (acked, expired) — a second run changes no row the
        // first did not. Not: `store` and `claim` (a second run finds the first's rows
        // and answers as if another push had them), `delivered` (it counts attempts).
        /// Stores a message (its body once) and one row per recipient, atomically — with
        /// its idempotency `key`, if any, kept until the message's TTL ends. When the key
        /// belongs to a push already made, nothing is stored and that push is answered.
        // Not idempotent: a retry after it ran meets its own id (and key) and fails, or
        // answers the push as already made by another.
        fn store(message: Message, recipients: Vec<Recipient>, key: Option<String>) -> Option<Claimed>;
        /// Keeps the idempotency `key` of a push that stores no message (at most once)
        /// until `expires_ms`; answers the push that already has it, if one does.
        // Not idempotent: a retry finds the key it just took and answers it as taken.
        fn claim(app: String, key: String, id: u64, recipients: u64, expires_ms: u64) -> Option<Claimed>;
        /// Records that message `id` was sent to each of `uids` (one more attempt each); a
        /// row sent its `max_attempts`-th time is given up (expired) at once — an ACK that
        /// still comes turns it acked.
        // Not idempotent: `attempts + 1` — a retry would count a send twice and give a
        // row up early.
        fn delivered(id: u64, uids: Vec<String>, max_attempts: u32) -> ();
        /// Acknowledges `ids` for `uid`; answers the rows changed.
        // Idempotent by design: an acked row stays acked (a retry's count leaves out the
        // rows the first run changed; the callers only look at errors).
        #[idempotent]
        fn ack(uid: String, ids: Vec<u64>) -> u64;
        /// Gives up on message `id` for `uid`.
        #[idempotent]
        fn expire(id: u64, uid: String) -> ();
        /// The messages still owed to `uid` on `device`, oldest first, at most `limit`.
        // A read (it may prune index entries MySQL no longer owes: again, nothing).
        #[idempotent]
        fn pending(uid: String, device: String, now_ms: u64, limit: u32) -> Vec<Pending>;
        /// A message and its recipients' states.
        #[idempotent]
        fn status(id: u64) -> Option<MessageStatus>;
        /// The stored message, if `uid` is one of its recipients (for notify-mode pulls).
        #[idempotent]
        fn message_for(id: u64, uid: String) -> Option<Message>;
        /// Gives up (marks expired) every pending row whose message's TTL has passed, and
        /// forgets idempotency keys past theirs; answers how many rows.
        // Expires what is past `now_ms`: a second run finds nothing more to do.
        #[idempotent]
        fn sweep(now_ms: u64) -> u64;
        /// The largest id stored (0 if none), so new ids never collide after a restart.
        #[idempotent]
        fn max_id() -> u64;
    }
}
