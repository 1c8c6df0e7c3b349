//! The room's side of the push system: what a room reports (a client connected, ACKed,
//! sent upstream data, left) and what follows — the session recorded in the register, an
//! online/offline callback, what the client is owed delivered again, ACKs written. The same
//! component in one process and in a room process of the cluster; only its register, saver
//! and callbacks differ.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use longlink_codec::push::{Upstream, UpstreamReply};

use crate::coordinator::Callbacks;
use crate::frame::Frame;
use crate::metrics::{Metrics, inc};
use crate::model::{Session, now_ms};
use crate::records::Records;
use crate::register::Register;
use crate::room::{Connection, RoomEvents};
use crate::saver::Saver;
use crate::workers::{Overflow, Workers};

/// Messages loaded per redelivery.
const REDELIVER_BATCH: u32 = 500;

/// The id of the last message issued, read when a connection becomes findable: a message
/// issued later reached it live, so its redelivery stops there. Where the ids are issued
/// elsewhere (a room process of the cluster), `u64::MAX`: every pending message is sent,
/// and one delivered live meanwhile may come twice (the client drops it by id).
pub type LastIssued = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the courier works with.
#[derive(Clone)]
pub struct CourierParts {
    /// Where sessions are recorded.
    pub register: Arc<dyn Register>,
    /// The message store.
    pub saver: Arc<dyn Saver>,
    /// Webhooks.
    pub callbacks: Arc<dyn Callbacks>,
    /// The watermark of live delivery (see [`LastIssued`]).
    pub last_issued: LastIssued,
    /// Sends of a stored message without an ACK before it is given up.
    pub max_attempts: u32,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for CourierParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CourierParts")
            .field("register", &self.register)
            .field("saver", &self.saver)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

struct Redelivery {
    session: Session,
    conn: Connection,
    watermark: u64,
}

/// The room's event handler. Give it to [`Room::new`](crate::room::Room::new).
pub struct Courier {
    register: Arc<dyn Register>,
    saver: Arc<dyn Saver>,
    callbacks: Arc<dyn Callbacks>,
    last_issued: LastIssued,
    max_attempts: u32,
    metrics: Arc<Metrics>,
    records: Records,
    redeliver: Workers<Redelivery>,
    /// Presence callbacks that could not be passed on.
    presence_dropped: AtomicU64,
}

impl std::fmt::Debug for Courier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Courier")
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl Courier {
    /// A courier over these services; its queues go on its process's metrics page.
    pub fn start(parts: CourierParts) -> Arc<Courier> {
        let courier = Arc::new_cyclic(|weak: &std::sync::Weak<Courier>| {
            let weak = weak.clone();
            let redeliver = Workers::spawn(
                "redeliver",
                4,
                16_384,
                Overflow::Wait(Duration::from_secs(1)),
                1,
                move |batch: Vec<Redelivery>| {
                    let weak = weak.clone();
                    async move {
                        let Some(courier) = weak.upgrade() else {
                            return;
                        };
                        for job in batch {
                            courier.redeliver(job).await;
                        }
                    }
                },
            );
            Courier {
                records: Records::start(Arc::clone(&parts.saver), parts.max_attempts.max(1)),
                register: parts.register,
                saver: parts.saver,
                callbacks: parts.callbacks,
                last_issued: parts.last_issued,
                max_attempts: parts.max_attempts.max(1),
                metrics: parts.metrics,
                redeliver,
                presence_dropped: AtomicU64::new(0),
            }
        });
        let (records, redeliver) = (courier.records.depths(), courier.redeliver.depth());
        courier.metrics.add_queues(move || {
            let mut depths = records();
            depths.push(("redeliver", redeliver()));
            depths
        });
        courier
    }

    /// Sends a reconnecting client what it is owed, oldest first; gives up on messages sent
    /// `max_attempts` times without an ACK.
    async fn redeliver(&self, job: Redelivery) {
        let Redelivery {
            session,
            conn,
            watermark,
        } = job;
        let pending = match self
            .saver
            .pending(
                session.uid.clone(),
                session.device.clone(),
                now_ms(),
                REDELIVER_BATCH,
            )
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
            if p.attempts >= self.max_attempts {
                inc(&self.metrics.expired);
                if let Err(e) = self.saver.expire(p.message.id, session.uid.clone()).await {
                    tracing::warn!(id = p.message.id, error = %e, "marking a message expired failed");
                }
                continue;
            }
            // Built where it is first needed: here, for a redelivery.
            let frame = match Frame::message(&p.message) {
                Ok(frame) => Arc::new(frame),
                Err(e) => {
                    tracing::warn!(id = p.message.id, error = %e, "a stored message cannot be framed");
                    continue;
                }
            };
            if !conn.send(&frame) {
                return; // the connection is gone or too slow: the rest waits for the next
            }
            if p.attempts > 0 {
                inc(&self.metrics.redeliveries);
            }
            self.records
                .delivered(p.message.id, vec![session.uid.clone()]);
        }
    }

