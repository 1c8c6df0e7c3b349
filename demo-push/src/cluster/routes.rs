//! The cluster's dispatcher: the room where the user's session is (or waits out its grace
//! period) first — a "flash reconnect" lands where its state is — then the open rooms,
//! least loaded first. Draining and full rooms get no new users.

use async_trait::async_trait;
use longlink_codec::push::Net;

use super::membership::MembershipView;
use super::remote::RemoteRegister;
use crate::dispatcher::{Dispatch, Dispatcher, RoomAddress, Routes};
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
        rooms.sort_by(|a, b| {
            let pa = !preferred.contains(&a.name);
            let pb = !preferred.contains(&b.name);
            let load = |r: &super::membership::RoomInfo| {
                (!r.open(), r.connections as f64 / r.capacity.max(1) as f64)
            };
            (pa, load(a).0)
                .cmp(&(pb, load(b).0))
                .then(load(a).1.total_cmp(&load(b).1))
                .then(a.name.cmp(&b.name))
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
