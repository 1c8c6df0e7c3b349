//! An id lane leased in Redis: `{prefix}{id-lane-N}` holds the holder's token with a TTL,
//! `{prefix}{id-lane-N}:hw` the lane's high-water mark — the millisecond up to which its
//! holders may have issued ids. Both keys share a hash tag, so each script stays on one
//! slot of a Redis Cluster.
//!
//! A holder issues ids only up to the mark it last wrote, and a new holder starts above the
//! mark it finds: two holders of one lane never issue the same id, even if one of them has
//! lost the lease without knowing (cut off from Redis). A holder that cannot renew for the
//! lease's TTL also stops by its own monotonic clock, so a mark lost with a Redis flush
//! leaves at most the store's primary key to catch a repeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::redis_conn::RedisConn;
use tokio::time::Instant;

use super::{INSTANCES, IdGenerator, LOW_BITS, epoch_ms};
use crate::metrics::{Metrics, inc};

const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local hw = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tonumber(ARGV[3]) > hw then redis.call('SET', KEYS[2], ARGV[3]) end
  return hw
end
return -1";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local hw = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tonumber(ARGV[3]) > hw then redis.call('SET', KEYS[2], ARGV[3]) end
  return 1
end
return 0";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Why no lane could be leased.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Every lane is held by another center.
    #[error("all {INSTANCES} id lanes are held by other centers")]
    AllHeld,
    /// Redis did not answer.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A lane this center holds, renewed in the background until dropped or released.
#[derive(Debug)]
pub struct IdLease {
    instance: u64,
    /// The millisecond up to which the lane may issue (0: stopped).
    until_ms: Arc<AtomicU64>,
    /// The mark found at acquisition: the lane's ids start above it.
    found_ms: u64,
    keys: (String, String),
    token: String,
    redis: RedisConn,
    renewer: tokio::task::JoinHandle<()>,
}

/// `EVAL script n keys…` (no script cache: a lease is renewed a few times a minute).
fn eval(script: &str, keys: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len()).arg(keys);
    cmd
}

fn keys(prefix: &str, lane: u64) -> (String, String) {
    let lease = format!("{prefix}{{id-lane-{lane}}}");
    let mark = format!("{lease}:hw");
    (lease, mark)
}

