//! The ids a client has seen, bounded: at-least-once delivery means duplicates, and the
//! client library drops them.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` message ids seen.
///
/// ```
/// use longlink_push_client::Dedup;
/// let mut seen = Dedup::new(2);
/// assert!(seen.first_time(1));
/// assert!(!seen.first_time(1));
/// assert!(seen.first_time(2) && seen.first_time(3)); // 1 falls out
/// assert!(seen.first_time(1));
/// ```
#[derive(Debug, Clone)]
pub struct Dedup {
    order: VecDeque<u64>,
    set: HashSet<u64>,
    capacity: usize,
}

impl Dedup {
    /// Remembers up to `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Dedup {
        let capacity = capacity.max(1);
        Dedup {
            order: VecDeque::with_capacity(capacity.min(4096)),
            set: HashSet::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    /// `true` the first time `id` is seen (within the window); records it.
    pub fn first_time(&mut self, id: u64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(id);
        true
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// `true` when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}