    async fn presence(&self, session: Session, online: bool) {
        if let Err(e) = self.callbacks.presence(session.clone(), online).await {
            // A connect storm overloads the coordinator by design (it refuses at once):
            // counted, and logged once per thousand.
            let n = self.presence_dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1000) {
                tracing::warn!(uid = session.uid, error = %e, dropped = n + 1, "presence callbacks not passed on");
            }
        }
    }
}

#[async_trait]
impl RoomEvents for Courier {
    async fn connected(&self, session: Session, conn: Connection) {
        // The room calls this once the connection is findable: a message issued from here
        // on is delivered live, so redelivery stops at the current id (one issued in
        // between may come twice, never not at all).
        let watermark = (self.last_issued)();
        if let Err(e) = self.register.connect(vec![session.clone()]).await {
            tracing::warn!(uid = session.uid, error = %e, "register failed");
        }
        self.presence(session.clone(), true).await;
        let job = Redelivery {
            session,
            conn,
            watermark,
        };
        if self.redeliver.submit(job).await.is_err() {
            tracing::warn!("redelivery queue full: pending messages wait for the next connect");
        }
    }

    async fn resubscribed(
        &self,
        session: &Session,
        added: &[String],
        removed: &[String],
        conn: Connection,
    ) {
        // The register follows the subscriptions: `GET /users/{uid}` and kicks by app see
        // the connection in the apps it receives.
        if let Err(e) = self.register.connect(vec![session.clone()]).await {
            tracing::warn!(uid = session.uid, error = %e, "register: subscription not recorded");
        }
        let only = |apps: &[String]| Session {
            apps: apps.to_vec(),
            ..session.clone()
        };
        if !removed.is_empty() {
            self.presence(only(removed), false).await;
        }
        if !added.is_empty() {
            self.presence(only(added), true).await;
            // What the user is owed in the apps it now receives comes now, not on its
            // next connect.
            let job = Redelivery {
                session: only(added),
                conn,
                watermark: (self.last_issued)(),
            };
            if self.redeliver.submit(job).await.is_err() {
                tracing::warn!("redelivery queue full: pending messages wait for the next connect");
            }
        }
    }

    async fn disconnected(&self, session: Session) {
        if let Err(e) = self.register.disconnect(vec![session.clone()]).await {
            // Its TTL (cluster) or the next connect cleans it up; a lookup meanwhile finds
            // a connection that is gone, and a push to it reaches nobody.
            tracing::warn!(uid = session.uid, error = %e, "register: disconnect failed");
        }
        self.presence(session, false).await;
    }

    fn acked(&self, session: &Session, ids: Vec<u64>) {
        if !self.records.ack(session.uid.clone(), ids) {
            // The messages stay pending and are sent again on the next connect: at least once.
            tracing::warn!("ack queue full");
        }
    }

    async fn upstream(&self, session: &Session, upstream: Upstream) -> UpstreamReply {
        match self.callbacks.upstream(session.clone(), upstream).await {
            Ok(reply) => reply,
            Err(e) => UpstreamReply {
                ok: false,
                reason: Some(format!("the coordinator is unavailable: {e}")),
            },
        }
    }
}
