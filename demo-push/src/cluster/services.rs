//! Membership of the services that are not rooms: every register, saver, coordinator,
//! center and dispatcher announces itself in Redis (address, load, draining) every
//! `announce_ms`, and callers keep the rpc crate's [`Balancer`] of each role in step with
//! it — an instance that starts is called within half an interval, one that drains is left
//! out before it stops, one that was killed is left out once its announce is a TTL old
//! (meanwhile calls to it fail without running and go to the next instance).
//!
//! Keys: `svc:{role}` — one hash per role, field the instance's address, value its
//! [`ServiceInfo`] as JSON (one key per role: one slot of a Redis Cluster, no scan). The
//! addresses in the configuration stay as seeds: they are called whatever Redis says, but
//! one that announces itself draining is left out.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::redis_conn::RedisConn;
use longlink_rpc::{Balancer, Client};
use serde::{Deserialize, Serialize};

use crate::PushError;
use crate::model::now_ms;
use crate::register::redis_err;

/// What an instance announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Where it is called (its RPC address; a center's or dispatcher's HTTP address).
    pub addr: String,
    /// Calls (or requests) in flight there now.
    pub load: u64,
    /// Stopping: callers leave it out.
    pub draining: bool,
    /// When it announced (Unix ms).
    pub seen_ms: u64,
}

/// Reads and writes the membership of services.
#[derive(Clone)]
pub struct Services {
    conn: RedisConn,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// Membership under `prefix`; an announce counts for `ttl`.
    pub fn new(conn: RedisConn, prefix: &str, ttl: Duration) -> Services {
        Services {
            conn,
            prefix: prefix.to_owned(),
            ttl,
        }
    }

    fn key(&self, role: &str) -> String {
        format!("{}svc:{role}", self.prefix)
    }

    /// Announces (or refreshes) an instance of `role`.
    pub async fn announce(&self, role: &str, info: &ServiceInfo) -> Result<(), PushError> {
        let json = serde_json::to_string(info).map_err(|e| PushError::Invalid(e.to_string()))?;
        redis::cmd("HSET")
            .arg(self.key(role))
            .arg(&info.addr)
            .arg(json)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// Removes an instance at once (a clean stop).
    pub async fn leave(&self, role: &str, addr: &str) -> Result<(), PushError> {
        redis::cmd("HDEL")
            .arg(self.key(role))
            .arg(addr)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// The instances of `role` heard from within the TTL (entries ten TTLs old are
    /// removed: the hash stays bounded).
    pub async fn live(&self, role: &str) -> Result<Vec<ServiceInfo>, PushError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.key(role))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let now = now_ms();
        let ttl = self.ttl.as_millis() as u64;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (addr, json) in all {
            match serde_json::from_str::<ServiceInfo>(&json) {
                Ok(info) if info.seen_ms + ttl >= now => live.push(info),
                Ok(info) if info.seen_ms + 10 * ttl >= now => {}
                _ => gone.push(addr),
            }
        }
        if !gone.is_empty() {
            let _: Result<(), _> = redis::cmd("HDEL")
                .arg(self.key(role))
                .arg(gone)
                .query_async(&mut conn)
                .await;
        }
        live.sort_by(|a, b| a.addr.cmp(&b.addr));
        Ok(live)
    }
}

