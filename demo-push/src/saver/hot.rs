//! The saver's hot state in Redis: which (message, device) each user is still owed. A
//! user with nothing owed — most users on most reconnects — costs one Redis round trip
//! instead of a MySQL query; everything durable stays in MySQL. Any number of savers share
//! it.
//!
//! Keys: `owed:{uid}` — a set of `{message id}|{device or *}`; `{owed-index}` — present only
//! while the sets are complete; `{owed-index}:health` — a hash of saver → until when (Unix
//! ms) that saver vouches that all its index writes succeeded; `{owed-index}:gen` — counts
//! invalidations. (The three share a hash tag: one slot of a Redis Cluster.)
//!
//! **Invariant**: while the marker is present and every saver's vouch is current, the sets
//! hold every (message, device) MySQL owes. A store adds its entries *before* its MySQL
//! commit; an ACK or expiry removes nothing (a lookup prunes what MySQL proves stale, and
//! only entries older than a minute, so never one whose store is still committing). A saver
//! whose index write fails stops vouching and commits only once its vouch has run out, so
//! from then on no saver trusts the index — even one that can reach Redis while this one
//! cannot; a vouch found expired (a saver cut off, or killed) removes the marker, and a
//! missing marker is rebuilt from MySQL by whichever saver gets there (a rebuild that an
//! invalidation overtook does not set the marker). Two seconds after a rebuild the last
//! minute of ids is read again, for a store whose entries a flush removed while it was
//! committing: until then a lookup may miss that one message (a flush in the
//! milliseconds between a store's index write and its commit).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use longlink_pool::db::Value;

use super::{Claimed, MessageStatus, Pending, Recipient, Saver, SqlSaver};
use crate::PushError;
use crate::ids::{epoch_ms, first_id_of_ms, ms_of};
use crate::metrics::{Metrics, add, inc};
use crate::model::{Message, now_ms};
use crate::redis_conn::RedisConn;
use crate::register::redis_err;

/// Rows read per rebuild query.
const REBUILD_PAGE: usize = 5000;
/// How long a saver's vouch lasts (it renews it four times as often).
const VOUCH: Duration = Duration::from_millis(1000);
/// Added to a vouch's end before a saver whose write failed commits: clocks of savers
/// differ a little.
const SKEW: Duration = Duration::from_millis(250);
/// After a rebuild, the rows of this last span of ids are read again, [`TAIL_SETTLE`]
/// later: stores whose entries a flush removed before they committed.
const TAIL_MS: u64 = 60_000;
const TAIL_SETTLE: Duration = Duration::from_secs(2);

/// Drops a saver's expired vouch and the marker, once (ARGV: saver, the value seen).
const INVALIDATE_STALE: &str = r"
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[1])
  redis.call('INCR', KEYS[3])
  return 1
end
return 0";

/// Drops the marker (this saver's own writes failed).
const INVALIDATE: &str = r"
redis.call('DEL', KEYS[1])
return redis.call('INCR', KEYS[3])";

/// Sets the marker unless an invalidation came after the rebuild began (ARGV: the
/// generation then, or '' for none; the value).
const COMPLETE: &str = r"
local gen = redis.call('GET', KEYS[3]) or ''
if gen == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0";

