//! The center's push engine: it checks a push, gives it an id, stores it (unless at most
//! once) **before** anything is sent, builds its frame once, and hands that frame to the
//! rooms holding its recipients. The same component in one process and in the cluster;
//! only its register, saver and rooms differ.

use std::sync::Arc;
use std::time::Duration;

use longlink_codec::push::{DeliveryMode, Payload as Body};
use serde::{Deserialize, Serialize};

use crate::PushError;
use crate::admission::Admission;
use crate::frame::Frame;
use crate::metrics::{Metrics, inc};
use crate::model::{IdGenerator, Message, Target, check_name, now_ms};
use crate::pacing::SharedPacing;
use crate::records::Records;
use crate::register::Register;
use crate::retries::{Retries, Retry};
use crate::rooms::{Fanout, Reached};
use crate::saver::{Claimed, Recipient, Saver};

/// Push behaviour (the `[push]` section of the configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// A stored message sent this many times without an ACK is given up and marked
    /// expired (the client is not trusted to ACK).
    pub max_attempts: u32,
    /// TTL when a push gives none.
    #[serde(rename = "default_ttl_secs", with = "crate::serde_duration::secs")]
    pub default_ttl: Duration,
    /// Longest TTL accepted.
    #[serde(rename = "max_ttl_secs", with = "crate::serde_duration::secs")]
    pub max_ttl: Duration,
    /// Largest message body.
    pub max_body_bytes: usize,
    /// Most recipients of one multicast.
    pub max_multicast: usize,
    /// Broadcast pace, deliveries per second per room.
    pub broadcast_rate: u32,
    /// Pushes being stored at once; more wait for a turn.
    pub max_storing: usize,
    /// Pushes that may wait for a turn at the store; beyond, refused at once (429).
    pub max_store_waiting: usize,
    /// Longest a push waits for a turn at the store before it is refused (429).
    #[serde(rename = "store_wait_ms", with = "crate::serde_duration::millis")]
    pub store_wait: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            max_attempts: 5,
            default_ttl: Duration::from_secs(24 * 3600),
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            max_body_bytes: 60 * 1024,
            max_multicast: 10_000,
            broadcast_rate: 200_000,
            max_storing: 256,
            max_store_waiting: 1024,
            store_wait: Duration::from_millis(50),
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
    /// The push was made before with the same idempotency key: this is its id, and
    /// nothing was stored or sent now.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl PushReport {
    fn duplicate(c: Claimed) -> PushReport {
        PushReport {
            id: c.id,
            recipients: c.recipients as usize,
            delivered: 0,
            stored: c.stored,
            duplicate: true,
        }
    }
}

