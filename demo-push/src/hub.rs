//! The hub: the push logic between the API, the register, the saver, the rooms and the
//! coordinator. It accepts pushes (store, then send), and it is what a room reports to
//! (connect, disconnect, ACK, upstream). Work that leaves a connection's task (redelivery,
//! ACK writes, delivery records) goes through bounded worker pools.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use longlink_codec::push::{
    Deliver, DeliveryMode, Payload as Body, PushMessage, Upstream, UpstreamReply,
};
use serde::Serialize;

use crate::PushError;
use crate::coordinator::Callbacks;
use crate::metrics::{Metrics, add, inc};
use crate::model::{IdGenerator, Message, Session, Target, check_name, now_ms};
use crate::register::Register;
use crate::room::{Payload, Room, RoomEvents};
use crate::rooms::Rooms;
use crate::saver::{Recipient, Saver};
use crate::workers::{Overflow, Workers};

/// Push behaviour.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// A stored message sent this many times without an ACK is given up (the client is
    /// not trusted to ACK).
    pub max_attempts: u32,
    /// TTL when a push gives none.
    pub default_ttl: Duration,
    /// Longest TTL accepted.
    pub max_ttl: Duration,
    /// Largest message body.
    pub max_body_bytes: usize,
    /// Most recipients of one multicast.
    pub max_multicast: usize,
    /// Broadcast pace, deliveries per second per room.
    pub broadcast_rate: u32,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_attempts: 5,
            default_ttl: Duration::from_secs(24 * 3600),
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            max_body_bytes: 60 * 1024,
            max_multicast: 10_000,
            broadcast_rate: 200_000,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// The message id.
    pub id: u64,
    /// Recipients it was addressed to (users; stored for each when the mode stores). An
    /// at-most-once broadcast addresses whoever is connected without listing them: there it
    /// is the connections reached, as `delivered`.
    pub recipients: usize,
    /// Connections it was written to now.
    pub delivered: usize,
    /// Whether it was stored (for redelivery and status).
    pub stored: bool,
}