impl IdLease {
    /// Takes a free lane (trying them from a random one), valid for `ttl` unless renewed;
    /// the lane may issue ids up to `ttl` ahead of the clock.
    pub async fn acquire(
        redis: RedisConn,
        prefix: &str,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<IdLease, LeaseError> {
        let start = fastrand::u64(..INSTANCES);
        for i in 0..INSTANCES {
            let lane = (start + i) % INSTANCES;
            if let Some(lease) =
                IdLease::try_lane(redis.clone(), prefix, lane, ttl, Arc::clone(&metrics)).await?
            {
                return Ok(lease);
            }
        }
        Err(LeaseError::AllHeld)
    }

    /// Takes `lane` if it is free (`None`: another center holds it).
    pub async fn try_lane(
        redis: RedisConn,
        prefix: &str,
        lane: u64,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Option<IdLease>, LeaseError> {
        let ttl = ttl.max(Duration::from_secs(1));
        let token = format!("{:016x}", fastrand::u64(..));
        let mut conn = redis.clone();
        let (lease, mark) = keys(prefix, lane % INSTANCES);
        let sent = Instant::now();
        let reach = epoch_ms() + ttl.as_millis() as u64;
        let found: i64 = eval(ACQUIRE, &[&lease, &mark])
            .arg(&token)
            .arg(ttl.as_millis() as u64)
            .arg(reach)
            .query_async(&mut conn)
            .await?;
        if found < 0 {
            return Ok(None);
        }
        let until_ms = Arc::new(AtomicU64::new(reach));
        let renewer = tokio::spawn(renew(
            redis.clone(),
            (lease.clone(), mark.clone()),
            token.clone(),
            ttl,
            sent,
            Arc::clone(&until_ms),
            metrics,
        ));
        tracing::info!(lane, high_water_ms = found, "id lane leased");
        Ok(Some(IdLease {
            instance: lane % INSTANCES,
            until_ms,
            found_ms: found as u64,
            keys: (lease, mark),
            token,
            redis,
            renewer,
        }))
    }

    /// The lane.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The lane's generator: ids above `stored` (the largest stored id) and above the mark
    /// the lane's previous holders left, issued only while the lease holds.
    pub fn generator(&self, stored: u64) -> IdGenerator {
        self.generator_with_clock(stored, super::epoch_ms)
    }

    /// As [`generator`](Self::generator) on another clock (tests step it back).
    pub fn generator_with_clock(&self, stored: u64, clock: fn() -> u64) -> IdGenerator {
        let mark = (self.found_ms << LOW_BITS) | ((1 << LOW_BITS) - 1);
        IdGenerator::with_clock(self.instance, stored.max(mark), clock)
            .bounded_by(Arc::clone(&self.until_ms))
    }

    /// Stops issuing and gives the lane back (its mark stays), for a graceful stop.
    pub async fn release(self) {
        self.renewer.abort();
        self.until_ms.store(0, Ordering::Release);
        let _: Result<i64, _> = eval(RELEASE, &[&self.keys.0])
            .arg(&self.token)
            .query_async(&mut self.redis.clone())
            .await;
    }
}

impl Drop for IdLease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews every `ttl / 5`, moving the mark (and the lane's reach) to `ttl` ahead; stops the
/// lane once a whole TTL has passed since the last renewal that succeeded was sent, or at
/// once if the lease was taken over.
async fn renew(
    redis: RedisConn,
    (lease, mark): (String, String),
    token: String,
    ttl: Duration,
    mut last_ok_sent: Instant,
    until_ms: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
) {
    let every = ttl / 5;
    let mut conn = redis;
    let mut last_reach = until_ms.load(Ordering::Acquire);
    loop {
        tokio::time::sleep(every).await;
        let sent = Instant::now();
        let reach = epoch_ms() + ttl.as_millis() as u64;
        let renewed: Result<i64, _> = eval(RENEW, &[&lease, &mark])
            .arg(&token)
            .arg(ttl.as_millis() as u64)
            .arg(reach)
            .query_async(&mut conn)
            .await;
        match renewed {
            Ok(1) => {
                last_ok_sent = sent;
                last_reach = reach;
                until_ms.store(reach, Ordering::Release);
            }
            Ok(_) => {
                // Expired in Redis (a long outage, a flush): take it again if no one else
                // moved its mark meanwhile; otherwise the lane is someone else's now.
                let ours = until_ms.swap(0, Ordering::AcqRel);
                let again: Result<i64, _> = eval(ACQUIRE, &[&lease, &mark])
                    .arg(&token)
                    .arg(ttl.as_millis() as u64)
                    .arg(reach)
                    .query_async(&mut conn)
                    .await;
                match again {
                    Ok(found) if found >= 0 && found as u64 <= ours.max(last_reach) => {
                        last_ok_sent = sent;
                        last_reach = reach;
                        until_ms.store(reach, Ordering::Release);
                        tracing::warn!(lease, "the id lane's lease had expired; taken again");
                    }
                    _ => {
                        inc(&metrics.id_lease_lost);
                        tracing::error!(
                            lease,
                            "the id lane was taken over: this center issues no more ids (restart it)"
                        );
                        return;
                    }
                }
            }
            Err(e) => {
                // Two renewals' margin before the TTL runs out in Redis.
                if sent.duration_since(last_ok_sent) + 2 * every >= ttl {
                    until_ms.store(0, Ordering::Release);
                }
                tracing::warn!(error = %e, lease, "the id lane's lease was not renewed");
            }
        }
    }
}
