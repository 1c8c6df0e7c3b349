//! How the hub reaches connections: the room in this process, or (in the cluster) every
//! room process over RPC. One interface, so the push logic is the same in both modes.

use std::sync::Arc;

use async_trait::async_trait;

use crate::PushError;
use crate::model::Message;
use crate::room::{Payload, Room};
use longlink_codec::push::DeliveryMode;

/// Who a delivery reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reached {
    /// The users reached (each once).
    pub users: Vec<String>,
    /// Connections written to.
    pub deliveries: usize,
    /// The most deliveries one room made (what broadcast pacing counts).
    pub busiest_room: usize,
}

/// Where the hub sends messages.
#[async_trait]
pub trait Rooms: Send + Sync + 'static {
    /// Queues `message` for the connections of `uids` that subscribe its app (and are
    /// `device`, if given).
    async fn deliver(
        &self,
        message: &Message,
        payload: &Arc<Payload>,
        uids: &[String],
        device: Option<&str>,
    ) -> Result<Reached, PushError>;
    /// Queues `message` for every connection subscribing its app.
    async fn broadcast(
        &self,
        message: &Message,
        payload: &Arc<Payload>,
    ) -> Result<Reached, PushError>;
    /// The users online in `app` now.
    async fn users_in(&self, app: &str) -> Result<Vec<String>, PushError>;
    /// Closes `uid`'s connections in `app` with a KICK; returns how many.
    async fn kick(&self, uid: &str, app: &str, reason: &str) -> Result<usize, PushError>;
}

#[async_trait]
impl Rooms for Room {
    async fn deliver(
        &self,
        message: &Message,
        payload: &Arc<Payload>,
        uids: &[String],
        device: Option<&str>,
    ) -> Result<Reached, PushError> {
        let mut reached = Reached::default();
        for uid in uids {
            let n = self.deliver_to_user(uid, &message.app, device, payload);
            if n > 0 {
                reached.users.push(uid.clone());
                reached.deliveries += n;
            }
        }
        reached.busiest_room = reached.deliveries;
        Ok(reached)
    }

    async fn broadcast(
        &self,
        message: &Message,
        payload: &Arc<Payload>,
    ) -> Result<Reached, PushError> {
        let want_users = message.mode != DeliveryMode::AtMostOnce;
        let (users, deliveries) = Room::broadcast(self, &message.app, payload, want_users);
        Ok(Reached {
            users,
            deliveries,
            busiest_room: deliveries,
        })
    }

    async fn users_in(&self, app: &str) -> Result<Vec<String>, PushError> {
        Ok(Room::users_in(self, app))
    }

    async fn kick(&self, uid: &str, app: &str, reason: &str) -> Result<usize, PushError> {
        Ok(Room::kick(self, uid, app, reason))
    }
}
