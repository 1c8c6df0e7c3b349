//! The rooms as the center sees them: each room a [`Gateway`] (the [`Room`] in this
//! process, or a room process over RPC), found through a [`Directory`] (one local room, or
//! the cluster's membership), and a [`Fanout`] that sends a message to the rooms holding its
//! recipients. One implementation for both deployments: the cluster plugs in remote
//! gateways and membership, nothing else.
//!
//! [`Room`]: crate::room::Room

mod directory;
mod fanout;
mod membership;

use serde::{Deserialize, Serialize};

pub use self::directory::{Directory, Local, RoomEntry};
pub use self::fanout::Fanout;
pub use self::membership::{GatewayFactory, GoneHook, Membership, MembershipView, RoomInfo};
use crate::frame::Frame;

/// Who a delivery reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reached {
    /// The users reached (each once).
    pub users: Vec<String>,
    /// Connections written to.
    pub deliveries: u64,
    /// The most deliveries one room made (what broadcast pacing counts).
    pub busiest_room: u64,
    /// Recipients that may be online but could not be reached: their room is not known
    /// or did not answer. A stored message is tried again for them
    /// ([`Retries`](crate::retries::Retries)); an offline user is not listed (it gets the
    /// message when it connects).
    #[serde(default)]
    pub unreached: Vec<String>,
}

/// What a room says of itself when asked directly (membership could not say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomLoad {
    /// Its name.
    pub name: String,
    /// Authenticated connections now.
    pub connections: u64,
    /// Whether it drains.
    pub draining: bool,
}

impl Reached {
    /// What several rooms reached together.
    pub fn merge(answers: impl IntoIterator<Item = Reached>) -> Reached {
        let mut reached = Reached::default();
        for a in answers {
            reached.deliveries += a.deliveries;
            reached.busiest_room = reached.busiest_room.max(a.deliveries);
            reached.users.extend(a.users);
        }
        reached.users.sort_unstable();
        reached.users.dedup();
        reached
    }

    /// Records as unreached those of `missed` (the users of rooms that could not be
    /// called) that no room reached after all.
    pub(crate) fn unreached_of(&mut self, missed: &[String]) {
        self.unreached = missed
            .iter()
            .filter(|u| self.users.binary_search(u).is_err())
            .cloned()
            .collect();
    }
}

crate::contract! {
    /// One room, as the center reaches it.
    pub trait Gateway: service room_svc as "room" {
        // Idempotent: the reads and `drain` (a connection is told to reconnect once). Not:
        // `deliver` and `broadcast` (a retry sends the frame to the devices again and
        // counts the deliveries twice), `kick` (a retry answers 0 kicked).
        /// Queues `frame` for the connections of `uids` that subscribe `app` (and are
        /// `device`, if set).
        fn deliver(app: String, frame: Frame, uids: Vec<String>, device: Option<String>) -> Reached;
        /// Queues `frame` for every connection subscribing `app`; with `users`, the answer
        /// lists the users reached (a stored message records its deliveries).
        fn broadcast(app: String, frame: Frame, users: bool) -> Reached;
        /// The users online in `app`.
        #[idempotent]
        fn users_in(app: String) -> Vec<String>;
        /// Closes `uid`'s connections in `app` with a KICK carrying `reason`; answers how
        /// many.
        // Kicking twice closes nothing more, but the retry's answer (0) would hide how many
        // the first closed: the center reports that number.
        fn kick(uid: String, app: String, reason: String) -> u64;
        /// Stops taking users and tells the connected ones to reconnect elsewhere, spread
        /// over `window_ms`.
        #[idempotent]
        fn drain(window_ms: u64) -> ();
        /// Its name and load, straight from the room (when membership does not list it).
        #[idempotent]
        fn load() -> RoomLoad;
    }
}
