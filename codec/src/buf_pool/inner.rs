//! The shared state of a pool and its get/put path.
//!
//! Layout: per size class, one bounded shared free list behind a short `std::sync::Mutex`;
//! in front of it, per thread, a small cache (a "magazine", see
//! [`thread_cache`](super::thread_cache)) that the owning thread uses without any atomic
//! read-modify-write. A get pops from the thread's cache; when that is empty it refills half
//! a magazine from the shared list under one lock. A put pushes to the thread's cache; when
//! that is full it moves the coldest half to the shared list under one lock. So the lock is
//! taken at most once per half a magazine of operations, and two threads ping-ponging
//! buffers mostly never meet.
//!
//! Every buffer the pool keeps has exactly its class's capacity, so bytes are counted as
//! buffers × class size and the bounds are exact.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::BytesMut;

use super::MAX_SIZE_CLASSES;
use super::stats::{BufPoolStats, ThreadCounters, bump};
use super::thread_cache::{Entry, with_entry};

/// Class index for a buffer that belongs to no class (bigger than the largest one).
pub(super) const OVERSIZE: u8 = u8::MAX;
/// Class index of a handle whose buffer was taken out with `into_inner`.
pub(super) const DETACHED: u8 = u8::MAX - 1;
/// Most buffers one thread caches per class, whatever the byte budget says.
const MAX_THREAD_CACHE_LEN: usize = 64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) struct Inner {
    id: u64,
    me: Weak<Inner>,
    /// The class sizes, compact, for the class lookup on every get.
    sizes: [usize; MAX_SIZE_CLASSES],
    classes: Box<[Class]>,
    registry: Mutex<Registry>,
    /// Gets and puts made while the calling thread was exiting (its cache already gone).
    bypassed_gets: AtomicU64,
    bypassed_drops: AtomicU64,
    /// Buffers freed from the shared lists by `trim`.
    trimmed_shared: AtomicU64,
}

/// Counters of the threads using the pool: live ones, and the totals of those that exited.
#[derive(Default)]
struct Registry {
    live: Vec<Arc<ThreadCounters>>,
    retired: BufPoolStats,
}

struct Class {
    size: usize,
    /// Most buffers this class keeps in each thread's cache.
    thread_cache_len: usize,
    /// Most buffers the shared list keeps.
    shared_len: usize,
    free: Mutex<Vec<BytesMut>>,
    /// Most buffers `free` has held; written only under its lock.
    peak_len: AtomicU64,
}

pub(super) struct Config {
    pub(super) sizes: Vec<usize>,
    pub(super) thread_cache_bytes: usize,
    pub(super) shared_bytes_per_class: usize,
}

