//! The cluster's dispatcher: the room where the user's session is (or waits out its grace
//! period) first — a "flash reconnect" lands where its state is — then the open rooms,
//! least loaded first. Draining and full rooms get no new users.

use async_trait::async_trait;
use longlink_codec::push::Net;

use super::membership::MembershipView;
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
        let mut rooms = self.view.rooms();
        // Where the user is (or was, within the grace period); the register being down
        // only loses the preference.
        let preferred: Vec<String> = match self.register.sessions(uid).await {
            Ok(sessions) => sessions.into_iter().map(|s| s.room).collect(),
            Err(_) => Vec::new(),
        };
        rooms.retain(|r| !r.draining);
        // Preferred first; then open before full; then by load in 10% steps; within a
        // step, a hash of (user, room) spreads users evenly and gives each the same room
        // while loads are even.
        rooms.sort_by_cached_key(|r| {
            let load = (r.connections * 10 / r.capacity.max(1)).min(10);
            (
                !preferred.contains(&r.name),
                !r.open(),
                load,
                stable_hash(&format!("{uid}\u{1f}{}", r.name)),
            )
        });
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
