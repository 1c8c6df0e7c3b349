//! Broadcast pacing shared by every center: one schedule in Redis, so two centers sending
//! broadcasts at once take turns as one would, and a room never gets more than
//! `push.broadcast_rate` broadcast deliveries per second however many centers there are.
//!
//! Key: `{broadcast-pacing}` — the Redis-clock millisecond at which the next broadcast may
//! start. A broadcast reserves the span its busiest room needs (its connections at the
//! rate) with one script that reads Redis' own clock (no skew between centers).

use std::time::Duration;

use crate::redis_conn::RedisConn;

use crate::PushError;
use crate::register::redis_err;

const TURN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local next = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(now, next)
local span = tonumber(ARGV[1])
redis.call('SET', KEYS[1], start + span, 'PX', start + span - now + 1000)
return start - now";

/// The shared schedule of broadcasts.
#[derive(Clone)]
pub struct SharedPacing {
    conn: RedisConn,
    key: String,
}

impl std::fmt::Debug for SharedPacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPacing")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl SharedPacing {
    /// The schedule under `prefix`.
    pub fn new(conn: RedisConn, prefix: &str) -> SharedPacing {
        SharedPacing {
            conn,
            key: format!("{prefix}{{broadcast-pacing}}"),
        }
    }

    /// Reserves the next turn of `span`; answers how long to wait for it to start.
    pub async fn turn(&self, span: Duration) -> Result<Duration, PushError> {
        let wait: i64 = redis::cmd("EVAL")
            .arg(TURN)
            .arg(1)
            .arg(&self.key)
            .arg(span.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(Duration::from_millis(wait.max(0) as u64))
    }
}
