//! Membership: rooms announce themselves in Redis with a TTL heartbeat (addresses, load,
//! whether they drain); the dispatcher and the center read the live set. A room that stops
//! announcing leaves routing when its key expires.
//!
//! Keys: `room:{name}` → the room's [`RoomInfo`] as JSON, expiring after the room TTL;
//! `rooms`: a sorted set of names by last announce (to find the keys without `KEYS`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{Directory, Gateway, RoomEntry};
use crate::PushError;
use crate::metrics::{Computed, Metrics, Sample};
use crate::model::now_ms;
use crate::redis_conn::RedisConn;
use crate::register::redis_err;

/// What a room announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's name (unique in the cluster).
    pub name: String,
    /// WebSocket URL clients use.
    pub ws: String,
    /// Raw TCP `host:port` clients use.
    pub tcp: String,
    /// `tcp` speaks TLS.
    #[serde(default)]
    pub tcp_tls: bool,
    /// Its RPC address.
    pub rpc: String,
    /// Authenticated connections now.
    pub connections: usize,
    /// Connections it takes before it counts as full.
    pub capacity: usize,
    /// Draining: it takes no new users.
    pub draining: bool,
    /// When it announced (Unix ms).
    pub seen_ms: u64,
}

impl RoomInfo {
    /// The room of a single process: never full, never draining in routing (it is the
    /// only one), no RPC address.
    pub fn local(name: &str, ws: &str, tcp: &str) -> RoomInfo {
        RoomInfo {
            name: name.to_owned(),
            ws: ws.to_owned(),
            tcp: tcp.to_owned(),
            tcp_tls: false,
            rpc: String::new(),
            connections: 0,
            capacity: usize::MAX,
            draining: false,
            seen_ms: 0,
        }
    }

    /// Whether the dispatcher may send new users here.
    pub fn open(&self) -> bool {
        !self.draining && self.connections < self.capacity
    }
}

/// Reads and writes membership.
#[derive(Clone)]
pub struct Membership {
    conn: RedisConn,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Membership under `prefix`; an announce lives `ttl`.
    pub fn new(conn: RedisConn, prefix: &str, ttl: Duration) -> Membership {
        Membership {
            conn,
            prefix: prefix.to_owned(),
            ttl,
        }
    }

    /// Announces (or refreshes) a room.
    pub async fn announce(&self, info: &RoomInfo) -> Result<(), PushError> {
        let json = serde_json::to_string(info).map_err(|e| PushError::Invalid(e.to_string()))?;
        redis::pipe()
            .pset_ex(
                format!("{}room:{}", self.prefix, info.name),
                json,
                self.ttl.as_millis() as u64,
            )
            .ignore()
            .zadd(format!("{}rooms", self.prefix), &info.name, info.seen_ms)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// Removes a room at once (a clean stop).
    pub async fn leave(&self, name: &str) -> Result<(), PushError> {
        redis::pipe()
            .del(format!("{}room:{name}", self.prefix))
            .ignore()
            .zrem(format!("{}rooms", self.prefix), name)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// The live rooms, by name.
    pub async fn rooms(&self) -> Result<Vec<RoomInfo>, PushError> {
        let mut conn = self.conn.clone();
        let index = format!("{}rooms", self.prefix);
        // Names not announced for ten TTLs are dropped from the index (bounded).
        let stale = now_ms().saturating_sub(10 * self.ttl.as_millis() as u64);
        let names: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let _: u64 = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(stale)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names
            .iter()
            .map(|n| format!("{}room:{n}", self.prefix))
            .collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let mut rooms: Vec<RoomInfo> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str(&v).ok())
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rooms)
    }
}

/// Makes the gateway of a room from what it announced (a client of its RPC address).
pub type GatewayFactory = Arc<dyn Fn(&RoomInfo) -> Arc<dyn Gateway> + Send + Sync>;

/// A cached view of membership, refreshed in the background, so that a dispatch or a push
/// does not read Redis. A room stays in the view until it is proven gone: missing from
/// Redis *and* not answering when asked over RPC for `keep` — so a Redis outage, restart or
/// flush (which lose the announces) does not make live rooms vanish, and a room that really
/// stopped leaves after `keep`.
#[derive(Clone)]
pub struct MembershipView {
    state: Arc<RwLock<ViewState>>,
}

impl std::fmt::Debug for MembershipView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipView")
            .field("rooms", &self.state.read().published.len())
            .finish()
    }
}

#[derive(Default)]
struct ViewState {
    /// Every room known, with when it was last known alive (listed in Redis, or answering
    /// when asked).
    seen: Vec<(RoomEntry, Instant)>,
    /// The same rooms, shared with readers (a push takes a reference, not a copy).
    published: Arc<Vec<RoomEntry>>,
    /// Called for each room found gone.
    on_gone: Option<GoneHook>,
}

impl ViewState {
    fn publish(&mut self) {
        self.seen.sort_by(|a, b| a.0.info.name.cmp(&b.0.info.name));
        self.published = Arc::new(self.seen.iter().map(|(r, _)| r.clone()).collect());
    }

