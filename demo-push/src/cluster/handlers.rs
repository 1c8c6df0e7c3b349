//! The server side of each internal service: the handler a service process serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use longlink_codec::push::{DeliveryMode, Upstream, UpstreamReply};
use longlink_rpc::ServiceError;

use super::redis_register::RedisRegister;
use super::services::{
    Delivery, GroupOp, Lookup, RoomReached, coordinator_svc, register_svc, room_svc, saver_svc,
    to_service_error,
};
use crate::coordinator::Coordinator;
use crate::hub::Hub;
use crate::model::{Message, Session};
use crate::register::Register;
use crate::room::Room;
use crate::saver::{MessageStatus, Pending, Recipient, Saver};

type Answer<T> = Result<T, ServiceError>;

/// Serves the register from Redis.
#[derive(Debug, Clone)]
pub struct RegisterHandler(pub RedisRegister);

impl register_svc::Handler for RegisterHandler {
    async fn connect(&self, sessions: Vec<Session>) -> Answer<()> {
        self.0
            .connect_many(&sessions)
            .await
            .map_err(to_service_error)
    }

    async fn disconnect(&self, sessions: Vec<Session>) -> Answer<()> {
        self.0
            .disconnect_many(&sessions)
            .await
            .map_err(to_service_error)
    }

    async fn lookup(&self, uids: Vec<String>) -> Answer<Lookup> {
        if uids.len() > 100_000 {
            return Err(ServiceError::new(
                super::services::status::INVALID,
                "more than 100,000 uids in one lookup",
            ));
        }
        self.0.lookup(&uids).await.map_err(to_service_error)
    }

    async fn bind(&self, op: GroupOp) -> Answer<()> {
        self.0
            .bind(&op.app, &op.group, &op.uid)
            .await
            .map_err(to_service_error)
    }

    async fn unbind(&self, op: GroupOp) -> Answer<()> {
        self.0
            .unbind(&op.app, &op.group, &op.uid)
            .await
            .map_err(to_service_error)
    }

    async fn members(&self, app: String, group: String) -> Answer<Vec<String>> {
        self.0.members(&app, &group).await.map_err(to_service_error)
    }

    async fn counts(&self) -> Answer<(u64, u64)> {
        self.0.counts().await.map_err(to_service_error)
    }

    async fn epoch(&self) -> Answer<String> {
        self.0
            .epoch_ms()
            .await
            .map(|e| e.to_string())
            .map_err(to_service_error)
    }
}

/// Serves a saver.
#[derive(Clone)]
pub struct SaverHandler(pub Arc<dyn Saver>);

impl std::fmt::Debug for SaverHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaverHandler")
    }
}

impl saver_svc::Handler for SaverHandler {
    async fn store(&self, message: Message, recipients: Vec<Recipient>) -> Answer<()> {
        self.0
            .store(&message, &recipients)
            .await
            .map_err(to_service_error)
    }

    async fn delivered(&self, id: u64, uids: Vec<String>) -> Answer<()> {
        self.0.delivered(id, &uids).await.map_err(to_service_error)
    }

    async fn ack(&self, uid: String, ids: Vec<u64>) -> Answer<u64> {
        self.0.ack(&uid, &ids).await.map_err(to_service_error)
    }

    async fn expire(&self, id: u64, uid: String) -> Answer<()> {
        self.0.expire(id, &uid).await.map_err(to_service_error)
    }

    async fn pending(
        &self,
        uid: String,
        device: String,
        now_ms: u64,
        limit: u32,
    ) -> Answer<Vec<Pending>> {
        self.0
            .pending(&uid, &device, now_ms, (limit as usize).min(1000))
            .await
            .map_err(to_service_error)
    }

    async fn status(&self, id: u64) -> Answer<Option<MessageStatus>> {
        self.0.status(id).await.map_err(to_service_error)
    }

    async fn message_for(&self, id: u64, uid: String) -> Answer<Option<Message>> {
        self.0.message_for(id, &uid).await.map_err(to_service_error)
    }

    async fn sweep(&self, now_ms: u64) -> Answer<u64> {
        self.0.sweep(now_ms).await.map_err(to_service_error)
    }

    async fn max_id(&self) -> Answer<u64> {
        self.0.max_id().await.map_err(to_service_error)
    }
}

/// Serves the coordinator.
#[derive(Debug)]
pub struct CoordinatorHandler(pub Coordinator);

impl coordinator_svc::Handler for CoordinatorHandler {
    async fn presence(&self, session: Session, online: bool) -> Answer<()> {
        self.0.presence(&session, online).await;
        Ok(())
    }

    async fn upstream(&self, session: Session, upstream: Upstream) -> Answer<UpstreamReply> {
        Ok(self.0.upstream(&session, upstream))
    }
}

/// Serves a room: deliveries to the connections it holds, and drain.
#[derive(Debug, Clone)]
pub struct RoomHandler {
    /// The room.
    pub room: Room,
    /// Its hub (builds the frames).
    pub hub: Arc<Hub>,
    /// Set once the room drains (membership announces it).
    pub draining: Arc<AtomicBool>,
}

impl RoomHandler {
    /// Stops taking users and tells the connected ones to reconnect elsewhere, spread over
    /// `window`.
    pub fn drain(&self, window: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        self.room.drain("room draining", window);
    }
}

impl room_svc::Handler for RoomHandler {
    async fn deliver(&self, d: Delivery) -> Answer<RoomReached> {
        let payload = Arc::new(
            self.hub
                .payload(&d.message)
                .map_err(|e| ServiceError::new(super::services::status::INVALID, e.to_string()))?,
        );
        let mut reached = RoomReached::default();
        for uid in d.uids {
            let n = self
                .room
                .deliver_to_user(&uid, &d.message.app, d.device.as_deref(), &payload);
            if n > 0 {
                reached.deliveries += n as u64;
                reached.users.push(uid);
            }
        }
        Ok(reached)
    }

    async fn broadcast(&self, message: Message) -> Answer<RoomReached> {
        let payload = Arc::new(
            self.hub
                .payload(&message)
                .map_err(|e| ServiceError::new(super::services::status::INVALID, e.to_string()))?,
        );
        let want_users = message.mode != DeliveryMode::AtMostOnce;
        let (users, deliveries) = self.room.broadcast(&message.app, &payload, want_users);
        Ok(RoomReached {
            users,
            deliveries: deliveries as u64,
        })
    }

    async fn users_in(&self, app: String) -> Answer<Vec<String>> {
        Ok(self.room.users_in(&app))
    }

    async fn kick(&self, uid: String, app: String, reason: String) -> Answer<u64> {
        Ok(self.room.kick(&uid, &app, &reason) as u64)
    }

    async fn drain(&self, window_ms: u64) -> Answer<()> {
        RoomHandler::drain(self, Duration::from_millis(window_ms));
        Ok(())
    }
}
