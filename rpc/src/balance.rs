//! Spreading calls over several instances of a service: by key on a consistent-hash ring
//! (the same key reaches the same instance, and adding an instance moves only its share of
//! keys), or to the less loaded of two instances picked at random ("power of two choices").
//! A call that fails in a way that proves it did not run goes to the next instance.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::client::attempts;
use crate::{Client, RpcError};

/// Virtual nodes per instance on the ring: enough for an even spread, few enough to build
/// and search quickly.
const VNODES: usize = 128;

/// Instances one call tries at most (the first, then failovers).
const MAX_TRIES: usize = 3;

/// 64-bit FNV-1a with a splitmix64 finish: stable across processes and Rust versions (the
/// ring must agree between every caller of a cluster).
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The instances one call tries, in order.
#[derive(Debug, Default, Clone, Copy)]
struct Tries {
    indices: [usize; MAX_TRIES],
    len: usize,
}

impl Tries {
    fn push(&mut self, index: usize) {
        self.indices[self.len] = index;
        self.len += 1;
    }

    fn as_slice(&self) -> &[usize] {
        &self.indices[..self.len]
    }
}

/// The instances at one moment, and their ring.
#[derive(Default)]
struct Ring {
    targets: Vec<(String, Client)>,
    /// (point on the ring, index into `targets`), sorted.
    points: Vec<(u64, usize)>,
}

impl Ring {
    fn new(targets: Vec<(String, Client)>) -> Ring {
        let mut points: Vec<(u64, usize)> = targets
            .iter()
            .enumerate()
            .flat_map(|(i, (addr, _))| {
                (0..VNODES).map(move |v| (stable_hash(format!("{addr}#{v}").as_bytes()), i))
            })
            .collect();
        points.sort_unstable();
        Ring { targets, points }
    }

    /// Instances in the order a call with key hash `h` tries them: the owner first, then
    /// the next distinct instances clockwise (at most [`MAX_TRIES`]; no allocation).
    fn by_key(&self, h: u64) -> Tries {
        let mut tries = Tries::default();
        let n = self.points.len();
        let at = self.points.partition_point(|(point, _)| *point < h);
        for i in 0..n {
            if tries.len == MAX_TRIES || tries.len == self.targets.len() {
                break;
            }
            let index = self.points[(at + i) % n].1;
            if !tries.as_slice().contains(&index) {
                tries.push(index);
            }
        }
        tries
    }

    /// The least loaded of two random instances first, then the ones after it.
    fn by_load(&self) -> Tries {
        let mut tries = Tries::default();
        let n = self.targets.len();
        if n == 0 {
            return tries;
        }
        let first = self.least_loaded();
        for i in 0..n.min(MAX_TRIES) {
            tries.push((first + i) % n);
        }
        tries
    }

    /// Of two instances picked at random, the one with fewer calls in flight.
    fn least_loaded(&self) -> usize {
        let n = self.targets.len();
        if n <= 1 {
            return 0;
        }
        let a = fastrand::usize(..n);
        let b = (a + 1 + fastrand::usize(..n - 1)) % n;
        if self.targets[b].1.load() < self.targets[a].1.load() {
            b
        } else {
            a
        }
    }
}

struct Shared {
    ring: RwLock<Arc<Ring>>,
    failovers: AtomicU64,
}

/// Clients of several instances of one service. Cheap to clone (clones share the
/// instances); the set can change while calls run ([`update`](Balancer::update)).
///
/// ```
/// use longlink_rpc::{Balancer, Client};
///
/// let balancer = Balancer::new(["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"].map(|a| (a.to_owned(), Client::new(a))));
/// // The same key always lands on the same instance.
/// assert_eq!(balancer.addr_for_key(b"user:42"), balancer.addr_for_key(b"user:42"));
/// // Instances come and go (membership): clients of addresses that stay are kept.
/// balancer.update(["10.0.0.1:7000", "10.0.0.4:7000"], |addr| Client::new(addr));
/// assert_eq!(balancer.len(), 2);
/// ```
#[derive(Clone)]
pub struct Balancer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.ring();
        f.debug_struct("Balancer")
            .field(
                "targets",
                &ring.targets.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .field("failovers", &self.failovers())
            .finish()
    }
}

