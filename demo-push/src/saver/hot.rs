//! The saver's hot state in Redis: which (message, device) each user is still owed. A
//! user with nothing owed — most users on most reconnects — costs one Redis round trip
//! instead of a MySQL query; everything durable stays in MySQL.
//!
//! Keys: `owed:{uid}` — a set of `{message id}|{device or *}`; `owed-index` — present only
//! while the sets are complete. The sets are written after MySQL commits (a store adds,
//! an ACK or expiry removes), so a set may hold ids MySQL no longer owes (they are pruned
//! when a lookup proves it) but never lacks one MySQL owes while the marker is present.
//! When a Redis write fails the index is marked dirty: lookups go to MySQL, and once Redis
//! answers again the marker is deleted and the sets are rebuilt from MySQL (also after a
//! Redis restart or flush, which removes the marker). Run one saver per cluster: the dirty
//! flag is this process's.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use longlink_pool::db::Value;

use super::{Claimed, MessageStatus, Pending, Recipient, Saver, SqlSaver};
use crate::PushError;
use crate::metrics::{Metrics, add, inc};
use crate::model::Message;
use crate::redis_conn::RedisConn;
use crate::register::redis_err;

/// Rows read per rebuild query.
const REBUILD_PAGE: usize = 5000;

/// A [`SqlSaver`] with its pending state indexed in Redis.
#[derive(Clone)]
pub struct HotSaver {
    sql: Arc<SqlSaver>,
    redis: RedisConn,
    prefix: String,
    dirty: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for HotSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotSaver")
            .field("prefix", &self.prefix)
            .field("dirty", &self.dirty.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn entry(id: u64, device: &str) -> String {
    format!("{id}|{device}")
}

impl HotSaver {
    /// Indexes `sql` in Redis under `prefix`, and starts the task that (re)builds the index
    /// every `check` when its marker is missing.
    pub fn start(
        sql: SqlSaver,
        redis: RedisConn,
        prefix: &str,
        check: Duration,
        metrics: Arc<Metrics>,
    ) -> HotSaver {
        let this = HotSaver {
            sql: Arc::new(sql),
            redis,
            prefix: prefix.to_owned(),
            dirty: Arc::new(AtomicBool::new(true)),
            metrics,
        };
        let hot = this.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(check);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = hot.maintain().await {
                    tracing::debug!(error = %e, "pending index not maintained");
                }
            }
        });
        this
    }

    fn owed(&self, uid: &str) -> String {
        format!("{}owed:{uid}", self.prefix)
    }

    fn marker(&self) -> String {
        format!("{}owed-index", self.prefix)
    }

    /// Drops the marker after a failed write; rebuilds the index while it is missing.
    async fn maintain(&self) -> Result<(), PushError> {
        let mut conn = self.redis.clone();
        if self.dirty.load(Ordering::SeqCst) {
            redis::cmd("DEL")
                .arg(self.marker())
                .query_async::<()>(&mut conn)
                .await
                .map_err(redis_err)?;
            self.dirty.store(false, Ordering::SeqCst);
        }
        let present: bool = redis::cmd("EXISTS")
            .arg(self.marker())
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if present {
            return Ok(());
        }
        // Keyset pages over the owed rows; rows added meanwhile are indexed by their store.
        let mut after: (i64, String, String) = (i64::MIN, String::new(), String::new());
        let mut rows_seen = 0u64;
        loop {
            let rows = self
                .sql
                .db()
                .query(
                    &format!(
                        "SELECT message_id, uid, device FROM push_deliveries
                         WHERE status IN (0, 1) AND (message_id > ? OR (message_id = ? AND (uid > ? OR (uid = ? AND device > ?))))
                         ORDER BY message_id, uid, device LIMIT {REBUILD_PAGE}"
                    ),
                    vec![
                        Value::I64(after.0),
                        Value::I64(after.0),
                        Value::Text(after.1.clone()),
                        Value::Text(after.1.clone()),
                        Value::Text(after.2.clone()),
                    ],
                )
                .await?;
            let mut pipe = redis::pipe();
            for row in &rows {
                let id: i64 = row.get("message_id")?;
                let uid: String = row.get("uid")?;
                let device: String = row.get("device")?;
                pipe.sadd(self.owed(&uid), entry(id as u64, &device))
                    .ignore();
                after = (id, uid, device);
            }
            if !rows.is_empty() {
                pipe.query_async::<()>(&mut conn).await.map_err(redis_err)?;
            }
            rows_seen += rows.len() as u64;
            if rows.len() < REBUILD_PAGE {
                break;
            }
        }
        if self.dirty.load(Ordering::SeqCst) {
            // A write failed while rebuilding: start over on the next check.
            return Ok(());
        }
        redis::cmd("SET")
            .arg(self.marker())
            .arg(crate::model::now_ms())
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)?;
        inc(&self.metrics.hot_index_rebuilds);
        tracing::info!(rows = rows_seen, "pending index rebuilt from MySQL");
        Ok(())
    }

    /// Applies an index change; a failure marks the index dirty (MySQL stays right).
    async fn index(&self, pipe: redis::Pipeline) {
        if let Err(e) = pipe.query_async::<()>(&mut self.redis.clone()).await {
            self.dirty.store(true, Ordering::SeqCst);
            tracing::warn!(error = %e, "pending index write failed: lookups use MySQL until it is rebuilt");
        }
    }
}

