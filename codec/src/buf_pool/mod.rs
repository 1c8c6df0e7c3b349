//! A pool of reusable byte buffers in size classes.
//!
//! Long-lived connections read and write all the time; allocating a fresh buffer per frame
//! costs an allocator round trip each time and fragments the heap. [`BufPool`] hands out
//! [`PooledBuf`]s (a [`BytesMut`](bytes::BytesMut) underneath) from size classes — 256 B, 1 KiB, 4 KiB,
//! 16 KiB and 64 KiB by default — and takes them back when the handle drops, from whichever
//! thread drops it.
//!
//! What it keeps is bounded: a few buffers per class per thread, a capped shared free list
//! per class, and nothing that grew past its class. Go's `sync.Pool` kept any buffer it was
//! given, so one huge message pinned a huge buffer forever (golang/go#23199); here a buffer
//! that grew to twice its class or more, or that arrives when its class is full, is freed.
//!
//! # Zero-copy reads
//!
//! Decode by splitting frames off the pooled buffer (`buf.split_to(n).freeze()`): the parts
//! share the buffer's memory. When the handle is dropped after every part is gone, the whole
//! allocation is reclaimed and reused without allocating; if a part is still alive, the
//! handle lets its share go and the memory is freed with the last part.
//!
//! ```
//! use bytes::{Buf, BufMut};
//! use longlink_codec::BufPool;
//!
//! let pool = BufPool::new();
//! let mut buf = pool.get(100); // at least 100 bytes: the 256 B class
//! assert_eq!(buf.capacity(), 256);
//! buf.put_slice(b"hello world");
//! let hello = buf.split_to(5).freeze(); // shares the pooled memory
//! assert_eq!(&hello[..], b"hello");
//! drop(hello);
//! drop(buf); // every part gone: the whole 256 B go back to the pool
//! assert_eq!(pool.stats().returned, 1);
//! ```

mod inner;
mod pooled_buf;
mod stats;
mod thread_cache;

use std::fmt;
use std::sync::{Arc, OnceLock};

pub use pooled_buf::PooledBuf;
pub use stats::BufPoolStats;

use inner::{Config, Inner};

/// Most size classes a pool may have.
pub const MAX_SIZE_CLASSES: usize = 16;

/// The default size classes in bytes.
pub const DEFAULT_SIZE_CLASSES: [usize; 5] = [256, 1024, 4096, 16 * 1024, 64 * 1024];

/// A pool of reusable buffers in size classes. Cheap to clone: clones share one pool.
///
/// Use [`BufPool::global`] in applications, and an explicit pool ([`BufPool::new`] or
/// [`BufPool::builder`]) where its counters must not be shared, as in tests.
///
/// ```
/// use longlink_codec::BufPool;
///
/// let buf = BufPool::global().get(3000);
/// assert!(buf.capacity() >= 3000); // the 4 KiB class
/// ```
#[derive(Clone)]
pub struct BufPool {
    inner: Arc<Inner>,
    /// `true` only for the process-wide pool. Its handles skip the reference count, so
    /// threads sharing the global pool never contend on one counter.
    global: bool,
}

static GLOBAL: OnceLock<BufPool> = OnceLock::new();

impl BufPool {
    /// A pool with the default configuration (see [`Builder`]).
    ///
    /// ```
    /// let pool = longlink_codec::BufPool::new();
    /// assert_eq!(pool.size_classes(), longlink_codec::buf_pool::DEFAULT_SIZE_CLASSES);
    /// ```
    pub fn new() -> BufPool {
        Builder::default().build()
    }

