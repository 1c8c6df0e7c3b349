//! The register on Redis: several register processes can serve at once (they share
//! nothing but Redis), and rooms refresh their sessions so that the state can be lost and
//! rebuilt.
//!
//! Keys (all under the cluster's prefix):
//! - `s:{uid}`: a hash, field `{room}|{device}` → `{expires_ms}|{session json}`; the key
//!   expires with the user's last session.
//! - `rs:{<room>}`: a set of `{uid}|{device}` on that room, so that the sessions of a room
//!   that is gone can be found and removed ([`Register::reap`]); it expires with the room's
//!   last refresh. The braces are literal, a hash tag: the reaper RENAMEs the set to
//!   `rs:{<room>}:reaping:…`, which a Redis Cluster allows only within one slot.
//! - `g:{app}\x1f{group}`: a set of uids; `groups`: the set of non-empty groups.
//! - `epoch`: when this register state began (Unix ms). A lookup that finds it missing
//!   (Redis restarted empty, or was flushed) starts a new epoch; rooms notice the change and
//!   re-flush their sessions, and lookups say `settling` until that had time to happen.

use std::time::Duration;

use async_trait::async_trait;

use super::{Counts, Lookup, Register};
use crate::PushError;
use crate::model::{Session, now_ms};
use crate::redis_conn::RedisConn;

/// A Redis failure as the push system reports it.
pub fn redis_err(e: redis::RedisError) -> PushError {
    // A command that timed out or lost its connection may have been applied; one refused a
    // connection, or answered with an error, was not.
    let may_have_run = !e.is_connection_refusal()
        && (e.is_timeout() || e.is_connection_dropped() || e.is_io_error());
    PushError::Unavailable {
        service: "redis",
        detail: e.to_string(),
        may_have_run,
    }
}

/// Sessions and groups in Redis.
#[derive(Clone)]
pub struct RedisRegister {
    conn: RedisConn,
    prefix: String,
    session_ttl: Duration,
    settle: Duration,
    max_groups: usize,
    max_members: usize,
}

impl std::fmt::Debug for RedisRegister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegister")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn field(session: &Session) -> String {
    format!("{}|{}", session.room, session.device)
}

fn member(session: &Session) -> String {
    format!("{}|{}", session.uid, session.device)
}