/// Runs a store update again while it fails (a store restarting, a saver restarting):
/// five tries over about three seconds, then the last error.
async fn retrying<T, F, Fut>(mut f: F) -> Result<T, PushError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PushError>>,
{
    let mut wait = Duration::from_millis(100);
    for _ in 0..4 {
        match f().await {
            Ok(v) => return Ok(v),
            Err(PushError::Invalid(m)) => return Err(PushError::Invalid(m)),
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
    f().await
}

/// The hub. Create with [`Hub::new`], then give it its room with [`Hub::attach_room`].
pub struct Hub {
    register: Arc<dyn Register>,
    saver: Arc<dyn Saver>,
    coordinator: Arc<dyn Callbacks>,
    /// `None` in a room process of the cluster: it delivers, the center issues ids.
    ids: Option<IdGenerator>,
    config: HubConfig,
    metrics: Arc<Metrics>,
    /// The room in this process, if any (redelivery writes to it).
    room: OnceLock<Room>,
    /// Where pushes go.
    rooms: OnceLock<Arc<dyn Rooms>>,
    acks: Workers<(String, Vec<u64>)>,
    delivered: Workers<(u64, Vec<String>)>,
    broadcast_gate: tokio::sync::Mutex<tokio::time::Instant>,
    /// A reconnected session, and the last message id issued when it became findable.
    redeliver: Workers<(Session, u64)>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub that accepts pushes over these services; ids start above what `saver` holds.
    pub async fn new(
        register: Arc<dyn Register>,
        saver: Arc<dyn Saver>,
        coordinator: Arc<dyn Callbacks>,
        config: HubConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Hub>, PushError> {
        let ids = IdGenerator::starting_after(saver.max_id().await?);
        Ok(Hub::build(
            register,
            saver,
            coordinator,
            config,
            metrics,
            Some(ids),
        ))
    }

    /// A hub for a room process of the cluster: it answers the room's events (register,
    /// redeliver, ACK, upstream) but accepts no pushes, so it needs no service at start.
    pub fn for_room(
        register: Arc<dyn Register>,
        saver: Arc<dyn Saver>,
        coordinator: Arc<dyn Callbacks>,
        config: HubConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Hub> {
        Hub::build(register, saver, coordinator, config, metrics, None)
    }

    fn build(
        register: Arc<dyn Register>,
        saver: Arc<dyn Saver>,
        coordinator: Arc<dyn Callbacks>,
        config: HubConfig,
        metrics: Arc<Metrics>,
        ids: Option<IdGenerator>,
    ) -> Arc<Hub> {
        Arc::new_cyclic(|weak: &std::sync::Weak<Hub>| {
            let acks = {
                let saver = Arc::clone(&saver);
                // Many ACKs become one UPDATE per user.
                Workers::spawn(
                    "acks",
                    2,
                    65_536,
                    Overflow::Wait(Duration::from_millis(50)),
                    256,
                    move |batch: Vec<(String, Vec<u64>)>| {
                        let saver = Arc::clone(&saver);
                        async move {
                            let mut by_user: HashMap<String, Vec<u64>> = HashMap::new();
                            for (uid, ids) in batch {
                                by_user.entry(uid).or_default().extend(ids);
                            }
                            for (uid, ids) in by_user {
                                if let Err(e) = retrying(|| saver.ack(&uid, &ids)).await {
                                    // The messages stay pending: sent again on the next
                                    // connect (at least once).
                                    tracing::warn!(uid, error = %e, "recording acks failed");
                                }
                            }
                        }
                    },
                )
            };
            let delivered = {
                let saver = Arc::clone(&saver);
                Workers::spawn(
                    "delivered",
                    2,
                    65_536,
                    Overflow::Shed,
                    256,
                    move |batch: Vec<(u64, Vec<String>)>| {
                        let saver = Arc::clone(&saver);
                        async move {
                            let mut by_message: HashMap<u64, Vec<String>> = HashMap::new();
                            for (id, uids) in batch {
                                by_message.entry(id).or_default().extend(uids);
                            }
                            for (id, uids) in by_message {
                                if let Err(e) = retrying(|| saver.delivered(id, &uids)).await {
                                    tracing::warn!(id, error = %e, "recording deliveries failed");
                                }
                            }
                        }
                    },
                )
            };
            let redeliver = {
                let weak = weak.clone();
                Workers::spawn(
                    "redeliver",
                    4,
                    16_384,
                    Overflow::Wait(Duration::from_secs(1)),
                    1,
                    move |batch: Vec<(Session, u64)>| {
                        let weak = weak.clone();
                        async move {
                            let Some(hub) = weak.upgrade() else { return };
                            for (session, watermark) in batch {
                                hub.redeliver(&session, watermark).await;
                            }
                        }
                    },
                )
            };
            Hub {
                register,
                saver,
                coordinator,
                ids,
                config,
                metrics,
                room: OnceLock::new(),
                rooms: OnceLock::new(),
                acks,
                delivered,
                redeliver,
                broadcast_gate: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            }
        })
    }

    /// Gives the hub the room of this process (once): pushes and redeliveries go to it.
    pub fn attach_room(&self, room: Room) {
        let _ = self.rooms.set(Arc::new(room.clone()));
        let _ = self.room.set(room);
    }

    /// Gives the hub the rooms pushes go to (once), when they are not in this process.
    pub fn attach_rooms(&self, rooms: Arc<dyn Rooms>) {
        let _ = self.rooms.set(rooms);
    }

    fn rooms(&self) -> Result<&Arc<dyn Rooms>, PushError> {
        self.rooms.get().ok_or_else(|| PushError::Unavailable {
            service: "room",
            detail: "this process has no rooms to send to".into(),
        })
    }

    /// The register.
    pub fn register(&self) -> &Arc<dyn Register> {
        &self.register
    }

    /// The saver.
    pub fn saver(&self) -> &Arc<dyn Saver> {
        &self.saver
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &Arc<dyn Callbacks> {
        &self.coordinator
    }

    /// Queue depths of the hub's worker pools, as Prometheus text.
    pub fn queue_metrics(&self) -> String {
        let mut out = String::new();
        for (name, depth) in [
            ("acks", self.acks.queued()),
            ("delivered", self.delivered.queued()),
            ("redeliver", self.redeliver.queued()),
            ("webhooks", self.coordinator.queued()),
        ] {
            out.push_str(&format!(
                "longlink_push_queue_depth{{queue=\"{name}\"}} {depth}\n"
            ));
        }
        out
    }

    /// Accepts a push: checks it, stores it (unless at-most-once) **before** sending, then
    /// writes it to the recipients online now. A storage failure refuses the push with
    /// nothing stored and nothing sent.
    pub async fn push(
        &self,
        app: &str,
        target: Target,
        mode: DeliveryMode,
        body: Body,
        ttl: Option<Duration>,
    ) -> Result<PushReport, PushError> {
        check_name("app", app)?;
        match &target {
            Target::Unicast { uid, device } => {
                check_name("uid", uid)?;
                if let Some(device) = device {
                    check_name("device", device)?;
                }
            }
            Target::Multicast { uids } => {
                if uids.is_empty() {
                    return Err(PushError::Invalid("uids is empty".into()));
                }
                for uid in uids {
                    check_name("uid", uid)?;
                }
            }
            Target::Group { group } => check_name("group", group)?,
            Target::Broadcast => {}
        }
        if body.0.len() > self.config.max_body_bytes {
            return Err(PushError::Invalid(format!(
                "body of {} bytes exceeds the limit of {}",
                body.0.len(),
                self.config.max_body_bytes
            )));
        }
        let ttl = ttl
            .unwrap_or(self.config.default_ttl)
            .min(self.config.max_ttl);
        let Some(ids) = &self.ids else {
            return Err(PushError::Unavailable {
                service: "center",
                detail: "this process accepts no pushes".into(),
            });
        };
        let rooms = self.rooms()?;
        let created_ms = now_ms();
        let message = Message {
            id: ids.next(),
            app: app.to_owned(),
            mode,
            body: body.0.clone(),
            created_ms,
            expires_ms: created_ms + ttl.as_millis() as u64,
        };
        let (recipients, device) = match &target {
            Target::Unicast { uid, device } => (vec![uid.clone()], device.clone()),
            Target::Multicast { uids } => {
                let mut uids = uids.clone();
                uids.sort();
                uids.dedup();
                if uids.len() > self.config.max_multicast {
                    return Err(PushError::Invalid(format!(
                        "more than {} recipients",
                        self.config.max_multicast
                    )));
                }
                (uids, None)
            }
            Target::Group { group } => (self.register.members(app, group).await?, None),
            // Everyone online in the app now; the body is stored once, with a small row
            // per user for its ACK. An at-most-once broadcast stores nothing and needs no
            // list: the rooms write to whoever is connected.
            Target::Broadcast if mode != DeliveryMode::AtMostOnce => {
                (rooms.users_in(app).await?, None)
            }
            Target::Broadcast => (Vec::new(), None),
        };
        let stored = mode != DeliveryMode::AtMostOnce;
        let listed = !matches!(target, Target::Broadcast) || stored;
        if stored {
            let device = device.clone().unwrap_or_else(|| "*".to_owned());
            let rows: Vec<Recipient> = recipients
                .iter()
                .map(|uid| Recipient {
                    uid: uid.clone(),
                    device: device.clone(),
                })
                .collect();
            self.saver.store(&message, &rows).await?;
        }
        inc(&self.metrics.messages_in);
        let payload = Arc::new(
            self.payload(&message)
                .map_err(|e| PushError::Invalid(e.to_string()))?,
        );
        // Stored and accepted from here on: a room that cannot be reached now gets the
        // message on its users' next connect.
        let delivered = if matches!(target, Target::Broadcast) {
            self.broadcast(rooms, &message, &payload).await
        } else {
            match rooms
                .deliver(&message, &payload, &recipients, device.as_deref())
                .await
            {
                Ok(reached) => {
                    if stored && !reached.users.is_empty() {
                        let _ = self.delivered.try_submit((message.id, reached.users));
                    }
                    reached.deliveries
                }
                Err(e) => {
                    tracing::warn!(id = message.id, error = %e, "delivery failed after the store");
                    0
                }
            }
        };
        Ok(PushReport {
            id: message.id,
            // An at-most-once broadcast has no list: it reports the connections reached.
            recipients: if listed { recipients.len() } else { delivered },
            delivered,
            stored,
        })
    }

    /// Broadcast runs as a sub-task per room, paced to `broadcast_rate`.
    async fn broadcast(
        &self,
        rooms: &Arc<dyn Rooms>,
        message: &Message,
        payload: &Arc<Payload>,
    ) -> usize {
        // Broadcasts take turns, each starting when the previous one's deliveries fit
        // in `broadcast_rate`: a room writes at most that many a second.
        let mut gate = self.broadcast_gate.lock().await;
        tokio::time::sleep_until(*gate).await;
        let reached = match rooms.broadcast(message, payload).await {
            Ok(reached) => reached,
            Err(e) => {
                tracing::warn!(id = message.id, error = %e, "broadcast failed after the store");
                return 0;
            }
        };
        if message.mode != DeliveryMode::AtMostOnce && !reached.users.is_empty() {
            let _ = self.delivered.try_submit((message.id, reached.users));
        }
        *gate = tokio::time::Instant::now()
            + Duration::from_secs_f64(
                reached.busiest_room as f64 / f64::from(self.config.broadcast_rate.max(1)),
            );
        reached.deliveries
    }

    /// The frame that carries `message` to clients.
    pub fn payload(&self, message: &Message) -> Result<Payload, longlink_codec::CodecError> {
        // Notify: only the id goes down the connection; the client pulls the body.
        let body = if message.mode == DeliveryMode::Notify {
            Body::from(message.id.to_string())
        } else {
            Body(message.body.clone())
        };
        Payload::new(
            0,
            &PushMessage::Message(Deliver {
                id: message.id,
                app: message.app.clone(),
                mode: message.mode,
                body,
            }),
        )
    }

    /// Sends a reconnecting client what it is owed, oldest first; gives up on messages sent
    /// `max_attempts` times without an ACK.
    async fn redeliver(&self, session: &Session, watermark: u64) {
        let pending = match self
            .saver
            .pending(&session.uid, &session.device, now_ms(), 500)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(uid = session.uid, error = %e, "loading pending messages failed");
                return;
            }
        };
        for p in pending {
            // A message issued after the connection became findable was delivered live.
            if !session.apps.contains(&p.message.app) || p.message.id > watermark {
                continue;
            }
            if p.attempts >= self.config.max_attempts {
                inc(&self.metrics.expired);
                let _ = self.saver.expire(p.message.id, &session.uid).await;
                continue;
            }
            let Ok(payload) = self.payload(&p.message) else {
                continue;
            };
            let Some(room) = self.room.get() else { return };
            if room.deliver_to_conn(session.conn, &Arc::new(payload)) {
                if p.attempts > 0 {
                    inc(&self.metrics.redeliveries);
                }
                let _ = self
                    .delivered
                    .try_submit((p.message.id, vec![session.uid.clone()]));
            }
        }
    }

    /// Closes `uid`'s connections in `app` with a reason.
    pub async fn kick(&self, uid: &str, app: &str, reason: &str) -> Result<usize, PushError> {
        self.rooms()?.kick(uid, app, reason).await
    }

    /// Marks stored messages past their TTL expired (run periodically).
    pub async fn sweep(&self) -> Result<u64, PushError> {
        let n = self.saver.sweep(now_ms()).await?;
        add(&self.metrics.expired, n);
        Ok(n)
    }
}

#[async_trait]
impl RoomEvents for Hub {
    async fn connected(&self, session: Session) {
        // The room calls this once the connection is in its registry: a message issued
        // from here on is delivered live, so redelivery stops at the current id (one issued
        // in between may come twice, never not at all).
        // Without an id authority here (a cluster room), every pending message is sent:
        // one delivered live meanwhile may come twice, never not at all.
        let watermark = self.ids.as_ref().map_or(u64::MAX, IdGenerator::last);
        if let Err(e) = self.register.connect(session.clone()).await {
            tracing::warn!(uid = session.uid, error = %e, "register failed");
        }
        self.coordinator.presence(&session, true).await;
        if self.redeliver.submit((session, watermark)).await.is_err() {
            tracing::warn!("redelivery queue full: pending messages wait for the next connect");
        }
    }

    async fn disconnected(&self, session: Session) {
        let _ = self.register.disconnect(&session).await;
        self.coordinator.presence(&session, false).await;
    }

    fn acked(&self, session: &Session, ids: Vec<u64>) {
        if self.acks.try_submit((session.uid.clone(), ids)).is_err() {
            // The messages stay pending and are sent again on the next connect: at least once.
            tracing::warn!("ack queue full");
        }
    }

    async fn upstream(&self, session: &Session, upstream: Upstream) -> UpstreamReply {
        self.coordinator.upstream(session, upstream).await
    }
}