/// A [`SqlSaver`] with its pending state indexed in Redis.
#[derive(Clone)]
pub struct HotSaver {
    sql: Arc<SqlSaver>,
    redis: RedisConn,
    prefix: String,
    /// This saver in the health hash.
    id: String,
    /// An index write of this saver failed and the marker has not been dropped since.
    dirty: Arc<AtomicBool>,
    /// Until when (Unix ms) this saver's latest vouch may hold.
    vouched_until: Arc<AtomicU64>,
    /// Stopped cleanly: no more vouches or rebuilds.
    left: Arc<AtomicBool>,
    /// Entries younger than this are never pruned: their store may still be committing.
    prune_after_ms: u64,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for HotSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotSaver")
            .field("prefix", &self.prefix)
            .field("id", &self.id)
            .field("dirty", &self.dirty.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn entry(id: u64, device: &str) -> String {
    format!("{id}|{device}")
}

fn eval(script: &str, keys: &[String; 3]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(3).arg(&keys[..]);
    cmd
}

impl HotSaver {
    /// Indexes `sql` in Redis under `prefix`, and starts the tasks that vouch for this
    /// saver every quarter of a second and rebuild the index every `check` when its marker
    /// is missing.
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
            id: format!("{:016x}", fastrand::u64(..)),
            dirty: Arc::new(AtomicBool::new(false)),
            vouched_until: Arc::new(AtomicU64::new(0)),
            left: Arc::new(AtomicBool::new(false)),
            prune_after_ms: 60_000,
            metrics,
        };
        // Vouching never waits for a rebuild (which takes seconds): a vouch left to run
        // out would make the others drop the index just rebuilt.
        let hot = this.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(VOUCH / 4);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !hot.left.load(Ordering::SeqCst) {
                ticks.tick().await;
                if let Err(e) = hot.vouch().await {
                    tracing::debug!(error = %e, "no vouch for the pending index");
                }
            }
        });
        let hot = this.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(check);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !hot.left.load(Ordering::SeqCst) {
                ticks.tick().await;
                if let Err(e) = hot.rebuild_if_missing().await {
                    tracing::debug!(error = %e, "pending index not rebuilt");
                }
            }
        });
        this
    }

    /// Prunes entries only once their message is `age` old (default a minute).
    pub fn prune_after(mut self, age: Duration) -> HotSaver {
        self.prune_after_ms = age.as_millis() as u64;
        self
    }

    /// Stops vouching (a clean stop, once no store runs: nothing to invalidate).
    pub async fn leave(&self) {
        self.left.store(true, Ordering::SeqCst);
        let _: Result<(), _> = redis::cmd("HDEL")
            .arg(&self.keys()[1])
            .arg(&self.id)
            .query_async(&mut self.redis.clone())
            .await;
    }

    fn owed(&self, uid: &str) -> String {
        format!("{}owed:{uid}", self.prefix)
    }

    /// The marker, the health hash, the generation.
    fn keys(&self) -> [String; 3] {
        let marker = format!("{}{{owed-index}}", self.prefix);
        let health = format!("{marker}:health");
        let generation = format!("{marker}:gen");
        [marker, health, generation]
    }

    /// Vouches for this saver — after a failed write, once it has dropped the marker.
    async fn vouch(&self) -> Result<(), PushError> {
        let mut conn = self.redis.clone();
        let keys = self.keys();
        if self.dirty.load(Ordering::SeqCst) {
            eval(INVALIDATE, &keys)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(redis_err)?;
            self.dirty.store(false, Ordering::SeqCst);
        }
        let until = now_ms() + VOUCH.as_millis() as u64;
        self.vouched_until.fetch_max(until, Ordering::SeqCst);
        if self.dirty.load(Ordering::SeqCst) || self.left.load(Ordering::SeqCst) {
            return Ok(());
        }
        redis::cmd("HSET")
            .arg(&keys[1])
            .arg(&self.id)
            .arg(until)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }

    /// Rebuilds the index from MySQL when its marker is missing.
    async fn rebuild_if_missing(&self) -> Result<(), PushError> {
        let mut conn = self.redis.clone();
        let keys = self.keys();
        let present: bool = redis::cmd("EXISTS")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if present {
            return Ok(());
        }
        let generation: Option<String> = redis::cmd("GET")
            .arg(&keys[2])
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let began_ms = epoch_ms();
        let rows_seen = self.reindex(i64::MIN).await?;
        let set: i64 = eval(COMPLETE, &keys)
            .arg(generation.unwrap_or_default())
            .arg(now_ms())
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if set != 1 {
            return Ok(()); // invalidated meanwhile: the next check starts over
        }
        inc(&self.metrics.hot_index_rebuilds);
        tracing::info!(rows = rows_seen, "pending index rebuilt from MySQL");
        // A store in flight when a flush took its entries commits within a second or so:
        // read the last minute of ids again once it has (entries are idempotent).
        tokio::time::sleep(TAIL_SETTLE).await;
        let tail = first_id_of_ms(began_ms.saturating_sub(TAIL_MS)) as i64;
        self.reindex(tail - 1).await?;
        Ok(())
    }

    /// Adds every owed row with a message id above `after` to the sets; answers how many.
    async fn reindex(&self, after_id: i64) -> Result<u64, PushError> {
        let mut conn = self.redis.clone();
        // Keyset pages over the owed rows.
        let mut after: (i64, String, String) = (after_id, String::new(), String::new());
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
                return Ok(rows_seen);
            }
        }
    }

    /// Applies an index change before the MySQL write it describes. On failure this saver
    /// stops vouching and waits for its vouch to run out (then no saver trusts the index),
    /// so the write may go ahead either way.
    async fn index_first(&self, pipe: redis::Pipeline) {
        if let Err(e) = pipe.query_async::<()>(&mut self.redis.clone()).await {
            self.dirty.store(true, Ordering::SeqCst);
            inc(&self.metrics.hot_index_write_failures);
            let until = self.vouched_until.load(Ordering::SeqCst) + SKEW.as_millis() as u64;
            let wait = until.saturating_sub(now_ms());
            tracing::warn!(error = %e, wait_ms = wait, "pending index write failed: lookups use MySQL until it is rebuilt");
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    /// Drops the marker because the vouch of `saver` (`value`) ran out, unless that was
    /// done already.
    async fn invalidate_stale(&self, saver: String, value: String) {
        let dropped: Result<i64, _> = eval(INVALIDATE_STALE, &self.keys())
            .arg(&saver)
            .arg(&value)
            .query_async(&mut self.redis.clone())
            .await;
        if let Ok(1) = dropped {
            tracing::warn!(
                saver,
                "a saver stopped vouching for the pending index: rebuilding it"
            );
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
        // First the index (an entry for a store that then fails is pruned later), then
        // MySQL: the index never lacks a row MySQL owes while it is trusted.
        self.index_first(pipe).await;
        self.sql.store(message, recipients, key).await
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
            let keys = self.keys();
            let answer: Result<(bool, Vec<String>, Vec<(String, String)>), _> = redis::pipe()
                .exists(&keys[0])
                .smembers(self.owed(&uid))
                .hgetall(&keys[1])
                .query_async(&mut self.redis.clone())
                .await;
            let now = crate::model::now_ms();
            let trusted = match answer {
                Ok((true, entries, vouches)) => {
                    let stale = vouches
                        .into_iter()
                        .find(|(_, until)| until.parse::<u64>().is_ok_and(|u| u <= now));
                    match stale {
                        None => Some(entries),
                        Some((saver, value)) => {
                            self.invalidate_stale(saver, value).await;
                            None
                        }
                    }
                }
                _ => None,
            };
            if let Some(entries) = trusted {
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
            let old_enough = epoch_ms().saturating_sub(self.prune_after_ms);
            let stale: Vec<&String> = snapshot
                .iter()
                .filter(|e| {
                    e.split_once('|')
                        .and_then(|(id, _)| id.parse::<u64>().ok())
                        .is_some_and(|id| !owed.contains(&id) && ms_of(id) < old_enough)
                })
                .collect();
            if !stale.is_empty() {
                add(&self.metrics.hot_index_pruned, stale.len() as u64);
                // A failed prune leaves stale entries only: they cost a MySQL read.
                let _: Result<(), _> = redis::cmd("SREM")
                    .arg(self.owed(&uid))
                    .arg(stale)
                    .query_async(&mut self.redis.clone())
                    .await;
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
