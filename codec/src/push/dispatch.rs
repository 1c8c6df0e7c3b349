//! The dispatcher's answer: `GET /dispatch?uid=&net=&failed=` on the center (or the
//! dispatcher service) tells a client which rooms to connect to, best first, and which
//! heartbeat its network gets. Plain JSON, shared by the server and every client library.

use serde::{Deserialize, Serialize};

use super::Net;

/// Where a room listens, as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomAddress {
    /// The room's name.
    pub name: String,
    /// WebSocket URL (`ws://host:port/`, or `wss://` over TLS).
    pub ws: String,
    /// Raw TCP `host:port`.
    pub tcp: String,
    /// `tcp` speaks TLS (absent: plaintext).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp_tls: bool,
}

/// The dispatcher's answer.
///
/// ```
/// use longlink_codec::push::{Dispatch, Net};
/// let answer: Dispatch = serde_json::from_str(
///     r#"{"uid":"u1","net":"wifi","heartbeat_secs":480,"rooms":[{"name":"room-1","ws":"ws://127.0.0.1:7801/","tcp":"127.0.0.1:7802"}]}"#,
/// ).unwrap();
/// assert_eq!((answer.net, answer.rooms[0].tcp.as_str()), (Net::Wifi, "127.0.0.1:7802"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// The user asked about.
    pub uid: String,
    /// The network type asked about.
    pub net: Net,
    /// The heartbeat interval the room will ask for on this network, in seconds.
    pub heartbeat_secs: u64,
    /// Rooms to try, in order.
    pub rooms: Vec<RoomAddress>,
}
