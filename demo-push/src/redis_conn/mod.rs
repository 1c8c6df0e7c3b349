//! One Redis connection for every Redis user of the cluster (register, membership, the
//! saver's hot index): a single Redis server, or a Redis Cluster.
//!
//! [`RedisConn`] implements [`redis::aio::ConnectionLike`], so `cmd.query_async(&mut conn)`
//! and `pipe.query_async(&mut conn)` work on either. In cluster mode:
//! - a command goes to the master of its key's slot (MOVED/ASK followed, a failover's new
//!   master found by the crate's topology refresh);
//! - a non-atomic pipeline is split by slot (the `pipeline` module): one sub-pipeline per slot,
//!   all in flight at once, the answers put back in order;
//! - an atomic pipeline (`MULTI`/`EXEC`), a script, `RENAME` and any other multi-key command
//!   must name keys of one slot: the callers lay their keys out with hash tags for that
//!   (see `docs/push.md`, "Redis Cluster");
//! - a scan runs on every master ([`RedisConn::count_matching`]).
//!
//! Both kinds connect lazily (on first use) and fail fast while Redis is down: connect and
//! response timeouts of one second, a few retries close together.

mod pipeline;
mod scan;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

pub use self::scan::Master;
use crate::PushError;
use crate::config::ClusterConfig;

/// Connect timeout, response timeout, and (in cluster mode) the time a command may take
/// with all its retries.
const TIMEOUT: Duration = Duration::from_secs(1);

/// A connection to a single Redis or to a Redis Cluster; cheap to clone (clones share the
/// connections), usable wherever the redis crate takes an async connection.
///
/// ```no_run
/// # async fn f() -> Result<(), longlink_push::PushError> {
/// use longlink_push::redis_conn::RedisConn;
///
/// let mut conn = RedisConn::cluster(&["redis://127.0.0.1:7000".to_owned()])?;
/// let _: () = redis::cmd("SET").arg("k").arg(1).query_async(&mut conn).await
///     .map_err(longlink_push::register::redis_err)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub enum RedisConn {
    /// One Redis server, through a connection manager that reconnects.
    Single(ConnectionManager),
    /// A Redis Cluster, through the crate's cluster connection (a connection per node,
    /// commands routed by slot).
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConn::Single(_) => "RedisConn::Single",
            RedisConn::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

/// The Redis connection of `config`: the cluster of `redis_cluster` when it lists seed
/// nodes, otherwise the single Redis at `redis`. No I/O: it connects on first use.
///
/// ```no_run
/// # async fn f() -> Result<(), longlink_push::PushError> {
/// let mut config = longlink_push::config::ClusterConfig::default();
/// config.redis_cluster = vec!["redis://10.0.0.1:7000".into(), "redis://10.0.0.2:7000".into()];
/// let conn = longlink_push::redis_conn::redis_connection(&config)?;
/// assert!(conn.is_cluster());
/// # Ok(()) }
/// ```
pub fn redis_connection(config: &ClusterConfig) -> Result<RedisConn, PushError> {
    if config.redis_cluster.is_empty() {
        RedisConn::single(&config.redis)
    } else {
        RedisConn::cluster(&config.redis_cluster)
    }
}

impl RedisConn {
    /// A lazily connecting single Redis at `url` that fails fast while Redis is down (a
    /// response timeout of one second and two reconnect attempts per call).
    ///
    /// ```no_run
    /// # async fn f() {
    /// let conn = longlink_push::redis_conn::RedisConn::single("redis://127.0.0.1:6379/0").unwrap();
    /// assert!(!conn.is_cluster());
    /// # }
    /// ```
    pub fn single(url: &str) -> Result<RedisConn, PushError> {
        let client =
            redis::Client::open(url).map_err(|e| PushError::Invalid(format!("redis url: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200));
        ConnectionManager::new_lazy_with_config(client, config)
            .map(RedisConn::Single)
            .map_err(|e| PushError::Invalid(format!("redis: {e}")))
    }

    /// A Redis Cluster found from `seeds` (`redis://host:port` of any of its nodes). It
    /// connects in the background: a cluster that is down at start fails the first
    /// commands (within a second each) and is connected to once it answers. A command
    /// takes at most one second with its retries (three, 20–200 ms apart), so a master that
    /// died fails its slots' commands fast until a replica is promoted. Call it inside a
    /// Tokio runtime: the connection's task is spawned here.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let seeds = ["redis://127.0.0.1:7000".to_owned(), "redis://127.0.0.1:7001".to_owned()];
    /// let conn = longlink_push::redis_conn::RedisConn::cluster(&seeds).unwrap();
    /// assert!(conn.is_cluster());
    /// # }
    /// ```
    pub fn cluster(seeds: &[String]) -> Result<RedisConn, PushError> {
        if seeds.is_empty() {
            return Err(PushError::Invalid("redis cluster: no seed node".into()));
        }
        let client = redis::cluster::ClusterClientBuilder::new(seeds.iter().map(String::as_str))
            .connection_timeout(TIMEOUT)
            // Also the bound of a whole command, its retries and redirections included.
            .response_timeout(TIMEOUT)
            .retries(3)
            .min_retry_wait(20)
            .max_retry_wait(200)
            .retry_wait_formula(50, 2)
            .build()
            .map_err(|e| PushError::Invalid(format!("redis cluster: {e}")))?;
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT);
        Ok(RedisConn::Cluster(
            client.get_pending_async_connection_with_config(config),
        ))
    }

    /// Whether this is a Redis Cluster.
    ///
    /// ```no_run
    /// # async fn f() {
    /// let conn = longlink_push::redis_conn::RedisConn::single("redis://127.0.0.1/").unwrap();
    /// assert!(!conn.is_cluster());
    /// # }
    /// ```
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            // MULTI/EXEC runs on one node: its keys must share a slot (hash tags).
            RedisConn::Cluster(c) => {
                if pipeline.is_transaction() || offset != 0 || count != pipeline.len() {
                    c.req_packed_commands(pipeline, offset, count)
                } else {
                    Box::pin(pipeline::by_slot(c, pipeline))
                }
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}
