//! Connections per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

#[derive(Debug)]
pub(crate) struct IpLimit {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// Held by a connection; gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct IpSlot {
    limit: Arc<IpLimit>,
    ip: IpAddr,
}

impl IpLimit {
    pub(crate) fn new(max: usize) -> Arc<IpLimit> {
        Arc::new(IpLimit {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip`, if it has fewer than the limit.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = self.counts.lock();
        let n = counts.entry(ip).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            limit: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.limit.counts.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_per_address_and_given_back() {
        let limit = IpLimit::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let one = limit.admit(a).unwrap();
        let _two = limit.admit(a).unwrap();
        assert!(limit.admit(a).is_none());
        assert!(limit.admit(b).is_some());
        drop(one);
        assert!(limit.admit(a).is_some());
    }
}