#[async_trait]
impl Saver for HotSaver {
    async fn store(
        &self,
        message: Message,
        recipients: Vec<Recipient>,
        key: Option<String>,
    ) -> Result<Option<Claimed>, PushError> {
        let id = message.id;
        let mut pipe = redis::pipe();
        for r in &recipients {
            pipe.sadd(self.owed(&r.uid), entry(id, &r.device)).ignore();
        }
        let claimed = self.sql.store(message, recipients, key).await?;
        if claimed.is_none() {
            self.index(pipe).await;
        }
        Ok(claimed)
    }

    async fn claim(
        &self,
        app: String,
        key: String,
        id: u64,
        recipients: u64,
        expires_ms: u64,
    ) -> Result<Option<Claimed>, PushError> {
        self.sql.claim(app, key, id, recipients, expires_ms).await
    }

    async fn delivered(
        &self,
        message_id: u64,
        uids: Vec<String>,
        max_attempts: u32,
    ) -> Result<(), PushError> {
        self.sql.delivered(message_id, uids, max_attempts).await
    }

    async fn ack(&self, uid: String, ids: Vec<u64>) -> Result<u64, PushError> {
        // Which device a row was for is not known here: the next lookup prunes the entry.
        self.sql.ack(uid, ids).await
    }

    async fn expire(&self, message_id: u64, uid: String) -> Result<(), PushError> {
        self.sql.expire(message_id, uid).await
    }

    async fn pending(
        &self,
        uid: String,
        device: String,
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<Pending>, PushError> {
        let mut snapshot: Option<Vec<String>> = None;
        if !self.dirty.load(Ordering::SeqCst) {
            let answer: Result<(bool, Vec<String>), _> = redis::pipe()
                .exists(self.marker())
                .smembers(self.owed(&uid))
                .query_async(&mut self.redis.clone())
                .await;
            if let Ok((true, entries)) = answer {
                let mine: Vec<String> = entries
                    .into_iter()
                    .filter(|e| {
                        e.split_once('|')
                            .is_some_and(|(_, d)| d == "*" || d == device.as_str())
                    })
                    .collect();
                if mine.is_empty() {
                    inc(&self.metrics.hot_index_hits);
                    return Ok(Vec::new());
                }
                snapshot = Some(mine);
            }
        }
        inc(&self.metrics.hot_index_misses);
        let pending = self.sql.pending(uid.clone(), device, now_ms, limit).await?;
        // Entries read before the query that it did not return are owed no more (acked,
        // expired): prune them. One added after the snapshot is not in it, so never pruned.
        if let Some(snapshot) = snapshot
            && pending.len() < limit.min(1000) as usize
        {
            let owed: HashSet<u64> = pending.iter().map(|p| p.message.id).collect();
            let stale: Vec<&String> = snapshot
                .iter()
                .filter(|e| {
                    e.split_once('|')
                        .and_then(|(id, _)| id.parse::<u64>().ok())
                        .is_some_and(|id| !owed.contains(&id))
                })
                .collect();
            if !stale.is_empty() {
                add(&self.metrics.hot_index_pruned, stale.len() as u64);
                let mut pipe = redis::pipe();
                pipe.srem(self.owed(&uid), stale).ignore();
                self.index(pipe).await;
            }
        }
        Ok(pending)
    }

    async fn status(&self, message_id: u64) -> Result<Option<MessageStatus>, PushError> {
        self.sql.status(message_id).await
    }

    async fn message_for(
        &self,
        message_id: u64,
        uid: String,
    ) -> Result<Option<Message>, PushError> {
        self.sql.message_for(message_id, uid).await
    }

    async fn sweep(&self, now_ms: u64) -> Result<u64, PushError> {
        self.sql.sweep(now_ms).await
    }

    async fn max_id(&self) -> Result<u64, PushError> {
        self.sql.max_id().await
    }
}
