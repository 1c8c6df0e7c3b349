//! Scans, which in a cluster run on every master: each holds only its own slots' keys, and
//! a SCAN cursor means something only to the node that gave it.

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{RedisResult, Value};

use super::RedisConn;

/// A master of a Redis Cluster, as `CLUSTER SLOTS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Master {
    /// Its host (as the cluster announces it).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The first slot it serves: a command routed to that slot reaches it.
    pub slot: u16,
}

impl RedisConn {
    /// The keys matching `pattern`, counted with SCAN (at most `max_rounds` round trips
    /// per server: past that the count is a lower bound). On a cluster every master is
    /// scanned.
    ///
    /// ```no_run
    /// # async fn f(conn: longlink_push::redis_conn::RedisConn) -> redis::RedisResult<()> {
    /// let users = conn.count_matching("llpush:s:*", 1000).await?;
    /// # Ok(()) }
    /// ```
    pub async fn count_matching(&self, pattern: &str, max_rounds: usize) -> RedisResult<u64> {
        match self {
            RedisConn::Single(_) => count_on(self.clone(), None, pattern, max_rounds).await,
            RedisConn::Cluster(c) => {
                let mut total = 0;
                for master in masters(&mut c.clone()).await? {
                    total += count_on(self.clone(), Some(master.slot), pattern, max_rounds).await?;
                }
                Ok(total)
            }
        }
    }

    /// The masters of a cluster, by slot (none for a single Redis).
    ///
    /// ```no_run
    /// # async fn f(conn: longlink_push::redis_conn::RedisConn) -> redis::RedisResult<()> {
    /// for m in conn.masters().await? {
    ///     println!("{}:{} serves slot {}", m.host, m.port, m.slot);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn masters(&self) -> RedisResult<Vec<Master>> {
        match self {
            RedisConn::Single(_) => Ok(Vec::new()),
            RedisConn::Cluster(c) => masters(&mut c.clone()).await,
        }
    }
}

/// SCANs one server to the end (or `max_rounds`): the single one, or the master of `slot`.
async fn count_on(
    mut conn: RedisConn,
    slot: Option<u16>,
    pattern: &str,
    max_rounds: usize,
) -> RedisResult<u64> {
    let mut cursor = 0u64;
    let mut count = 0u64;
    for _ in 0..max_rounds {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, keys): (u64, Vec<Value>) = match (&mut conn, slot) {
            (RedisConn::Cluster(c), Some(slot)) => {
                let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                redis::from_redis_value(
                    c.route_command(cmd, RoutingInfo::SingleNode(route)).await?,
                )?
            }
            _ => cmd.query_async(&mut conn).await?,
        };
        count += keys.len() as u64;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(count)
}

/// `CLUSTER SLOTS`: each range with its master first; one entry per master.
async fn masters(conn: &mut ClusterConnection) -> RedisResult<Vec<Master>> {
    let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut masters: Vec<Master> = Vec::new();
    for range in ranges {
        let (Some(start), Some(Value::Array(node))) = (range.first(), range.get(2)) else {
            continue;
        };
        let (Some(host), Some(port)) = (node.first(), node.get(1)) else {
            continue;
        };
        let master = Master {
            host: redis::from_redis_value_ref(host)?,
            port: redis::from_redis_value_ref(port)?,
            slot: redis::from_redis_value_ref(start)?,
        };
        if !masters
            .iter()
            .any(|m| m.host == master.host && m.port == master.port)
        {
            masters.push(master);
        }
    }
    masters.sort_by_key(|m| m.slot);
    Ok(masters)
}
