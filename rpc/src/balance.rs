//! Spreading calls over several instances of a service: by key on a consistent-hash ring
//! (the same key reaches the same instance, and adding an instance moves only its share of
//! keys), or to the less loaded of two instances picked at random ("power of two choices").

use std::fmt;

use bytes::Bytes;

use crate::{Client, RpcError};

/// Virtual nodes per instance on the ring: enough for an even spread, few enough to build
/// and search quickly.
const VNODES: usize = 128;

/// 64-bit FNV-1a with a splitmix64 finish: stable across processes and Rust versions (the
/// ring must agree between every caller of a cluster).
fn stable_hash(bytes: &[u8]) -> u64 {
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

/// Clients of several instances of one service.
///
/// ```
/// use longlink_rpc::{Balancer, Client};
///
/// let balancer = Balancer::new(["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"].map(|a| (a.to_owned(), Client::new(a))));
/// // The same key always lands on the same instance.
/// assert_eq!(balancer.addr_for_key(b"user:42"), balancer.addr_for_key(b"user:42"));
/// ```
pub struct Balancer {
    targets: Vec<(String, Client)>,
    /// (point on the ring, index into `targets`), sorted.
    ring: Vec<(u64, usize)>,
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field(
                "targets",
                &self.targets.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Balancer {
    /// A balancer over `(address, client)` pairs; the address names the instance on the
    /// ring.
    ///
    /// # Panics
    /// If `targets` is empty.
    pub fn new(targets: impl IntoIterator<Item = (String, Client)>) -> Balancer {
        let targets: Vec<(String, Client)> = targets.into_iter().collect();
        assert!(!targets.is_empty(), "a Balancer needs at least one target");
        let mut ring: Vec<(u64, usize)> = targets
            .iter()
            .enumerate()
            .flat_map(|(i, (addr, _))| {
                (0..VNODES).map(move |v| (stable_hash(format!("{addr}#{v}").as_bytes()), i))
            })
            .collect();
        ring.sort_unstable();
        Balancer { targets, ring }
    }

    fn index_for_key(&self, key: &[u8]) -> usize {
        let h = stable_hash(key);
        let at = self.ring.partition_point(|(point, _)| *point < h);
        self.ring[at % self.ring.len()].1
    }

    /// The address of the instance that owns `key`.
    pub fn addr_for_key(&self, key: &[u8]) -> &str {
        &self.targets[self.index_for_key(key)].0
    }

    /// The client of the instance that owns `key`.
    pub fn for_key(&self, key: &[u8]) -> &Client {
        &self.targets[self.index_for_key(key)].1
    }

    /// Of two instances picked at random, the one with fewer calls in flight.
    pub fn least_loaded(&self) -> &Client {
        let n = self.targets.len();
        if n == 1 {
            return &self.targets[0].1;
        }
        let a = fastrand::usize(..n);
        let b = (a + 1 + fastrand::usize(..n - 1)) % n;
        let (ca, cb) = (&self.targets[a].1, &self.targets[b].1);
        if cb.load() < ca.load() { cb } else { ca }
    }

    /// Calls the instance that owns `key`.
    pub async fn call_by_key(
        &self,
        key: &[u8],
        method: u32,
        body: impl Into<Bytes>,
    ) -> Result<Bytes, RpcError> {
        self.for_key(key).call(method, body).await
    }

    /// Calls the less loaded of two instances.
    pub async fn call(&self, method: u32, body: impl Into<Bytes>) -> Result<Bytes, RpcError> {
        self.least_loaded().call(method, body).await
    }

    /// Every client.
    pub fn targets(&self) -> impl Iterator<Item = (&str, &Client)> {
        self.targets.iter().map(|(a, c)| (a.as_str(), c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(n: usize) -> Balancer {
        Balancer::new((0..n).map(|i| {
            let addr = format!("10.0.0.{i}:7000");
            (addr.clone(), Client::new(addr))
        }))
    }

    #[test]
    fn keys_spread_evenly_and_adding_an_instance_moves_only_its_share() {
        let four = balancer(4);
        let five = balancer(5);
        let mut counts = [0usize; 4];
        let mut moved = 0;
        let keys = 20_000;
        for k in 0..keys {
            let key = format!("user:{k}");
            counts[four.index_for_key(key.as_bytes())] += 1;
            if four.addr_for_key(key.as_bytes()) != five.addr_for_key(key.as_bytes()) {
                moved += 1;
            }
        }
        for c in counts {
            assert!((3_500..6_500).contains(&c), "uneven spread: {counts:?}");
        }
        // Ideal: 1/5 of the keys move to the new instance.
        assert!(
            (2_500..5_500).contains(&moved),
            "{moved} of {keys} keys moved"
        );
    }

    #[test]
    fn stable_hash_is_fixed_across_builds() {
        // Golden values: every member of a cluster must place keys identically.
        assert_eq!(stable_hash(b""), 17665956581633026203);
        assert_eq!(stable_hash(b"user:42"), 15459934360431365172);
    }
}
