//! The center's view of the rooms: pushes go to the rooms the register names (one RPC per
//! room, however many of its users a multicast names), broadcasts to every live room in
//! parallel. While the register is down or re-filling, deliveries ask every room instead,
//! so that a unicast still finds its user.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::join_all;
use parking_lot::Mutex;

use super::membership::{MembershipView, RoomInfo};
use super::remote::{RemoteRegister, rpc_client};
use super::services::{Delivery, RoomReached, from_rpc_error, room_svc};
use crate::PushError;
use crate::config::ClusterSection;
use crate::metrics::{Metrics, inc};
use crate::model::Message;
use crate::room::Payload;
use crate::rooms::{Reached, Rooms};

/// Every room of the cluster, reached over RPC.
#[derive(Debug)]
pub struct ClusterRooms {
    view: MembershipView,
    register: RemoteRegister,
    cfg: ClusterSection,
    /// One client per room RPC address; entries for rooms gone from membership are
    /// dropped when the map is consulted (bounded by the live rooms).
    clients: Mutex<HashMap<String, room_svc::Client>>,
    metrics: Arc<Metrics>,
}

impl ClusterRooms {
    /// Rooms from `view`, users from `register`.
    pub fn new(
        view: MembershipView,
        register: RemoteRegister,
        cfg: ClusterSection,
        metrics: Arc<Metrics>,
    ) -> ClusterRooms {
        ClusterRooms {
            view,
            register,
            cfg,
            clients: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn client(&self, room: &RoomInfo) -> Option<room_svc::Client> {
        let mut clients = self.clients.lock();
        if !clients.contains_key(&room.rpc) {
            let live = self.view.rooms();
            clients.retain(|addr, _| live.iter().any(|r| r.rpc == *addr));
            let client = rpc_client(&room.rpc, &self.cfg).ok()?;
            clients.insert(room.rpc.clone(), room_svc::Client::new(client));
        }
        clients.get(&room.rpc).cloned()
    }

    /// Sends `calls` (room, delivery) in parallel and adds up what they reached.
    async fn send(&self, calls: Vec<(RoomInfo, Delivery)>) -> Reached {
        let futures = calls.into_iter().map(|(room, delivery)| async move {
            let Some(client) = self.client(&room) else {
                return RoomReached::default();
            };
            match client.deliver(delivery).await {
                Ok(r) => r,
                Err(e) => {
                    inc(&self.metrics.room_rpc_errors);
                    tracing::warn!(room = room.name, error = %e, "delivery to a room failed");
                    RoomReached::default()
                }
            }
        });
        merge(join_all(futures).await)
    }
}

fn merge(answers: Vec<RoomReached>) -> Reached {
    let mut reached = Reached::default();
    for a in answers {
        reached.deliveries += a.deliveries as usize;
        reached.busiest_room = reached.busiest_room.max(a.deliveries as usize);
        reached.users.extend(a.users);
    }
    reached.users.sort();
    reached.users.dedup();
    reached
}

#[async_trait]
impl Rooms for ClusterRooms {
    async fn deliver(
        &self,
        message: &Message,
        _payload: &Arc<Payload>,
        uids: &[String],
        device: Option<&str>,
    ) -> Result<Reached, PushError> {
        let rooms = self.view.rooms();
        let delivery = |uids: Vec<String>| Delivery {
            message: message.clone(),
            uids,
            device: device.map(str::to_owned),
        };
        let calls: Vec<(RoomInfo, Delivery)> = match self.register.lookup(uids.to_vec()).await {
            Ok(lookup) if !lookup.settling => {
                // One call per room, with that room's users.
                let mut by_room: HashMap<&str, Vec<String>> = HashMap::new();
                for (uid, sessions) in uids.iter().zip(&lookup.sessions) {
                    for s in sessions {
                        let users = by_room.entry(s.room.as_str()).or_default();
                        if users.last() != Some(uid) {
                            users.push(uid.clone());
                        }
                    }
                }
                rooms
                    .iter()
                    .filter_map(|r| {
                        by_room
                            .remove(r.name.as_str())
                            .map(|users| (r.clone(), delivery(users)))
                    })
                    .collect()
            }
            answer => {
                // The register cannot say (down, or re-filling): every room is asked.
                if let Err(e) = &answer {
                    tracing::warn!(error = %e, "register lookup failed: asking every room");
                }
                inc(&self.metrics.lookup_fallbacks);
                rooms
                    .iter()
                    .map(|r| (r.clone(), delivery(uids.to_vec())))
                    .collect()
            }
        };
        Ok(self.send(calls).await)
    }

    async fn broadcast(
        &self,
        message: &Message,
        _payload: &Arc<Payload>,
    ) -> Result<Reached, PushError> {
        let rooms = self.view.rooms();
        let futures = rooms.iter().map(|room| async move {
            let Some(client) = self.client(room) else {
                return RoomReached::default();
            };
            match client.broadcast(message.clone()).await {
                Ok(r) => r,
                Err(e) => {
                    inc(&self.metrics.room_rpc_errors);
                    tracing::warn!(room = room.name, error = %e, "broadcast to a room failed");
                    RoomReached::default()
                }
            }
        });
        Ok(merge(join_all(futures).await))
    }

    async fn users_in(&self, app: &str) -> Result<Vec<String>, PushError> {
        let rooms = self.view.rooms();
        let futures = rooms.iter().map(|room| async move {
            let client = self.client(room).ok_or_else(|| PushError::Unavailable {
                service: "room",
                detail: format!("no client for {}", room.name),
            })?;
            client
                .users_in(app.to_owned())
                .await
                .map_err(|e| from_rpc_error("room", e))
        });
        let mut users = Vec::new();
        for answer in join_all(futures).await {
            // A room that does not answer cannot say who it holds: the broadcast would
            // store nothing for them, so it is refused rather than half-done.
            users.extend(answer?);
        }
        users.sort();
        users.dedup();
        Ok(users)
    }

    async fn kick(&self, uid: &str, app: &str, reason: &str) -> Result<usize, PushError> {
        let rooms = self.view.rooms();
        let futures = rooms.iter().map(|room| async move {
            let Some(client) = self.client(room) else {
                return 0;
            };
            client
                .kick(uid.to_owned(), app.to_owned(), reason.to_owned())
                .await
                .unwrap_or(0)
        });
        Ok(join_all(futures).await.into_iter().sum::<u64>() as usize)
    }
}
