//! Per-thread caches of every pool, in one `thread_local!`.
//!
//! A thread keeps one [`Entry`] per pool it has used, found by the pool's id; the global
//! pool's entry is almost always the first, so the lookup is one compare. std's thread-local
//! storage is a few instructions to reach, which is what makes a get+put cheaper than a
//! malloc+free.
//!
//! An entry dies with its thread (its buffers are freed and its counters folded into the
//! pool's totals) or, for a pool that was dropped, the next time the thread meets a pool it
//! has no entry for. So nothing is kept for a pool that no longer exists beyond that point,
//! and nothing outlives its thread.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use bytes::BytesMut;

use super::MAX_SIZE_CLASSES;
use super::inner::Inner;
use super::stats::ThreadCounters;

pub(super) struct Entry {
    id: u64,
    pool: Weak<Inner>,
    /// One LIFO list per class (inline, so reaching a list is one load fewer).
    pub(super) lists: [Vec<BytesMut>; MAX_SIZE_CLASSES],
    /// Most buffers each list has held (a plain copy of the published peak, so the put
    /// path only reads it).
    pub(super) peak_len: [usize; MAX_SIZE_CLASSES],
    pub(super) counters: Arc<ThreadCounters>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // The thread is exiting (or the pool is gone): the cached buffers are freed now.
        for (list, c) in self.lists.iter().zip(self.counters.classes.iter()) {
            super::stats::bump(&c.trimmed, list.len() as u64);
        }
        if let Some(pool) = self.pool.upgrade() {
            pool.retire(&self.counters);
        }
    }
}

struct Caches {
    entries: Vec<Entry>,
}

thread_local! {
    static CACHES: RefCell<Caches> = const { RefCell::new(Caches { entries: Vec::new() }) };
}

/// Runs `f` with this thread's entry for `pool`, creating it on first use; runs
/// `unavailable` instead when the thread is exiting and its caches are gone (or, which the
/// pool's code never does, when they are already borrowed).
///
/// Both return `R` itself, not an `Option<R>`: wrapping a `BytesMut` in layers of
/// `Option`/`Result` makes the compiler copy it between them, and copying a just-written
/// `BytesMut` stalls on store forwarding (it doubled a get+put in measurements). For the
/// same reason `f` should capture references, not buffers.
#[inline]
pub(super) fn with_entry<R>(
    pool: &Inner,
    f: impl FnOnce(&mut Entry) -> R,
    unavailable: impl FnOnce() -> R,
) -> R {
    let mut unavailable = Some(unavailable);
    let result = CACHES.try_with(|caches| match caches.try_borrow_mut() {
        Ok(mut caches) => {
            let entries = &mut caches.entries;
            let index = match entries.first() {
                Some(e) if e.id == pool.id() => 0,
                _ => find_or_create(entries, pool),
            };
            f(&mut entries[index])
        }
        Err(_) => (unavailable.take().expect("called once"))(),
    });
    match result {
        Ok(r) => r,
        Err(_) => (unavailable.take().expect("called once"))(),
    }
}

#[cold]
fn find_or_create(entries: &mut Vec<Entry>, pool: &Inner) -> usize {
    if let Some(i) = entries.iter().position(|e| e.id == pool.id()) {
        return i;
    }
    // Meeting a new pool is rare: drop the entries of pools that no longer exist first.
    entries.retain(|e| e.pool.strong_count() > 0);
    let counters = pool.register_thread();
    entries.push(Entry {
        id: pool.id(),
        pool: pool.weak(),
        lists: pool.new_lists(),
        peak_len: [0; MAX_SIZE_CLASSES],
        counters,
    });
    entries.len() - 1
}
