//! The cluster's dispatcher: the room where the user's session is (or waits out its grace
//! period) first — a "flash reconnect" lands where its state is — then the open rooms,
//! least loaded first. Draining and full rooms get no new users.

use async_trait::async_trait;
use longlink_codec::push::Net;

use super::membership::{MembershipView, RoomInfo};
use super::remote::RemoteRegister;
use crate::dispatcher::{Dispatch, Dispatcher, RoomAddress, Routes, stable_hash};
use crate::register::Register;

/// Dispatch from membership and the register.
#[derive(Debug, Clone)]
pub struct ClusterRoutes {
    view: MembershipView,
    register: RemoteRegister,
    answer: Dispatcher,
}

impl ClusterRoutes {
    /// Routes over `view`, preferring rooms `register` knows the user on.
    pub fn new(
        view: MembershipView,
        register: RemoteRegister,
        heartbeats: crate::room::Heartbeats,
    ) -> ClusterRoutes {
        ClusterRoutes {
            view,
            register,
            answer: Dispatcher::new(Vec::new(), heartbeats),
        }
    }
}

#[async_trait]
impl Routes for ClusterRoutes {
    async fn dispatch(&self, uid: &str, net: Net, failed: &[String]) -> Dispatch {
        let rooms = self.view.rooms().as_ref().clone();
        // Where the user is (or was, within the grace period); the register being down
        // only loses the preference.
        let preferred: Vec<String> = match self.register.sessions(uid).await {
            Ok(sessions) => sessions.into_iter().map(|s| s.room).collect(),
            Err(_) => Vec::new(),
        };
        let rooms = order(uid, rooms, &preferred);
        let rooms = rooms
            .into_iter()
            .map(|r| RoomAddress {
                name: r.name,
                ws: r.ws,
                tcp: r.tcp,
            })
            .collect();
        self.answer.answer(uid, net, failed, rooms)
    }
}

/// The rooms for `uid` in the order the dispatcher gives them: draining rooms left out;
/// rooms in `preferred` (where the user's session is or waits) first; then open before full;
/// then by load in 10% steps; within a step, a hash of (user, room) spreads users evenly and
/// gives each the same room while loads are even.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str, connections: usize, capacity: usize, draining: bool) -> RoomInfo {
        RoomInfo {
            name: name.into(),
            ws: String::new(),
            tcp: String::new(),
            rpc: String::new(),
            connections,
            capacity,
            draining,
            seen_ms: 0,
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