impl Balancer {
    /// A balancer over `(address, client)` pairs; the address names the instance on the
    /// ring. It may be empty: calls then fail with [`RpcError::Unavailable`] until
    /// [`update`](Balancer::update) gives it instances.
    pub fn new(targets: impl IntoIterator<Item = (String, Client)>) -> Balancer {
        Balancer {
            shared: Arc::new(Shared {
                ring: RwLock::new(Arc::new(Ring::new(targets.into_iter().collect()))),
                failovers: AtomicU64::new(0),
            }),
        }
    }

    /// A balancer over `addrs`, with a client for each made by `make` (for example
    /// `|addr| Client::builder(addr).default_timeout(..).build()`).
    pub fn from_addrs<A: Into<String>>(
        addrs: impl IntoIterator<Item = A>,
        make: impl Fn(&str) -> Client,
    ) -> Balancer {
        Balancer::new(addrs.into_iter().map(|a| {
            let addr: String = a.into();
            let client = make(&addr);
            (addr, client)
        }))
    }

    /// Replaces the instances with `addrs`: an address already known keeps its client
    /// (and its connections); a new one gets a client from `make`; one no longer listed is
    /// dropped (its connections close once calls in flight on it finish).
    pub fn update<A: AsRef<str>>(
        &self,
        addrs: impl IntoIterator<Item = A>,
        make: impl Fn(&str) -> Client,
    ) {
        let old = self.ring();
        let mut targets: Vec<(String, Client)> = Vec::new();
        for addr in addrs {
            let addr = addr.as_ref();
            if targets.iter().any(|(a, _)| a == addr) {
                continue;
            }
            let client = old
                .targets
                .iter()
                .find(|(a, _)| a == addr)
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| make(addr));
            targets.push((addr.to_owned(), client));
        }
        if targets
            .iter()
            .map(|(a, _)| a)
            .eq(old.targets.iter().map(|(a, _)| a))
        {
            return; // the same set: keep the ring
        }
        *self.shared.ring.write() = Arc::new(Ring::new(targets));
    }

    fn ring(&self) -> Arc<Ring> {
        Arc::clone(&self.shared.ring.read())
    }

    /// Instances now.
    pub fn len(&self) -> usize {
        self.ring().targets.len()
    }

    /// Whether it has no instance.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls that went to another instance after the first proved it did not run them.
    pub fn failovers(&self) -> u64 {
        self.shared.failovers.load(Ordering::Relaxed)
    }

    /// The address of the instance that owns `key` (`None` without instances).
    pub fn addr_for_key(&self, key: &[u8]) -> Option<String> {
        let ring = self.ring();
        let index = *ring.by_key(stable_hash(key)).as_slice().first()?;
        Some(ring.targets[index].0.clone())
    }

    /// The client of the instance that owns `key` (`None` without instances).
    pub fn for_key(&self, key: &[u8]) -> Option<Client> {
        let ring = self.ring();
        let index = *ring.by_key(stable_hash(key)).as_slice().first()?;
        Some(ring.targets[index].1.clone())
    }

    /// Of two instances picked at random, the one with fewer calls in flight (`None`
    /// without instances).
    pub fn least_loaded(&self) -> Option<Client> {
        let ring = self.ring();
        if ring.targets.is_empty() {
            return None;
        }
        Some(ring.targets[ring.least_loaded()].1.clone())
    }

    /// Calls the instance that owns `key`; the next ones on the ring if it fails without
    /// running the call.
    pub async fn call_by_key(
        &self,
        key: &[u8],
        method: u32,
        body: impl Into<Bytes>,
    ) -> Result<Bytes, RpcError> {
        self.call_with(method, body.into(), None, Some(stable_hash(key)), false)
            .await
    }

    /// Calls the less loaded of two instances; another one if it fails without running the
    /// call.
    pub async fn call(&self, method: u32, body: impl Into<Bytes>) -> Result<Bytes, RpcError> {
        self.call_with(method, body.into(), None, None, false).await
    }

    /// The call behind every other: `key_hash` picks the ring order (none: least loaded
    /// first); the first instance's default timeout applies when `deadline` is none, to the
    /// whole call.
    ///
    /// Failover is a retry like any other ([`RetryPolicy`](crate::RetryPolicy), of the
    /// first instance's client): attempt n goes to the n-th instance in that order (at most
    /// three distinct ones, then round again), when the error allows it — any error that
    /// proves the call did not run there, except a request too large or a protocol
    /// mismatch; for an idempotent call also one that may have run — and within the
    /// deadline. A retry spends the budget of the instance it goes to, unless the failed
    /// attempt reached no server.
    pub(crate) async fn call_with(
        &self,
        method: u32,
        body: Bytes,
        deadline: Option<Instant>,
        key_hash: Option<u64>,
        idempotent: bool,
    ) -> Result<Bytes, RpcError> {
        let ring = self.ring();
        let tries = match key_hash {
            Some(h) => ring.by_key(h),
            None => ring.by_load(),
        };
        let Some(&first) = tries.as_slice().first() else {
            return Err(RpcError::Unavailable {
                reason: "no instance of the service is known".into(),
            });
        };
        let mut clients = [&ring.targets[first].1; MAX_TRIES];
        for (slot, &index) in clients.iter_mut().zip(tries.as_slice()) {
            *slot = &ring.targets[index].1;
        }
        let targets = &clients[..tries.len];
        let deadline = targets[0].deadline_or_default(deadline);
        attempts::call(
            targets,
            method,
            crate::Metadata::new(),
            body,
            deadline,
            idempotent,
            Some(&self.shared.failovers),
        )
        .await
    }

    /// Every instance: (address, client).
    pub fn targets(&self) -> Vec<(String, Client)> {
        self.ring().targets.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> Ring {
        Ring::new(
            (0..n)
                .map(|i| {
                    let addr = format!("10.0.0.{i}:7000");
                    (addr.clone(), Client::new(addr))
                })
                .collect(),
        )
    }

    fn owner(ring: &Ring, key: &str) -> String {
        let index = ring.by_key(stable_hash(key.as_bytes())).as_slice()[0];
        ring.targets[index].0.clone()
    }

    #[test]
    fn keys_spread_evenly_and_adding_an_instance_moves_only_its_share() {
        let four = ring(4);
        let five = ring(5);
        let mut counts = std::collections::HashMap::<String, usize>::new();
        let mut moved = 0;
        let keys = 20_000;
        for k in 0..keys {
            let key = format!("user:{k}");
            *counts.entry(owner(&four, &key)).or_default() += 1;
            if owner(&four, &key) != owner(&five, &key) {
                moved += 1;
            }
        }
        for c in counts.values() {
            assert!((3_500..6_500).contains(c), "uneven spread: {counts:?}");
        }
        // Ideal: 1/5 of the keys move to the new instance.
        assert!(
            (2_500..5_500).contains(&moved),
            "{moved} of {keys} keys moved"
        );
    }

    #[test]
    fn failover_order_visits_distinct_instances_owner_first() {
        let ring = ring(4);
        let h = stable_hash(b"user:42");
        let order = ring.by_key(h).as_slice().to_vec();
        assert_eq!(order.len(), MAX_TRIES);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), MAX_TRIES, "distinct instances: {order:?}");
        assert_eq!(ring.targets[order[0]].0, owner(&ring, "user:42"));
    }

    #[test]
    fn stable_hash_is_fixed_across_builds() {
        // Golden values: every member of a cluster must place keys identically.
        assert_eq!(stable_hash(b""), 17665956581633026203);
        assert_eq!(stable_hash(b"user:42"), 15459934360431365172);
    }

    #[test]
    fn update_keeps_the_clients_of_addresses_that_stay() {
        let b = Balancer::from_addrs(["a:1", "b:1"], |a| Client::new(a));
        let a_before = b.targets()[0].1.clone();
        b.update(["b:1", "a:1", "c:1"], |a| Client::new(a));
        let after = b.targets();
        assert_eq!(after.len(), 3);
        let a_after = &after.iter().find(|(a, _)| a == "a:1").unwrap().1;
        assert!(a_after.same_target(&a_before));
        b.update(Vec::<String>::new(), |a| Client::new(a));
        assert!(b.is_empty());
    }
}