/// The center's push engine.
pub struct Pusher {
    register: Arc<dyn Register>,
    saver: Arc<dyn Saver>,
    rooms: Fanout,
    ids: Arc<IdGenerator>,
    config: PushConfig,
    metrics: Arc<Metrics>,
    records: Records,
    /// Stored messages tried again for recipients who may be online.
    retries: Retries,
    /// Turns at the store: what it cannot take soon is refused at once.
    admission: Admission,
    /// Broadcasts take turns: the next starts when the last one's deliveries fit in
    /// `broadcast_rate`.
    broadcast_gate: tokio::sync::Mutex<tokio::time::Instant>,
    /// With several centers: the schedule they share (the local gate then only orders
    /// this center's own broadcasts).
    shared_pacing: Option<SharedPacing>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Pusher {
    /// A pusher over these services, issuing `ids` (start them above the largest id the
    /// store holds: [`IdGenerator::starting_after`]).
    pub fn new(
        register: Arc<dyn Register>,
        saver: Arc<dyn Saver>,
        rooms: Fanout,
        ids: Arc<IdGenerator>,
        config: PushConfig,
        metrics: Arc<Metrics>,
    ) -> Pusher {
        let records = Records::start(Arc::clone(&saver), config.max_attempts);
        metrics.add_queues(records.depths());
        let retries = Retries::start(rooms.clone(), records.clone(), Arc::clone(&metrics));
        let admission = Admission::new(
            config.max_storing,
            config.max_store_waiting,
            config.store_wait,
            Arc::clone(&metrics),
        );
        Pusher {
            records,
            retries,
            admission,
            register,
            saver,
            rooms,
            ids,
            config,
            metrics,
            broadcast_gate: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            shared_pacing: None,
        }
    }

    /// Paces broadcasts on `pacing`, shared with the other centers.
    pub fn with_shared_pacing(mut self, pacing: SharedPacing) -> Pusher {
        self.shared_pacing = Some(pacing);
        self
    }

    /// The ids this pusher issues (a room in the same process reads the last one to skip
    /// what it delivered live).
    pub fn ids(&self) -> &Arc<IdGenerator> {
        &self.ids
    }

    /// The rooms it sends to.
    pub fn rooms(&self) -> &Fanout {
        &self.rooms
    }

    /// The write-behind pools (for their queue depths).
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// Accepts a push: checks it, stores it (unless at-most-once) **before** sending, then
    /// writes it to the recipients online now. A storage failure refuses the push; whether
    /// anything may have been stored is in the error ([`PushError::may_have_run`]). With an
    /// idempotency `key`, a push repeated with the same key (a retry after an error that
    /// may have run) answers the first one's id and does nothing else, however many
    /// centers share the store.
    pub async fn push(
        &self,
        app: &str,
        target: Target,
        mode: DeliveryMode,
        body: Body,
        ttl: Option<Duration>,
        key: Option<String>,
    ) -> Result<PushReport, PushError> {
        check_name("app", app)?;
        if let Some(key) = &key {
            check_name("idempotency key", key)?;
        }
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
        let ttl = ttl.unwrap_or(self.config.default_ttl);
        if ttl > self.config.max_ttl {
            // Refused, not clamped: the sender must not believe the message lives longer
            // than it will.
            return Err(PushError::Invalid(format!(
                "ttl_secs of {} exceeds the limit of {} (push.max_ttl_secs)",
                ttl.as_secs(),
                self.config.max_ttl.as_secs()
            )));
        }
        let created_ms = now_ms();
        let message = Message {
            id: self.ids.next().map_err(|e| {
                inc(&self.metrics.ids_refused);
                PushError::unavailable("ids", e.0)
            })?,
            app: app.to_owned(),
            mode,
            body: body.0,
            created_ms,
            expires_ms: created_ms + ttl.as_millis() as u64,
        };
        let (recipients, device) = match target {
            Target::Unicast { uid, device } => (vec![uid], device),
            Target::Multicast { mut uids } => {
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
            Target::Group { group } => (self.register.members(app.to_owned(), group).await?, None),
            // Everyone online in the app now; the body is stored once, with a small row
            // per user for its ACK. An at-most-once broadcast stores nothing and needs no
            // list: the rooms write to whoever is connected.
            Target::Broadcast if mode != DeliveryMode::AtMostOnce => {
                return self.broadcast(message, true, key).await;
            }
            Target::Broadcast => return self.broadcast(message, false, key).await,
        };
        let stored = mode != DeliveryMode::AtMostOnce;
        let frame = self.frame(&message)?;
        if stored {
            if let Some(first) = self
                .store(&message, &recipients, device.as_deref(), key)
                .await?
            {
                return Ok(PushReport::duplicate(first));
            }
        } else if let Some(key) = key
            && let Some(first) = self.claim(&message, key, recipients.len()).await?
        {
            return Ok(PushReport::duplicate(first));
        }
        inc(&self.metrics.messages_in);
        // Stored and accepted from here on: a room that cannot be reached now gets the
        // message on its users' next connect.
        let reached = self
            .rooms
            .deliver(app, &frame, &recipients, device.as_deref())
            .await;
        let delivered = reached.deliveries as usize;
        if stored {
            self.delivered(&message, &frame, reached, device);
        }
        Ok(PushReport {
            id: message.id,
            recipients: recipients.len(),
            delivered,
            stored,
            duplicate: false,
        })
    }

    /// Records who a stored message reached, and tries it again later for who may be
    /// online but could not be reached now.
    fn delivered(
        &self,
        message: &Message,
        frame: &Frame,
        reached: Reached,
        device: Option<String>,
    ) {
        self.records.delivered(message.id, reached.users);
        if reached.unreached.is_empty() {
            return;
        }
        let retry = Retry {
            id: message.id,
            app: message.app.clone(),
            frame: frame.clone(),
            uids: reached.unreached,
            device,
            expires_ms: message.expires_ms,
        };
        if !self.retries.submit(retry) {
            inc(&self.metrics.retries_dropped);
        }
    }

    /// Built once, here: the rooms write these bytes as they are.
    fn frame(&self, message: &Message) -> Result<Frame, PushError> {
        Frame::message(message).map_err(|e| PushError::Invalid(e.to_string()))
    }

    /// Stores the message for `uids` (with its key), in turn: refused at once when the
    /// store has too many waiting. `Some`: the key's push was made before.
    async fn store(
        &self,
        message: &Message,
        uids: &[String],
        device: Option<&str>,
        key: Option<String>,
    ) -> Result<Option<Claimed>, PushError> {
        let _turn = self.admission.enter().await?;
        let device = device.unwrap_or("*");
        let rows = uids
            .iter()
            .map(|uid| Recipient {
                uid: uid.clone(),
                device: device.to_owned(),
            })
            .collect();
        self.saver.store(message.clone(), rows, key).await
    }

    /// Keeps the key of a push that stores nothing, in turn.
    async fn claim(
        &self,
        message: &Message,
        key: String,
        recipients: usize,
    ) -> Result<Option<Claimed>, PushError> {
        let _turn = self.admission.enter().await?;
        self.saver
            .claim(
                message.app.clone(),
                key,
                message.id,
                recipients as u64,
                message.expires_ms,
            )
            .await
    }

    /// A broadcast: to everyone online in the app now, on every room, paced to
    /// `broadcast_rate`. Stored (`stored`), its body is kept once with a row per user
    /// online, for their ACKs.
    async fn broadcast(
        &self,
        message: Message,
        stored: bool,
        key: Option<String>,
    ) -> Result<PushReport, PushError> {
        let frame = self.frame(&message)?;
        let recipients = if stored {
            let users = self.rooms.users_in(&message.app).await?;
            if let Some(first) = self.store(&message, &users, None, key).await? {
                return Ok(PushReport::duplicate(first));
            }
            Some(users.len())
        } else {
            if let Some(key) = key
                && let Some(first) = self.claim(&message, key, 0).await?
            {
                return Ok(PushReport::duplicate(first));
            }
            None
        };
        inc(&self.metrics.messages_in);
        let rate = f64::from(self.config.broadcast_rate.max(1));
        let mut gate = self.broadcast_gate.lock().await;
        tokio::time::sleep_until(*gate).await;
        let mut shared = false;
        if let Some(pacing) = &self.shared_pacing {
            // The span the busiest room needs, by the connections it announced.
            let busiest = self
                .rooms
                .directory()
                .rooms()
                .iter()
                .map(|r| r.info.connections)
                .max()
                .unwrap_or(0);
            match pacing
                .turn(Duration::from_secs_f64(busiest as f64 / rate))
                .await
            {
                Ok(wait) => {
                    tokio::time::sleep(wait).await;
                    shared = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the shared broadcast schedule is not reachable: pacing this center alone")
                }
            }
        }
        let reached = self.rooms.broadcast(&message.app, &frame, stored).await;
        *gate = tokio::time::Instant::now();
        if !shared {
            *gate += Duration::from_secs_f64(reached.busiest_room as f64 / rate);
        }
        drop(gate);
        let delivered = reached.deliveries as usize;
        if stored {
            self.records.delivered(message.id, reached.users);
        }
        Ok(PushReport {
            id: message.id,
            // An at-most-once broadcast has no list: it reports the connections reached.
            recipients: recipients.unwrap_or(delivered),
            delivered,
            stored,
            duplicate: false,
        })
    }

    /// Closes `uid`'s connections in `app` with a reason; answers how many.
    pub async fn kick(&self, uid: &str, app: &str, reason: &str) -> usize {
        self.rooms.kick(uid, app, reason).await
    }
}