impl RedisRegister {
    /// A register on `conn` under `prefix`; sessions live `session_ttl` unless refreshed;
    /// after a lost state, lookups say `settling` for `settle`.
    pub fn new(
        conn: RedisConn,
        prefix: &str,
        session_ttl: Duration,
        settle: Duration,
    ) -> RedisRegister {
        RedisRegister {
            conn,
            prefix: prefix.to_owned(),
            session_ttl,
            settle,
            max_groups: 1_000_000,
            max_members: 100_000,
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// The set of a room's sessions, its name a hash tag (see the module doc).
    fn room_set(&self, room: &str) -> String {
        format!("{}rs:{{{room}}}", self.prefix)
    }

    /// Records (or refreshes) sessions, one round trip for the batch.
    async fn connect_many(&self, sessions: &[Session]) -> Result<(), PushError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let expires = now_ms() + self.session_ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for s in sessions {
            let value = format!(
                "{expires}|{}",
                serde_json::to_string(s).map_err(|e| PushError::Invalid(e.to_string()))?
            );
            let key = self.key("s", &s.uid);
            pipe.hset(&key, field(s), value).ignore();
            pipe.pexpire(&key, self.session_ttl.as_millis() as i64)
                .ignore();
            let on_room = self.room_set(&s.room);
            pipe.sadd(&on_room, member(s)).ignore();
            pipe.pexpire(&on_room, self.session_ttl.as_millis() as i64)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// Forgets sessions.
    async fn disconnect_many(&self, sessions: &[Session]) -> Result<(), PushError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for s in sessions {
            pipe.hdel(self.key("s", &s.uid), field(s)).ignore();
            pipe.srem(self.room_set(&s.room), member(s)).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    /// The sessions of each uid (expired ones left out), and whether the state is settling.
    async fn lookup_many(&self, uids: &[String]) -> Result<Lookup, PushError> {
        let mut pipe = redis::pipe();
        for uid in uids {
            pipe.hgetall(self.key("s", uid));
        }
        let maps: Vec<Vec<(String, String)>> = if uids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn.clone())
                .await
                .map_err(redis_err)?
        };
        let now = now_ms();
        let sessions = maps
            .into_iter()
            .map(|fields| {
                fields
                    .into_iter()
                    .filter_map(|(_, v)| {
                        let (exp, json) = v.split_once('|')?;
                        if exp.parse::<u64>().ok()? < now {
                            return None;
                        }
                        serde_json::from_str(json).ok()
                    })
                    .collect()
            })
            .collect();
        let epoch_ms = self.epoch_ms().await?;
        Ok(Lookup {
            sessions,
            settling: now.saturating_sub(epoch_ms) < self.settle.as_millis() as u64,
        })
    }

    /// When the current state began (Unix ms); starts a new epoch if there is none.
    async fn epoch_ms(&self) -> Result<u64, PushError> {
        let key = format!("{}epoch", self.prefix);
        let mut conn = self.conn.clone();
        let now = now_ms();
        // SET NX then GET: whoever sets first starts the epoch, everyone reads the same.
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(now)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(value.and_then(|v| v.parse().ok()).unwrap_or(now))
    }

    fn group_key(&self, app: &str, group: &str) -> String {
        self.key("g", &format!("{app}\u{1f}{group}"))
    }

    /// Online users (keys of sessions), counted with SCAN (on every master of a
    /// cluster), and non-empty groups.
    async fn count(&self) -> Result<Counts, PushError> {
        // Bounded: at most 1,000 SCAN round trips per server.
        let users = self
            .conn
            .count_matching(&format!("{}s:*", self.prefix), 1000)
            .await
            .map_err(redis_err)?;
        let groups: u64 = redis::cmd("SCARD")
            .arg(format!("{}groups", self.prefix))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(Counts { users, groups })
    }
}

#[async_trait]
impl Register for RedisRegister {
    async fn connect(&self, sessions: Vec<Session>) -> Result<(), PushError> {
        self.connect_many(&sessions).await
    }

    async fn disconnect(&self, sessions: Vec<Session>) -> Result<(), PushError> {
        self.disconnect_many(&sessions).await
    }

    async fn lookup(&self, uids: Vec<String>) -> Result<Lookup, PushError> {
        if uids.len() > 100_000 {
            return Err(PushError::Invalid(
                "more than 100,000 uids in one lookup".into(),
            ));
        }
        self.lookup_many(&uids).await
    }

    async fn bind(&self, app: String, group: String, uid: String) -> Result<(), PushError> {
        let key = self.group_key(&app, &group);
        let groups = format!("{}groups", self.prefix);
        let mut conn = self.conn.clone();
        let (members, count, known): (u64, u64, bool) = redis::pipe()
            .scard(&key)
            .scard(&groups)
            .sismember(&groups, &key)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if !known && count as usize >= self.max_groups {
            return Err(PushError::Invalid(format!(
                "more than {} groups",
                self.max_groups
            )));
        }
        if members as usize >= self.max_members {
            return Err(PushError::Invalid(format!(
                "group {group:?} has {} members already",
                self.max_members
            )));
        }
        redis::pipe()
            .sadd(&key, &uid)
            .ignore()
            .sadd(&groups, &key)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }

    async fn unbind(&self, app: String, group: String, uid: String) -> Result<(), PushError> {
        let key = self.group_key(&app, &group);
        let mut conn = self.conn.clone();
        let (_, left): (u64, u64) = redis::pipe()
            .srem(&key, &uid)
            .scard(&key)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if left == 0 {
            let _: u64 = redis::cmd("SREM")
                .arg(format!("{}groups", self.prefix))
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
        }
        Ok(())
    }

    async fn members(&self, app: String, group: String) -> Result<Vec<String>, PushError> {
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.group_key(&app, &group))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        members.sort();
        Ok(members)
    }

    async fn counts(&self) -> Result<Counts, PushError> {
        self.count().await
    }

    async fn epoch(&self) -> Result<u64, PushError> {
        self.epoch_ms().await
    }

    async fn reap(&self, room: String) -> Result<Vec<Session>, PushError> {
        let mut conn = self.conn.clone();
        let set = self.room_set(&room);
        // RENAME is atomic: of several reapers, one moves the set and the others find
        // none, so each session is reaped (and called back offline) once.
        let claimed = format!("{set}:reaping:{}:{}", now_ms(), fastrand::u64(..));
        let renamed: Result<(), _> = redis::cmd("RENAME")
            .arg(&set)
            .arg(&claimed)
            .query_async(&mut conn)
            .await;
        if let Err(e) = renamed {
            if e.to_string().contains("no such key") {
                return Ok(Vec::new());
            }
            return Err(redis_err(e));
        }
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&claimed)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let mut reaped = Vec::new();
        for chunk in members.chunks(500) {
            let mut pipe = redis::pipe();
            let mut asked = Vec::with_capacity(chunk.len());
            for m in chunk {
                let Some((uid, device)) = m.rsplit_once('|') else {
                    continue;
                };
                let key = self.key("s", uid);
                let field = format!("{room}|{device}");
                pipe.hget(&key, &field);
                asked.push((key, field));
            }
            let values: Vec<Option<String>> =
                pipe.query_async(&mut conn).await.map_err(redis_err)?;
            let mut remove = redis::pipe();
            for ((key, field), value) in asked.into_iter().zip(values) {
                let Some(value) = value else { continue };
                remove.hdel(&key, &field).ignore();
                if let Some(session) = value
                    .split_once('|')
                    .and_then(|(_, json)| serde_json::from_str::<Session>(json).ok())
                {
                    reaped.push(session);
                }
            }
            remove
                .query_async::<()>(&mut conn)
                .await
                .map_err(redis_err)?;
        }
        let _: () = redis::cmd("DEL")
            .arg(&claimed)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(reaped)
    }
}
