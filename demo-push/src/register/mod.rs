//! The session store: which connections each user has, on which rooms, and group
//! membership. In memory for one process ([`MemoryRegister`]); in Redis for a cluster
//! ([`RedisRegister`], served over RPC), where each room keeps its own sessions alive in it
//! ([`GraceRegister`]).

mod grace;
mod memory;
mod redis;

use serde::{Deserialize, Serialize};

pub use self::grace::GraceRegister;
pub use self::memory::MemoryRegister;
pub use self::redis::{RedisRegister, redis_err};
use crate::PushError;
use crate::model::Session;

/// The register's answer to a lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// The sessions of each uid asked about, in order.
    pub sessions: Vec<Vec<Session>>,
    /// The register lost its state recently and rooms may not have re-filled it yet:
    /// an empty answer proves nothing.
    pub settling: bool,
}

/// What the register holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Users with at least one session.
    pub users: u64,
    /// Groups with at least one member.
    pub groups: u64,
}

crate::contract! {
    /// What the rest of the system asks of a session store.
    pub trait Register: service register_svc as "register" {
        // Idempotent (retried even after it may have run): every method but `reap`. The
        // writes set or remove entries keyed by (uid, room, conn) or (app, group, uid),
        // so a second run leaves what the first left; the rest are reads.
        /// Records (or refreshes) connections.
        // A write of the same session again only renews its TTL (a duplicate landing
        // after its disconnect leaves an entry that the TTL removes).
        #[idempotent]
        fn connect(sessions: Vec<Session>) -> ();
        /// Forgets connections.
        #[idempotent]
        fn disconnect(sessions: Vec<Session>) -> ();
        /// The live connections of each of `uids`.
        #[idempotent]
        fn lookup(uids: Vec<String>) -> Lookup;
        /// Adds `uid` to `group` of `app`.
        // A set add (a retry that meets a full group may be refused, with the member in).
        #[idempotent]
        fn bind(app: String, group: String, uid: String) -> ();
        /// Removes `uid` from `group` of `app`.
        #[idempotent]
        fn unbind(app: String, group: String, uid: String) -> ();
        /// The members of `group` of `app`, sorted.
        #[idempotent]
        fn members(app: String, group: String) -> Vec<String>;
        /// Users online and groups held.
        #[idempotent]
        fn counts() -> Counts;
        /// When the register's state began (Unix ms): it changes when the state was lost
        /// (rooms then write their sessions again).
        #[idempotent]
        fn epoch() -> u64;
        /// Removes every session of `room` (a room that is gone, or one that just started
        /// and so holds none of them) and answers them — once: of several callers at the
        /// same time, one gets the sessions, the others nothing (each session's offline
        /// callback goes out once).
        // Not idempotent: it hands the sessions out once; a retry after a lost answer
        // would get nothing, and their offline callbacks would never go out.
        fn reap(room: String) -> Vec<Session>;
    }
}

impl dyn Register {
    /// The live connections of `uid`.
    pub async fn sessions(&self, uid: &str) -> Result<Vec<Session>, PushError> {
        let mut lookup = self.lookup(vec![uid.to_owned()]).await?;
        Ok(lookup.sessions.pop().unwrap_or_default())
    }
}