/// An instance's announces, in the background until it drains and leaves.
#[derive(Debug)]
pub struct Announcer {
    services: Services,
    role: &'static str,
    addr: String,
    draining: Arc<AtomicBool>,
    load: Arc<AtomicU64>,
    /// `None`: the address is not one others can dial (`0.0.0.0:…`), so it is not
    /// announced.
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Whether others can dial `addr`: not a wildcard listen address like `0.0.0.0:7810`.
fn dialable(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .map_or(true, |a| !a.ip().is_unspecified())
}

impl Announcer {
    /// Announces `addr` as an instance of `role` every `every`; `load` is read at each.
    pub fn start(
        services: Services,
        role: &'static str,
        addr: String,
        every: Duration,
        load: Arc<AtomicU64>,
    ) -> Announcer {
        let draining = Arc::new(AtomicBool::new(false));
        if !dialable(&addr) {
            tracing::warn!(
                role,
                addr,
                "listening on a wildcard address: not announced in membership (set its public \
                 address, `--rpc-public`); callers reach it only through their configuration"
            );
            return Announcer {
                services,
                role,
                addr,
                draining,
                load,
                task: None,
            };
        }
        let task = {
            let (services, addr, draining, load) = (
                services.clone(),
                addr.clone(),
                Arc::clone(&draining),
                Arc::clone(&load),
            );
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every.max(Duration::from_millis(50)));
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let info = ServiceInfo {
                        addr: addr.clone(),
                        load: load.load(Ordering::Relaxed),
                        draining: draining.load(Ordering::SeqCst),
                        seen_ms: now_ms(),
                    };
                    if let Err(e) = services.announce(role, &info).await {
                        tracing::warn!(error = %e, role, "service announce failed");
                    }
                }
            })
        };
        Announcer {
            services,
            role,
            addr,
            draining,
            load,
            task: Some(task),
        }
    }

    /// Announces this instance draining now (callers stop sending it calls within half an
    /// announce interval).
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        if self.task.is_none() {
            return;
        }
        let info = ServiceInfo {
            addr: self.addr.clone(),
            load: self.load.load(Ordering::Relaxed),
            draining: true,
            seen_ms: now_ms(),
        };
        if let Err(e) = self.services.announce(self.role, &info).await {
            tracing::warn!(error = %e, role = self.role, "the draining announce failed");
        }
    }

    /// Stops announcing and leaves membership.
    pub async fn leave(self) {
        if let Some(task) = self.task {
            task.abort();
            let _ = self.services.leave(self.role, &self.addr).await;
        }
    }
}

/// Keeps `balancer` in step with the live instances of `role`: the `seeds` (from the
/// configuration) and every live announce, less those announcing themselves draining. Read
/// every `every`; while Redis cannot be read the set stays as it was.
pub fn watch(
    services: Services,
    role: &'static str,
    seeds: Vec<String>,
    balancer: Balancer,
    make: Arc<dyn Fn(&str) -> Client + Send + Sync>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every.max(Duration::from_millis(25)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut current: BTreeSet<String> = seeds.iter().cloned().collect();
        loop {
            ticks.tick().await;
            let Ok(live) = services.live(role).await else {
                continue;
            };
            let next = instances(&seeds, &live);
            if next != current && !next.is_empty() {
                tracing::info!(role, instances = ?next, "service membership changed");
                balancer.update(&next, |addr| make(addr));
                current = next;
            }
        }
    })
}

/// Seeds and live announces, less the draining.
fn instances(seeds: &[String], live: &[ServiceInfo]) -> BTreeSet<String> {
    let draining: BTreeSet<&str> = live
        .iter()
        .filter(|i| i.draining)
        .map(|i| i.addr.as_str())
        .collect();
    seeds
        .iter()
        .map(String::as_str)
        .chain(live.iter().filter(|i| !i.draining).map(|i| i.addr.as_str()))
        .filter(|a| !draining.contains(a))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(addr: &str, draining: bool) -> ServiceInfo {
        ServiceInfo {
            addr: addr.into(),
            load: 0,
            draining,
            seen_ms: 0,
        }
    }

    #[test]
    fn a_wildcard_listen_address_is_not_announced() {
        assert!(!dialable("0.0.0.0:7810"));
        assert!(!dialable("[::]:7810"));
        assert!(dialable("10.0.0.6:7810"));
        assert!(dialable("rpc.internal:7810"));
    }

    #[test]
    fn seeds_and_announces_make_the_set_less_the_draining() {
        let seeds = vec!["a:1".to_owned(), "b:1".to_owned()];
        let live = [info("b:1", true), info("c:1", false), info("d:1", true)];
        let got: Vec<String> = instances(&seeds, &live).into_iter().collect();
        assert_eq!(got, ["a:1", "c:1"]);
    }
}
