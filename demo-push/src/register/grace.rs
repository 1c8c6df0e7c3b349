//! A room's side of the register: it keeps a disconnected session for a grace period (a
//! quick reconnect to the same room resumes it without re-registering), refreshes its
//! sessions' TTLs while they live, and re-flushes all of them when the register lost its
//! state (a register restart on an empty Redis, or a flush).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Counts, Lookup, Register};
use crate::PushError;
use crate::metrics::{Computed, Metrics, Sample, inc};
use crate::model::Session;

/// Sessions per flush call.
const BATCH: usize = 500;

#[derive(Debug, Default)]
struct State {
    /// Live (uid, device): its connections here (the last one is what the register holds).
    live: HashMap<(String, String), Vec<Session>>,
    /// Disconnected (uid, device) waiting out the grace period.
    parked: HashMap<(String, String), (Session, Instant)>,
    /// A register call failed: flush everything on the next tick.
    dirty: bool,
}

/// The register as a room of the cluster sees it.
#[derive(Debug, Clone)]
pub struct GraceRegister {
    remote: Arc<dyn Register>,
    state: Arc<Mutex<State>>,
    grace: Duration,
    metrics: Arc<Metrics>,
}

/// Expired sessions in one sweep that make it worth returning memory to the system.
const RELEASE_AFTER: usize = 1_000;

fn key(s: &Session) -> (String, String) {
    (s.uid.clone(), s.device.clone())
}

impl GraceRegister {
    /// Starts the grace sweep, the TTL refresh (every `refresh`) and the epoch watch
    /// (every `epoch_check`); they stop when the last clone is dropped.
    pub fn start(
        remote: Arc<dyn Register>,
        grace: Duration,
        refresh: Duration,
        epoch_check: Duration,
        metrics: Arc<Metrics>,
    ) -> GraceRegister {
        let this = GraceRegister {
            remote,
            state: Arc::new(Mutex::new(State::default())),
            grace,
            metrics,
        };
        let weak = Arc::downgrade(&this.state);
        this.metrics.add_family(Computed::gauge(
            "room_sessions",
            "Sessions live or in their grace period",
            move || {
                weak.upgrade()
                    .map(|st| {
                        let st = st.lock();
                        vec![Sample::of((st.live.len() + st.parked.len()) as f64)]
                    })
                    .unwrap_or_default()
            },
        ));
        let weak = Arc::downgrade(&this.state);
        let (remote, metrics) = (Arc::clone(&this.remote), Arc::clone(&this.metrics));
        tokio::spawn(async move {
            let mut epoch: Option<u64> = None;
            let mut last_flush = Instant::now();
            let mut ticks = tokio::time::interval(epoch_check.min(refresh));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(state) = weak.upgrade() else { return };
                // Sessions whose grace ran out leave the register.
                let now = Instant::now();
                let expired: Vec<Session> = {
                    let mut st = state.lock();
                    let gone: Vec<_> = st
                        .parked
                        .iter()
                        .filter(|(_, (_, until))| *until <= now)
                        .map(|(k, _)| k.clone())
                        .collect();
                    gone.into_iter()
                        .filter_map(|k| st.parked.remove(&k).map(|(s, _)| s))
                        .collect()
                };
                for chunk in expired.chunks(BATCH) {
                    if let Err(e) = remote.disconnect(chunk.to_vec()).await {
                        tracing::warn!(error = %e, "register: disconnect failed (the TTL ends it)");
                    }
                }
                if expired.len() >= RELEASE_AFTER {
                    // Many sessions gone at once (their connections closed a grace ago):
                    // give the maps' and the sessions' memory back.
                    drop(expired);
                    {
                        let mut st = state.lock();
                        st.parked.shrink_to_fit();
                        st.live.shrink_to_fit();
                    }
                    crate::memory::release_free_memory(&metrics).await;
                }
                let current = remote.epoch().await.ok();
                let lost = match (&epoch, &current) {
                    (Some(old), Some(new)) => old != new,
                    (None, Some(_)) => true,
                    _ => false,
                };
                let dirty = std::mem::take(&mut state.lock().dirty);
                if lost || dirty || last_flush.elapsed() >= refresh {
                    let sessions: Vec<Session> = {
                        let st = state.lock();
                        st.live
                            .values()
                            .filter_map(|conns| conns.last().cloned())
                            .chain(st.parked.values().map(|(s, _)| s.clone()))
                            .collect()
                    };
                    let mut ok = true;
                    for chunk in sessions.chunks(BATCH) {
                        if let Err(e) = remote.connect(chunk.to_vec()).await {
                            tracing::warn!(error = %e, "register: refresh failed");
                            ok = false;
                            break;
                        }
                    }
                    if !ok {
                        state.lock().dirty = true;
                    } else {
                        if lost && epoch.is_some() {
                            inc(&metrics.reflushes);
                            tracing::info!(
                                sessions = sessions.len(),
                                "re-flushed sessions into the register"
                            );
                        }
                        epoch = current;
                        last_flush = Instant::now();
                    }
                }
            }
        });
        this
    }

    /// Sessions live or kept here now.
    pub fn len(&self) -> usize {
        let st = self.state.lock();
        st.live.len() + st.parked.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Register for GraceRegister {
    async fn connect(&self, sessions: Vec<Session>) -> Result<(), PushError> {
        let mut write = Vec::with_capacity(sessions.len());
        {
            let mut st = self.state.lock();
            for session in sessions {
                let k = key(&session);
                let parked = st.parked.remove(&k).map(|(s, _)| s);
                if parked.is_some() {
                    inc(&self.metrics.resumed);
                }
                let conns = st.live.entry(k).or_default();
                // What the register holds for (uid, device) here: the session last written.
                let registered = parked.or_else(|| conns.last().cloned());
                match conns.iter_mut().find(|s| s.conn == session.conn) {
                    Some(known) => *known = session.clone(), // its apps changed
                    None => conns.push(session.clone()),
                }
                // The register already points here with these apps: nothing to write.
                if registered.is_none_or(|r| r.apps != session.apps) {
                    write.push(session);
                }
            }
        }
        if write.is_empty() {
            return Ok(());
        }
        let result = self.remote.connect(write).await;
        if result.is_err() {
            self.state.lock().dirty = true;
        }
        result
    }

    async fn disconnect(&self, sessions: Vec<Session>) -> Result<(), PushError> {
        let mut st = self.state.lock();
        for session in &sessions {
            let k = key(session);
            let Some(conns) = st.live.get_mut(&k) else {
                continue;
            };
            conns.retain(|s| s.conn != session.conn);
            if conns.is_empty() {
                st.live.remove(&k);
                st.parked
                    .insert(k, (session.clone(), Instant::now() + self.grace));
            }
        }
        Ok(())
    }

    async fn lookup(&self, uids: Vec<String>) -> Result<Lookup, PushError> {
        self.remote.lookup(uids).await
    }

    async fn bind(&self, app: String, group: String, uid: String) -> Result<(), PushError> {
        self.remote.bind(app, group, uid).await
    }

    async fn unbind(&self, app: String, group: String, uid: String) -> Result<(), PushError> {
        self.remote.unbind(app, group, uid).await
    }

    async fn members(&self, app: String, group: String) -> Result<Vec<String>, PushError> {
        self.remote.members(app, group).await
    }

    async fn counts(&self) -> Result<Counts, PushError> {
        self.remote.counts().await
    }

    async fn epoch(&self) -> Result<u64, PushError> {
        self.remote.epoch().await
    }

    async fn reap(&self, room: String) -> Result<Vec<Session>, PushError> {
        self.remote.reap(room).await
    }
}
