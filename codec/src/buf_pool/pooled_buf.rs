//! The buffer handle.

use std::fmt;
use std::mem;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};

use super::BufPool;
use super::inner::{DETACHED, Inner};

/// A buffer borrowed from a [`BufPool`]; it goes back to its pool when dropped, from any
/// thread.
///
/// It dereferences to [`BytesMut`], so everything `BytesMut` does works on it (a
/// `tokio_util` decoder takes `&mut *buf`), and it implements [`BufMut`] itself.
///
/// ```
/// use bytes::BufMut;
/// use longlink_codec::BufPool;
///
/// let pool = BufPool::new();
/// let mut buf = pool.get(64);
/// buf.put_u32(7);
/// buf.put_slice(b"abc");
/// assert_eq!(&buf[..], b"\0\0\0\x07abc");
/// let bytes = buf.freeze(); // no copy; the memory returns to the pool when `bytes` drops
/// assert_eq!(bytes.len(), 7);
/// drop(bytes);
/// assert_eq!(pool.stats().returned, 1);
/// ```
pub struct PooledBuf {
    buf: BytesMut,
    class: u8,
    /// `None` for the global pool (no reference count to touch on the hot path).
    pool: Option<Arc<Inner>>,
}

impl PooledBuf {
    /// An empty handle; the pool fills in the buffer and the class.
    pub(super) fn new(pool: Option<Arc<Inner>>) -> PooledBuf {
        PooledBuf {
            buf: BytesMut::new(),
            class: DETACHED,
            pool,
        }
    }

    pub(super) fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub(super) fn set_class(&mut self, class: u8) {
        self.class = class;
    }

    fn inner(&self) -> &Inner {
        match &self.pool {
            Some(inner) => inner,
            None => BufPool::global_inner(),
        }
    }

    /// The size of the class this buffer returns to, or `None` for a buffer larger than
    /// every class (it is freed, not kept, when dropped).
    ///
    /// ```
    /// let pool = longlink_codec::BufPool::new();
    /// assert_eq!(pool.get(300).class_size(), Some(1024));
    /// assert_eq!(pool.get(1 << 20).class_size(), None);
    /// ```
    pub fn class_size(&self) -> Option<usize> {
        self.inner().class_size(self.class)
    }

    /// Turns the written bytes into [`Bytes`] without copying; the buffer returns to the pool
    /// when the last clone of the `Bytes` drops.
    ///
    /// This costs one small allocation (the shared owner). On a path that must not allocate,
    /// split the bytes off instead (`buf.split().freeze()`) and keep the handle: the pool
    /// reclaims the memory when the handle drops after every split-off part has.
    ///
    /// ```
    /// let pool = longlink_codec::BufPool::new();
    /// let mut buf = pool.get(16);
    /// buf.extend_from_slice(b"frame");
    /// let bytes = buf.freeze();
    /// let part = bytes.slice(1..3);
    /// drop(bytes);
    /// assert_eq!(&part[..], b"ra");
    /// assert_eq!(pool.stats().returned, 0); // `part` still holds the buffer
    /// drop(part);
    /// assert_eq!(pool.stats().returned, 1);
    /// ```
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }

    /// Takes the buffer out of the pool's care: it will be freed, not returned, and counts as
    /// dropped.
    ///
    /// ```
    /// let pool = longlink_codec::BufPool::new();
    /// let bytes_mut = pool.get(10).into_inner();
    /// assert_eq!(bytes_mut.capacity(), 256);
    /// assert_eq!(pool.stats().dropped, 1);
    /// ```
    pub fn into_inner(mut self) -> BytesMut {
        self.class = DETACHED;
        mem::take(&mut self.buf)
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let class = self.class;
        match &self.pool {
            Some(inner) => inner.put(&mut self.buf, class),
            None => BufPool::global_inner().put(&mut self.buf, class),
        }
    }
}

impl Deref for PooledBuf {
    type Target = BytesMut;
    #[inline]
    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl DerefMut for PooledBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

impl AsRef<[u8]> for PooledBuf {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl AsMut<[u8]> for PooledBuf {
    #[inline]
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

// SAFETY: every method forwards to the `BytesMut` inside, which upholds `BufMut`'s contract
// (`chunk_mut` returns initialisable memory past `len`, `advance_mut` trusts the caller as
// the trait requires); the handle adds no state of its own that those methods touch.
#[allow(unsafe_code)]
unsafe impl BufMut for PooledBuf {
    #[inline]
    fn remaining_mut(&self) -> usize {
        self.buf.remaining_mut()
    }

    #[inline]
    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller guarantees `cnt` bytes of `chunk_mut()` were initialised, and
        // `chunk_mut()` is the inner buffer's.
        unsafe { self.buf.advance_mut(cnt) }
    }

    #[inline]
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.buf.chunk_mut()
    }

    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        self.buf.put_slice(src);
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("len", &self.buf.len())
            .field("capacity", &self.buf.capacity())
            .field("class_size", &self.class_size())
            .finish()
    }
}
