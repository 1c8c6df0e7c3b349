//! The dispatcher: tells a client which rooms to connect to, best first. The room where
//! the user's session is (or waits out its grace period) comes first — a "flash reconnect"
//! lands where its state is — then the open rooms, least loaded first; draining rooms get
//! no new users, full ones go last, and the addresses the client reports as failed go
//! after everything else. One component for every deployment: one local room, or the
//! cluster's membership.
//!
//! A client asks `GET /dispatch?uid=&net=&failed=` before it connects, caches the answer
//! per network type, asks again when its network type changes, and names the addresses
//! that failed so the next answer puts them last.

use std::sync::Arc;

use longlink_codec::push::{Dispatch, Net, RoomAddress};

use crate::register::Register;
use crate::room::Heartbeats;
use crate::rooms::{Directory, RoomInfo};

/// Picks rooms for users.
#[derive(Clone)]
pub struct Dispatcher {
    directory: Arc<dyn Directory>,
    register: Arc<dyn Register>,
    heartbeats: Heartbeats,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("heartbeats", &self.heartbeats)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Rooms from `directory`, each user's preferred room from `register`.
    pub fn new(
        directory: Arc<dyn Directory>,
        register: Arc<dyn Register>,
        heartbeats: Heartbeats,
    ) -> Dispatcher {
        Dispatcher {
            directory,
            register,
            heartbeats,
        }
    }

    /// The rooms `uid` should try on `net`, best first, with `failed` addresses last.
    pub async fn dispatch(&self, uid: &str, net: Net, failed: &[String]) -> Dispatch {
        let rooms: Vec<RoomInfo> = self
            .directory
            .rooms()
            .iter()
            .map(|r| r.info.clone())
            .collect();
        // Where the user is (or was, within the grace period); the register being down
        // only loses the preference. One room needs no preference.
        let preferred: Vec<String> = if rooms.len() > 1 {
            match self.register.sessions(uid).await {
                Ok(sessions) => sessions.into_iter().map(|s| s.room).collect(),
                Err(_) => Vec::new(),
            }
        } else {
            Vec::new()
        };
        answer(
            uid,
            net,
            self.heartbeats.for_net(net),
            order(uid, rooms, &preferred),
            failed,
        )
    }
}

/// The rooms for `uid` in the order the dispatcher gives them: draining rooms left out;
/// rooms in `preferred` (where the user's session is or waits) first; then open before full;
/// then by load in 10% steps; within a step, a stable hash of (user, room) spreads users
/// evenly and gives each the same room while loads are even.
pub fn order(uid: &str, mut rooms: Vec<RoomInfo>, preferred: &[String]) -> Vec<RoomInfo> {
    rooms.retain(|r| !r.draining);
    rooms.sort_by_cached_key(|r| {
        let load = (r.connections * 10 / r.capacity.max(1)).min(10);
        (
            !preferred.contains(&r.name),
            !r.open(),
            load,
            stable_hash(&format!("{uid}\u{1f}{}", r.name)),
        )
    });
    rooms
}

/// The answer for `rooms` in this order, with those whose address is in `failed` moved
/// last (keeping the order within each half).
///
/// ```
/// use longlink_codec::push::Net;
/// use longlink_push::dispatcher::{answer, order};
/// use longlink_push::rooms::RoomInfo;
///
/// let room = |n: &str| RoomInfo::local(n, &format!("ws://{n}/"), n);
/// let rooms = order("u1", vec![room("a"), room("b"), room("c")], &[]);
/// let first = answer("u1", Net::Wifi, 480, rooms.clone(), &[]);
/// // The same user gets the same order, and a failed address goes last.
/// assert_eq!(answer("u1", Net::Wifi, 480, order("u1", vec![room("c"), room("a"), room("b")], &[]), &[]), first);
/// let failed = first.rooms[0].tcp.clone();
/// let again = answer("u1", Net::Wifi, 480, rooms, &[failed.clone()]);
/// assert_eq!(again.rooms.last().unwrap().tcp, failed);
/// ```
pub fn answer(
    uid: &str,
    net: Net,
    heartbeat_secs: u64,
    rooms: Vec<RoomInfo>,
    failed: &[String],
) -> Dispatch {
    let mut rooms: Vec<RoomAddress> = rooms
        .into_iter()
        .map(|r| RoomAddress {
            name: r.name,
            ws: r.ws,
            tcp: r.tcp,
            tcp_tls: r.tcp_tls,
        })
        .collect();
    let is_failed = |r: &RoomAddress| failed.iter().any(|f| *f == r.tcp || *f == r.ws);
    rooms.sort_by_key(is_failed);
    Dispatch {
        uid: uid.to_owned(),
        net,
        heartbeat_secs,
        rooms,
    }
}

/// FNV-1a: a stable hash, so a user's preferred room is the same in every process.
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str, connections: usize, capacity: usize, draining: bool) -> RoomInfo {
        RoomInfo {
            connections,
            capacity,
            draining,
            ..RoomInfo::local(name, "", "")
        }
    }

    fn names(rooms: &[RoomInfo]) -> Vec<&str> {
        rooms.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn a_full_room_goes_last_and_a_draining_one_is_left_out() {
        let rooms = vec![
            room("full", 100, 100, false),
            room("busy", 80, 100, false),
            room("idle", 10, 100, false),
            room("draining", 0, 100, true),
        ];
        assert_eq!(names(&order("u1", rooms, &[])), ["idle", "busy", "full"]);
    }

    #[test]
    fn the_users_room_comes_first_even_when_busier() {
        let rooms = vec![room("a", 10, 100, false), room("b", 90, 100, false)];
        assert_eq!(names(&order("u1", rooms, &["b".into()])), ["b", "a"]);
    }

    #[test]
    fn even_rooms_spread_users_and_keep_each_on_one() {
        let rooms = vec![room("a", 0, 100, false), room("b", 0, 100, false)];
        let mut first = std::collections::HashMap::new();
        for i in 0..100 {
            let uid = format!("u{i}");
            let pick = order(&uid, rooms.clone(), &[])[0].name.clone();
            assert_eq!(order(&uid, rooms.clone(), &[])[0].name, pick);
            *first.entry(pick).or_insert(0) += 1;
        }
        assert!(first["a"] > 25 && first["b"] > 25, "{first:?}");
    }
}
