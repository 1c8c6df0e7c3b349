//! The shared state of a pool and its acquire/release path.
//!
//! Layout: per size class, one bounded shared free list behind a short `std::sync::Mutex`;
//! in front of it, per thread, a small cache (a "magazine") that the owning thread uses
//! without any atomic read-modify-write. A get pops from the thread's cache; when that is
//! empty it refills half a magazine from the shared list under one lock. A put pushes to the
//! thread's cache; when that is full it spills the incoming buffer and the coldest half of the
//! cache to the shared list under one lock. So the lock is taken at most once per half a
//! magazine of operations, and two threads ping-ponging buffers mostly never meet.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::BytesMut;
use thread_local::ThreadLocal;

use super::stats::{BufPoolStats, ThreadCounters, bump};

/// Class index for a buffer that belongs to no class (bigger than the largest one).
pub(super) const OVERSIZE: u8 = u8::MAX;
/// Class index of a handle whose buffer was taken out with `into_inner`.
pub(super) const DETACHED: u8 = u8::MAX - 1;
/// Most buffers one thread caches per class, whatever the byte budget says.
const MAX_THREAD_CACHE_LEN: usize = 64;

pub(super) struct Inner {
    classes: Box<[Class]>,
    local: ThreadLocal<RefCell<LocalCache>>,
    /// Every thread's counters, so `stats()` can sum them. Grows by one per thread that
    /// ever touched the pool (thread slots are reused by `thread_local` after a thread exits).
    counters: Mutex<Vec<Arc<ThreadCounters>>>,
    trimmed: AtomicU64,
}

struct Class {
    size: usize,
    /// Most buffers this class keeps in each thread's cache.
    thread_cache_len: usize,
    /// Most buffers the shared list keeps.
    shared_len: usize,
    free: Mutex<Vec<BytesMut>>,
    /// Bytes in `free`; written only under its lock.
    free_bytes: AtomicU64,
    /// Peak of `free_bytes`; written only under its lock.
    peak_bytes: AtomicU64,
}

struct LocalCache {
    lists: Box<[Vec<BytesMut>]>,
    counters: Arc<ThreadCounters>,
}

pub(super) struct Config {
    pub(super) sizes: Vec<usize>,
    pub(super) thread_cache_bytes: usize,
    pub(super) shared_bytes_per_class: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock still guards valid data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    pub(super) fn new(config: Config) -> Inner {
        let classes = config
            .sizes
            .iter()
            .map(|&size| Class {
                size,
                thread_cache_len: (config.thread_cache_bytes / size).min(MAX_THREAD_CACHE_LEN),
                shared_len: config.shared_bytes_per_class / size,
                free: Mutex::new(Vec::new()),
                free_bytes: AtomicU64::new(0),
                peak_bytes: AtomicU64::new(0),
            })
            .collect();
        Inner {
            classes,
            local: ThreadLocal::new(),
            counters: Mutex::new(Vec::new()),
            trimmed: AtomicU64::new(0),
        }
    }