/// Moves `buf` into `slot`, which holds an empty `BytesMut` (no allocation behind it):
/// forgetting that one skips a call to its destructor on the hot path and leaks nothing.
#[inline]
fn put_in(slot: &mut BytesMut, buf: BytesMut) {
    debug_assert_eq!(slot.capacity(), 0);
    std::mem::forget(std::mem::replace(slot, buf));
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock still guards valid data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    pub(super) fn new(config: Config) -> Arc<Inner> {
        let classes: Box<[Class]> = config
            .sizes
            .iter()
            .map(|&size| Class {
                size,
                thread_cache_len: (config.thread_cache_bytes / size).min(MAX_THREAD_CACHE_LEN),
                shared_len: config.shared_bytes_per_class / size,
                free: Mutex::new(Vec::new()),
                peak_len: AtomicU64::new(0),
            })
            .collect();
        let mut sizes = [usize::MAX; MAX_SIZE_CLASSES];
        sizes[..config.sizes.len()].copy_from_slice(&config.sizes);
        Arc::new_cyclic(|me| Inner {
            id: NEXT_ID.fetch_add(1, Relaxed),
            me: me.clone(),
            sizes,
            classes,
            registry: Mutex::new(Registry::default()),
            bypassed_gets: AtomicU64::new(0),
            bypassed_drops: AtomicU64::new(0),
            trimmed_shared: AtomicU64::new(0),
        })
    }

    #[inline]
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn weak(&self) -> Weak<Inner> {
        self.me.clone()
    }

    pub(super) fn new_lists(&self) -> [Vec<BytesMut>; MAX_SIZE_CLASSES] {
        std::array::from_fn(|i| {
            Vec::with_capacity(self.classes.get(i).map_or(0, |c| c.thread_cache_len))
        })
    }

    pub(super) fn register_thread(&self) -> Arc<ThreadCounters> {
        let counters = Arc::new(ThreadCounters::new());
        lock(&self.registry).live.push(Arc::clone(&counters));
        counters
    }

    /// A thread exited (its cached buffers were freed and counted as trimmed): fold its
    /// counters into the totals. Its peak stays part of the high-water bound.
    pub(super) fn retire(&self, counters: &Arc<ThreadCounters>) {
        let mut registry = lock(&self.registry);
        registry.live.retain(|c| !Arc::ptr_eq(c, counters));
        let sizes = self.classes.iter().map(|c| c.size);
        counters.add_to(&mut registry.retired, sizes);
    }

    pub(super) fn class_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.classes.iter().map(|c| c.size)
    }

    /// The smallest class that holds `capacity` bytes, or [`OVERSIZE`].
    #[inline]
    fn class_for(&self, capacity: usize) -> u8 {
        // Unused slots hold usize::MAX, so `position` stops within the real classes unless
        // the request is larger than all of them.
        match self.sizes[..self.classes.len()]
            .iter()
            .position(|&size| size >= capacity)
        {
            Some(i) => i as u8,
            None => OVERSIZE,
        }
    }

    pub(super) fn class_size(&self, class: u8) -> Option<usize> {
        self.classes.get(class as usize).map(|c| c.size)
    }

    /// Puts a buffer of at least `capacity` bytes into `slot` (an empty `BytesMut` in the
    /// handle being built) and returns the class it must go back to.
    ///
    /// The buffer is written straight into the handle, moved once from the cache's memory:
    /// returning it instead made the compiler copy the just-written 32 bytes through several
    /// temporaries, each copy stalling on store forwarding (34 ns vs 12 ns per get+put).
    #[inline]
    pub(super) fn get_into(&self, slot: &mut BytesMut, capacity: usize) -> u8 {
        let class = self.class_for(capacity);
        let hit = with_entry(
            self,
            |entry| {
                if class == OVERSIZE {
                    bump(&entry.counters.misses, 1);
                    return false;
                }
                let i = class as usize;
                match entry.lists[i].pop() {
                    Some(buf) => {
                        put_in(slot, buf);
                        bump(&entry.counters.classes[i].pops, 1);
                        true
                    }
                    None => self.refill(entry, i, slot),
                }
            },
            || {
                self.bypassed_gets.fetch_add(1, Relaxed);
                false
            },
        );
        if !hit {
            put_in(slot, self.allocate(capacity, class));
        }
        class
    }

    #[cold]
    fn allocate(&self, capacity: usize, class: u8) -> BytesMut {
        match self.classes.get(class as usize) {
            Some(c) => BytesMut::with_capacity(c.size),
            None => BytesMut::with_capacity(capacity),
        }
    }

    /// Moves half a magazine (at least one buffer) from the shared list into the thread's
    /// cache under one lock and pops one into `slot`; with the shared list empty, counts a
    /// miss and returns `false` (the caller allocates).
    #[cold]
    fn refill(&self, entry: &mut Entry, class: usize, slot: &mut BytesMut) -> bool {
        let c = &self.classes[class];
        let counters = &entry.counters.classes[class];
        let list = &mut entry.lists[class];
        let mut free = lock(&c.free);
        // Take the most recently returned buffers: the warmest in cache.
        let n = free.len().min((c.thread_cache_len / 2).max(1));
        let at = free.len() - n;
        list.extend(free.drain(at..));
        drop(free);
        bump(&counters.refilled, n as u64);
        match list.pop() {
            Some(buf) => {
                put_in(slot, buf);
                bump(&counters.pops, 1);
                true
            }
            None => {
                bump(&entry.counters.misses, 1);
                false
            }
        }
    }

    /// Takes the handle's buffer back (or lets it go) when the handle drops. Works on the
    /// buffer in place and moves it once, into the cache.
    #[inline]
    pub(super) fn put(&self, buf: &mut BytesMut, class: u8) {
        let Some(c) = self.classes.get(class as usize) else {
            // OVERSIZE or DETACHED: never kept.
            self.count_dropped();
            return;
        };
        // `capacity()` reads only the capacity field: checking it before touching `len`
        // keeps the move below from waiting on a just-written length.
        if buf.capacity() != c.size {
            // A buffer that was split keeps only part of its capacity; if every split-off
            // part has been dropped, `try_reclaim` gets the whole allocation back without
            // allocating. One that is still shared, or that grew, is let go.
            buf.clear();
            if !(buf.try_reclaim(c.size) && buf.capacity() == c.size) {
                self.count_dropped();
                return;
            }
        }
        let i = class as usize;
        with_entry(
            self,
            |entry| {
                let list = &mut entry.lists[i];
                if list.len() < c.thread_cache_len {
                    list.push(std::mem::take(buf));
                    if let Some(last) = list.last_mut() {
                        last.clear();
                    }
                    bump(&entry.counters.classes[i].pushes, 1);
                    if list.len() > entry.peak_len[i] {
                        entry.peak_len[i] = list.len();
                        entry.counters.classes[i]
                            .peak_len
                            .store(list.len() as u64, Relaxed);
                    }
                } else {
                    let mut buf = std::mem::take(buf);
                    buf.clear();
                    self.spill(entry, i, buf);
                }
            },
            || {
                self.bypassed_drops.fetch_add(1, Relaxed);
            },
        );
    }

    #[cold]
    fn count_dropped(&self) {
        with_entry(
            self,
            |entry| bump(&entry.counters.dropped, 1),
            || {
                self.bypassed_drops.fetch_add(1, Relaxed);
            },
        );
    }

    /// The thread cache is full: move its coldest half to the shared list under one lock and
    /// keep the incoming (warm) buffer here, so the next puts stay thread-local. With a cache
    /// too small to halve, the incoming buffer itself goes to the shared list; with the shared
    /// list full, it is let go.
    #[cold]
    fn spill(&self, entry: &mut Entry, class: usize, buf: BytesMut) {
        let c = &self.classes[class];
        let counters = &entry.counters.classes[class];
        let list = &mut entry.lists[class];
        let mut free = lock(&c.free);
        let room = c.shared_len.saturating_sub(free.len());
        if room == 0 {
            drop(free);
            bump(&entry.counters.dropped, 1);
            return;
        }
        let n = (list.len() / 2).min(room);
        free.extend(list.drain(..n));
        if n == 0 {
            free.push(buf);
            bump(&counters.returned_shared, 1);
        } else {
            list.push(buf);
            bump(&counters.pushes, 1);
        }
        if free.len() as u64 > c.peak_len.load(Relaxed) {
            c.peak_len.store(free.len() as u64, Relaxed);
        }
        drop(free);
        bump(&counters.spilled, n as u64);
    }

    pub(super) fn stats(&self) -> BufPoolStats {
        let registry = lock(&self.registry);
        let mut stats = registry.retired;
        for counters in registry.live.iter() {
            counters.add_to(&mut stats, self.class_sizes());
        }
        drop(registry);
        stats.misses += self.bypassed_gets.load(Relaxed);
        stats.gets = stats.hits + stats.misses;
        stats.dropped += self.bypassed_drops.load(Relaxed);
        stats.trimmed += self.trimmed_shared.load(Relaxed);
        for c in self.classes.iter() {
            let free = lock(&c.free).len() as u64;
            stats.retained_buffers += free;
            stats.retained_bytes += free * c.size as u64;
            stats.high_water_bytes += c.peak_len.load(Relaxed) * c.size as u64;
        }
        stats
    }

    /// Frees every buffer of the shared lists and of the calling thread's cache.
    pub(super) fn trim(&self) -> u64 {
        let mut freed_bytes = 0;
        let mut freed_shared = 0;
        for c in self.classes.iter() {
            let mut free = lock(&c.free);
            freed_shared += free.len() as u64;
            freed_bytes += (free.len() * c.size) as u64;
            free.clear();
            free.shrink_to_fit();
        }
        self.trimmed_shared.fetch_add(freed_shared, Relaxed);
        with_entry(
            self,
            |entry| {
                for ((list, counters), c) in entry
                    .lists
                    .iter_mut()
                    .zip(entry.counters.classes.iter())
                    .zip(self.classes.iter())
                {
                    bump(&counters.trimmed, list.len() as u64);
                    freed_bytes += (list.len() * c.size) as u64;
                    list.clear();
                }
            },
            || (),
        );
        freed_bytes
    }
}