    /// A builder to choose the size classes and how much the pool may keep.
    ///
    /// ```
    /// let pool = longlink_codec::BufPool::builder()
    ///     .size_classes(&[512, 8192])
    ///     .thread_cache_bytes(16 * 1024)
    ///     .shared_bytes_per_class(1 << 20)
    ///     .build();
    /// assert_eq!(pool.get(600).capacity(), 8192);
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The process-wide pool, created with the default configuration on first use.
    ///
    /// ```
    /// use longlink_codec::BufPool;
    /// let a = BufPool::global().get(10);
    /// assert_eq!(a.capacity(), 256);
    /// ```
    pub fn global() -> &'static BufPool {
        GLOBAL.get_or_init(|| BufPool {
            global: true,
            ..BufPool::new()
        })
    }

    /// A buffer with room for at least `capacity` bytes, empty.
    ///
    /// The buffer comes from the smallest class that fits; a request larger than the largest
    /// class is allocated exactly and freed (not kept) when dropped.
    ///
    /// ```
    /// let pool = longlink_codec::BufPool::new();
    /// let buf = pool.get(1024);
    /// assert!(buf.is_empty());
    /// assert_eq!(buf.capacity(), 1024);
    /// assert_eq!(pool.get(1 << 20).capacity(), 1 << 20); // oversize: exact, never kept
    /// ```
    // Not inlined on purpose: returned through a pointer, the handle is built in place.
    #[inline(never)]
    pub fn get(&self, capacity: usize) -> PooledBuf {
        let pool = if self.global {
            None
        } else {
            Some(Arc::clone(&self.inner))
        };
        let mut handle = PooledBuf::new(pool);
        let class = self.inner.get_into(handle.buf_mut(), capacity);
        handle.set_class(class);
        handle
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// let pool = longlink_codec::BufPool::new();
    /// let _buf = pool.get(1);
    /// assert_eq!(pool.stats().gets, 1);
    /// ```
    pub fn stats(&self) -> BufPoolStats {
        self.inner.stats()
    }

    /// Frees the buffers held by the shared free lists and by the calling thread's cache;
    /// returns the bytes freed. Other threads' caches (a few buffers each) are freed when
    /// the pool drops or when those threads reuse them.
    ///
    /// ```
    /// let pool = longlink_codec::BufPool::new();
    /// drop(pool.get(1000));
    /// assert_eq!(pool.trim(), 1024);
    /// assert_eq!(pool.stats().retained_bytes, 0);
    /// ```
    pub fn trim(&self) -> u64 {
        self.inner.trim()
    }

    /// The size classes, ascending.
    ///
    /// ```
    /// let pool = longlink_codec::BufPool::builder().size_classes(&[100, 200]).build();
    /// assert_eq!(pool.size_classes(), vec![100, 200]);
    /// ```
    pub fn size_classes(&self) -> Vec<usize> {
        self.inner.class_sizes().collect()
    }

    /// The global pool's state; only called for handles the global pool handed out, so it
    /// exists.
    #[inline]
    fn global_inner() -> &'static Inner {
        &GLOBAL
            .get()
            .expect("a global handle implies the global pool")
            .inner
    }
}

impl Default for BufPool {
    fn default() -> BufPool {
        BufPool::new()
    }
}

impl fmt::Debug for BufPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("global", &self.global)
            .field("size_classes", &self.size_classes())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Configures a [`BufPool`].
///
/// Defaults: classes [`DEFAULT_SIZE_CLASSES`]; each thread caches up to 64 KiB per class
/// (at most 64 buffers, and none of a class larger than the budget); each class's shared
/// free list keeps up to 2 MiB. The most a pool can hold is therefore
/// `classes × (2 MiB + threads × 64 KiB)`.
#[derive(Debug, Clone)]
pub struct Builder {
    sizes: Vec<usize>,
    thread_cache_bytes: usize,
    shared_bytes_per_class: usize,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            sizes: DEFAULT_SIZE_CLASSES.to_vec(),
            thread_cache_bytes: 64 * 1024,
            shared_bytes_per_class: 2 * 1024 * 1024,
        }
    }
}

impl Builder {
    /// The buffer sizes in bytes, strictly ascending, at most [`MAX_SIZE_CLASSES`] of them.
    ///
    /// # Panics
    /// In [`build`](Builder::build), if the list is empty, not strictly ascending, holds a
    /// zero, or is longer than [`MAX_SIZE_CLASSES`].
    pub fn size_classes(mut self, sizes: &[usize]) -> Builder {
        self.sizes = sizes.to_vec();
        self
    }

    /// Bytes each thread may cache per class (0 turns thread caches off).
    pub fn thread_cache_bytes(mut self, bytes: usize) -> Builder {
        self.thread_cache_bytes = bytes;
        self
    }

    /// Bytes each class's shared free list may hold (0 keeps nothing beyond thread caches).
    pub fn shared_bytes_per_class(mut self, bytes: usize) -> Builder {
        self.shared_bytes_per_class = bytes;
        self
    }

    /// Builds the pool. No buffer is allocated until the first `get`.
    ///
    /// # Panics
    /// If the size classes are invalid (see [`size_classes`](Builder::size_classes)).
    pub fn build(self) -> BufPool {
        assert!(
            !self.sizes.is_empty(),
            "BufPool needs at least one size class"
        );
        assert!(
            self.sizes.len() <= 250,
            "BufPool supports at most 250 size classes"
        );
        assert!(self.sizes[0] > 0, "BufPool size classes must be non-zero");
        assert!(
            self.sizes.windows(2).all(|w| w[0] < w[1]),
            "BufPool size classes must be strictly ascending"
        );
        BufPool {
            inner: Inner::new(Config {
                sizes: self.sizes,
                thread_cache_bytes: self.thread_cache_bytes,
                shared_bytes_per_class: self.shared_bytes_per_class,
            }),
            global: false,
        }
    }
}