    pub(super) fn class_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.classes.iter().map(|c| c.size)
    }

    /// The smallest class that holds `capacity` bytes, or [`OVERSIZE`].
    #[inline]
    fn class_for(&self, capacity: usize) -> u8 {
        match self.classes.iter().position(|c| c.size >= capacity) {
            Some(i) => i as u8,
            None => OVERSIZE,
        }
    }

    pub(super) fn class_size(&self, class: u8) -> Option<usize> {
        self.classes.get(class as usize).map(|c| c.size)
    }

    #[inline]
    fn local(&self) -> &RefCell<LocalCache> {
        self.local.get_or(|| {
            let counters = Arc::new(ThreadCounters::default());
            lock(&self.counters).push(Arc::clone(&counters));
            RefCell::new(LocalCache {
                lists: self
                    .classes
                    .iter()
                    .map(|c| Vec::with_capacity(c.thread_cache_len))
                    .collect(),
                counters,
            })
        })
    }

    /// Hands out a buffer of at least `capacity` bytes and the class it must go back to.
    #[inline]
    pub(super) fn get(&self, capacity: usize) -> (BytesMut, u8) {
        let class = self.class_for(capacity);
        let mut local = self.local().borrow_mut();
        let local = &mut *local;
        bump(&local.counters.gets, 1);
        if class == OVERSIZE {
            bump(&local.counters.misses, 1);
            return (BytesMut::with_capacity(capacity), OVERSIZE);
        }
        let c = &self.classes[class as usize];
        let list = &mut local.lists[class as usize];
        if list.is_empty() && c.shared_len > 0 {
            // Refill half a magazine (at least one buffer) under one lock; take the most
            // recently returned buffers, which are the warmest in cache.
            let mut free = lock(&c.free);
            let n = free.len().min((c.thread_cache_len / 2).max(1));
            let at = free.len() - n;
            let mut moved = 0u64;
            for buf in free.drain(at..) {
                moved += buf.capacity() as u64;
                list.push(buf);
            }
            c.free_bytes
                .store(c.free_bytes.load(Relaxed) - moved, Relaxed);
            drop(free);
            local.counters.cache_in(moved, n as u64);
        }
        match list.pop() {
            Some(buf) => {
                bump(&local.counters.hits, 1);
                local.counters.cache_out(buf.capacity() as u64, 1);
                (buf, class)
            }
            None => {
                bump(&local.counters.misses, 1);
                (BytesMut::with_capacity(c.size), class)
            }
        }
    }

    /// Takes a buffer back (or lets it go) when its handle drops.
    #[inline]
    pub(super) fn put(&self, mut buf: BytesMut, class: u8) {
        let mut local = self.local().borrow_mut();
        let local = &mut *local;
        let Some(c) = self.classes.get(class as usize) else {
            // OVERSIZE or DETACHED: never kept.
            bump(&local.counters.dropped, 1);
            return;
        };
        buf.clear();
        // A buffer that was split keeps only part of its capacity; if every split-off part
        // has been dropped, `try_reclaim` gets the whole allocation back without allocating.
        // One that is still shared, or that grew to twice its class or more, is let go.
        let fits =
            (buf.capacity() >= c.size || buf.try_reclaim(c.size)) && buf.capacity() < c.size * 2;
        if !fits {
            bump(&local.counters.dropped, 1);
            return;
        }
        let list = &mut local.lists[class as usize];
        if list.len() < c.thread_cache_len {
            local.counters.cache_in(buf.capacity() as u64, 1);
            list.push(buf);
            bump(&local.counters.returned, 1);
            return;
        }
        // The thread cache is full: move its coldest half to the shared list under one lock
        // and keep the incoming (warm) buffer here, so the next puts stay thread-local. With
        // a cache too small to halve, the incoming buffer itself goes to the shared list.
        let mut free = lock(&c.free);
        let room = c.shared_len.saturating_sub(free.len());
        if room == 0 {
            drop(free);
            bump(&local.counters.dropped, 1);
            return;
        }
        let n = (list.len() / 2).min(room);
        let mut moved = 0u64;
        for old in list.drain(..n) {
            moved += old.capacity() as u64;
            free.push(old);
        }
        local.counters.cache_out(moved, n as u64);
        if n == 0 {
            moved += buf.capacity() as u64;
            free.push(buf);
        } else {
            local.counters.cache_in(buf.capacity() as u64, 1);
            list.push(buf);
        }
        let now = c.free_bytes.load(Relaxed) + moved;
        c.free_bytes.store(now, Relaxed);
        if now > c.peak_bytes.load(Relaxed) {
            c.peak_bytes.store(now, Relaxed);
        }
        drop(free);
        bump(&local.counters.returned, 1);
    }

    pub(super) fn stats(&self) -> BufPoolStats {
        let mut stats = BufPoolStats {
            trimmed: self.trimmed.load(Relaxed),
            ..BufPoolStats::default()
        };
        for c in self.classes.iter() {
            let free = lock(&c.free);
            stats.retained_bytes += c.free_bytes.load(Relaxed);
            stats.retained_buffers += free.len() as u64;
            stats.high_water_bytes += c.peak_bytes.load(Relaxed);
        }
        for counters in lock(&self.counters).iter() {
            counters.add_to(&mut stats);
        }
        stats
    }

    /// Frees every buffer of the shared lists and of the calling thread's cache.
    pub(super) fn trim(&self) -> u64 {
        let mut freed_bytes = 0;
        let mut freed = 0;
        for c in self.classes.iter() {
            let mut free = lock(&c.free);
            freed += free.len() as u64;
            freed_bytes += c.free_bytes.load(Relaxed);
            free.clear();
            free.shrink_to_fit();
            c.free_bytes.store(0, Relaxed);
        }
        let mut local = self.local().borrow_mut();
        let local = &mut *local;
        for list in local.lists.iter_mut() {
            let bytes: u64 = list.iter().map(|b| b.capacity() as u64).sum();
            local.counters.cache_out(bytes, list.len() as u64);
            freed += list.len() as u64;
            freed_bytes += bytes;
            list.clear();
        }
        self.trimmed.fetch_add(freed, Relaxed);
        freed_bytes
    }
}
