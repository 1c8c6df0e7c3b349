//! Types every service shares: ids, messages, sessions, targets.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use longlink_codec::push::{DeliveryMode, Net};
use serde::{Deserialize, Serialize};

/// Identifies one connection on one room.
pub type ConnId = u64;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Longest uid, device, app or group name (the store's columns hold 128 bytes; apps 64).
pub const MAX_NAME_BYTES: usize = 128;

/// Checks a uid, device, app or group name: 1 to 128 bytes, no control characters.
///
/// ```
/// use longlink_push::model::check_name;
/// assert!(check_name("uid", "u1").is_ok());
/// assert!(check_name("uid", "").is_err());
/// assert!(check_name("uid", "a\nb").is_err());
/// ```
pub fn check_name(what: &str, name: &str) -> Result<(), crate::PushError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(crate::PushError::Invalid(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

pub use crate::ids::IdGenerator;

/// A message on its way to recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Unique id.
    pub id: u64,
    /// The app it belongs to.
    pub app: String,
    /// How it is delivered.
    pub mode: DeliveryMode,
    /// The content.
    pub body: Bytes,
    /// When it was accepted (Unix ms).
    pub created_ms: u64,
    /// After this (Unix ms) it is not delivered any more.
    pub expires_ms: u64,
}

impl Message {
    /// `true` once its TTL has passed.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_ms
    }
}

/// Who a push is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One user (all their devices, or one).
    Unicast {
        /// The user.
        uid: String,
        /// Only this device, if set.
        device: Option<String>,
    },
    /// Several users.
    Multicast {
        /// The users.
        uids: Vec<String>,
    },
    /// The members of a group of the app.
    Group {
        /// The group.
        group: String,
    },
    /// Everyone online in the app.
    Broadcast,
}

/// One live connection of a user, as the register records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The user.
    pub uid: String,
    /// The device.
    pub device: String,
    /// The room holding the connection.
    pub room: String,
    /// The connection on that room.
    pub conn: ConnId,
    /// The network type it connected over.
    pub net: Net,
    /// Apps subscribed on this connection.
    pub apps: Vec<String>,
    /// When it connected (Unix ms).
    pub since_ms: u64,
}

/// Where a message stands for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Stored, not yet sent.
    Stored,
    /// Sent at least once, not acknowledged.
    Delivered,
    /// Acknowledged by the client.
    Acked,
    /// Given up: TTL passed or too many unacknowledged deliveries.
    Expired,
}

impl DeliveryStatus {
    /// The code stored in the database.
    pub fn code(self) -> i64 {
        match self {
            DeliveryStatus::Stored => 0,
            DeliveryStatus::Delivered => 1,
            DeliveryStatus::Acked => 2,
            DeliveryStatus::Expired => 3,
        }
    }

    /// The status for a stored code.
    pub fn from_code(code: i64) -> Option<DeliveryStatus> {
        Some(match code {
            0 => DeliveryStatus::Stored,
            1 => DeliveryStatus::Delivered,
            2 => DeliveryStatus::Acked,
            3 => DeliveryStatus::Expired,
            _ => return None,
        })
    }
}

/// The delivery mode's code in the database.
pub fn mode_code(mode: DeliveryMode) -> i64 {
    match mode {
        DeliveryMode::AtLeastOnce => 0,
        DeliveryMode::AtMostOnce => 1,
        DeliveryMode::Notify => 2,
    }
}

/// The delivery mode for a stored code.
pub fn mode_from_code(code: i64) -> DeliveryMode {
    match code {
        1 => DeliveryMode::AtMostOnce,
        2 => DeliveryMode::Notify,
        _ => DeliveryMode::AtLeastOnce,
    }
}