    /// Takes in what a read of membership found at `now`: known rooms keep their gateway
    /// (and its connections) unless their RPC address changed. Rooms the read did not list
    /// stay, and are answered: the caller asks them directly ([`ViewState::settle`]).
    fn merge(
        &mut self,
        read: Vec<RoomInfo>,
        now: Instant,
        gateways: &GatewayFactory,
    ) -> Vec<RoomEntry> {
        let mut next: Vec<(RoomEntry, Instant)> = Vec::with_capacity(read.len());
        for info in read {
            let gateway = self
                .seen
                .iter()
                .find(|(e, _)| e.info.name == info.name && e.info.rpc == info.rpc)
                .map(|(e, _)| Arc::clone(&e.gateway))
                .unwrap_or_else(|| gateways(&info));
            next.push((RoomEntry { info, gateway }, now));
        }
        let mut unlisted = Vec::new();
        for (entry, seen) in self.seen.drain(..) {
            if !next.iter().any(|(e, _)| e.info.name == entry.info.name) {
                unlisted.push(entry.clone());
                next.push((entry, seen));
            }
        }
        self.seen = next;
        self.publish();
        unlisted
    }

    /// What asking unlisted rooms directly found at `now`: a room that answered (under its
    /// name) is alive — kept, with its load; one that did not, and was last known alive
    /// `keep` ago, is gone: removed, and answered.
    fn settle(
        &mut self,
        answers: Vec<(String, Option<super::RoomLoad>)>,
        now: Instant,
        keep: Duration,
    ) -> Vec<RoomInfo> {
        let mut gone = Vec::new();
        for (name, answer) in answers {
            let Some(i) = self.seen.iter().position(|(e, _)| e.info.name == name) else {
                continue;
            };
            match answer {
                Some(load) if load.name == name => {
                    let (entry, seen) = &mut self.seen[i];
                    entry.info.connections = load.connections as usize;
                    entry.info.draining = load.draining;
                    *seen = now;
                }
                _ if now.duration_since(self.seen[i].1) >= keep => {
                    gone.push(self.seen.remove(i).0.info);
                }
                _ => {}
            }
        }
        self.publish();
        gone
    }
}

/// What the view does with a room it found gone (not in membership and not answering):
/// in the cluster, its sessions leave the register with their offline callbacks.
pub type GoneHook = Arc<dyn Fn(RoomInfo) + Send + Sync>;

/// Asks `rooms` directly, each within `timeout`.
async fn probe(rooms: Vec<RoomEntry>, timeout: Duration) -> Vec<(String, Option<super::RoomLoad>)> {
    let asks = rooms.into_iter().map(|room| async move {
        let load = tokio::time::timeout(timeout, room.gateway.load())
            .await
            .ok()
            .and_then(Result::ok);
        (room.info.name, load)
    });
    futures_util::future::join_all(asks).await
}

impl MembershipView {
    /// Starts refreshing from `membership` every `every`, reaching each room through a
    /// gateway `gateways` makes; the first read is awaited.
    pub async fn start(
        membership: Membership,
        every: Duration,
        keep: Duration,
        gateways: GatewayFactory,
        metrics: &Metrics,
    ) -> MembershipView {
        let mut first = ViewState::default();
        first.merge(
            membership.rooms().await.unwrap_or_default(),
            Instant::now(),
            &gateways,
        );
        let probes = metrics.room_probes.clone();
        let state = Arc::new(RwLock::new(first));
        let weak = Arc::downgrade(&state);
        {
            let weak = weak.clone();
            metrics.add_family(Computed::gauge(
                "cluster_rooms",
                "Rooms in membership",
                move || {
                    weak.upgrade()
                        .map(|s| vec![Sample::of(s.read().published.len() as f64)])
                        .unwrap_or_default()
                },
            ));
        }
        {
            let weak = weak.clone();
            metrics.add_family(Computed::gauge(
                "room_connections",
                "Connections per room (membership)",
                move || {
                    weak.upgrade()
                        .map(|s| {
                            s.read()
                                .published
                                .iter()
                                .map(|r| Sample {
                                    labels: vec![
                                        ("room", r.info.name.clone()),
                                        ("draining", r.info.draining.to_string()),
                                    ],
                                    value: r.info.connections as f64,
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                },
            ));
        }
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(state) = weak.upgrade() else { return };
                // A room is kept until it is proven gone: not listed in Redis *and* not
                // answering when asked. While Redis cannot be read, or right after it lost
                // the announces (a restart, a flush, an outage longer than the TTL), the
                // rooms are asked directly and stay while they answer.
                let unlisted = match membership.rooms().await {
                    Ok(read) => state.write().merge(read, Instant::now(), &gateways),
                    Err(e) => {
                        tracing::debug!(error = %e, "membership not readable: asking the rooms");
                        state.read().seen.iter().map(|(e, _)| e.clone()).collect()
                    }
                };
                if unlisted.is_empty() {
                    continue;
                }
                crate::metrics::add(&probes, unlisted.len() as u64);
                let answers = probe(unlisted, every.max(Duration::from_millis(200))).await;
                let (gone, hook) = {
                    let mut view = state.write();
                    (
                        view.settle(answers, Instant::now(), keep),
                        view.on_gone.clone(),
                    )
                };
                for room in gone {
                    tracing::info!(
                        room = room.name,
                        "a room left routing: not announced, not answering"
                    );
                    if let Some(hook) = &hook {
                        hook(room);
                    }
                }
            }
        });
        MembershipView { state }
    }

    /// Calls `hook` for every room found gone from now on.
    pub fn on_gone(&self, hook: GoneHook) {
        self.state.write().on_gone = Some(hook);
    }

    /// A room by name.
    pub fn room(&self, name: &str) -> Option<RoomInfo> {
        self.rooms()
            .iter()
            .find(|r| r.info.name == name)
            .map(|r| r.info.clone())
    }
}

impl Directory for MembershipView {
    fn rooms(&self) -> Arc<Vec<RoomEntry>> {
        Arc::clone(&self.state.read().published)
    }
}
