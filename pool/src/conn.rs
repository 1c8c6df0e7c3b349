//! The handle of a connection borrowed from the pool.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use crate::Manager;
use crate::shared::{Conn, Shared};

/// A connection borrowed from a [`Pool`](crate::Pool); it goes back when dropped.
///
/// Dereferences to the driver's connection. Mark it [broken](PooledConn::mark_broken) when
/// it failed in a way that leaves it unusable (it is closed instead of kept), and
/// [dirty](PooledConn::mark_dirty) when it holds session state the next user must not see
/// (the manager resets it before it is handed out again).
///
/// ```
/// # use longlink_pool::Manager;
/// # struct M;
/// # impl Manager for M {
/// #     type Connection = Vec<u8>;
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> Result<Vec<u8>, std::io::Error> { Ok(Vec::new()) }
/// #     async fn check(&self, _: &mut Vec<u8>) -> Result<(), std::io::Error> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = longlink_pool::Pool::builder().build(M);
/// {
///     let mut conn = pool.acquire().await.unwrap();
///     conn.push(1); // the driver's connection, through Deref
///     assert_eq!(pool.stats().in_use, 1);
/// } // returned here
/// assert_eq!((pool.stats().in_use, pool.stats().idle), (0, 1));
/// # }
/// ```
pub struct PooledConn<M: Manager> {
    conn: Option<Conn<M::Connection>>,
    shared: Arc<Shared<M>>,
    /// Set while a check or reset is in flight too: a connection dropped mid-ping is in an
    /// unknown state and must be closed, not kept.
    broken: bool,
}

impl<M: Manager> PooledConn<M> {
    pub(crate) fn new(conn: Conn<M::Connection>, shared: Arc<Shared<M>>) -> PooledConn<M> {
        PooledConn {
            conn: Some(conn),
            shared,
            broken: false,
        }
    }

    fn conn(&self) -> &Conn<M::Connection> {
        self.conn.as_ref().expect("present until dropped")
    }

    fn conn_mut(&mut self) -> &mut Conn<M::Connection> {
        self.conn.as_mut().expect("present until dropped")
    }

    /// The pool's id for this connection (stable for its life, unique in the pool).
    pub fn id(&self) -> u64 {
        self.conn().id
    }

    /// When the connection was opened.
    pub fn created_at(&self) -> Instant {
        self.conn().created
    }

    /// When the connection will be closed for its age (`max_lifetime` less a random
    /// jitter of up to a tenth), if a lifetime is set.
    pub fn expires_at(&self) -> Option<Instant> {
        self.conn().expires
    }

    /// Close this connection when it is returned instead of keeping it.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Lifts a [`mark_broken`](PooledConn::mark_broken) (the operation that might have
    /// broken it completed cleanly).
    pub fn unmark_broken(&mut self) {
        self.broken = false;
    }

    /// Have the manager [`reset`](Manager::reset) this connection before anyone else uses
    /// it (for example: a transaction may still be open).
    pub fn mark_dirty(&mut self) {
        self.conn_mut().dirty = true;
    }

    /// Clears the dirty mark (the caller cleaned up itself).
    pub fn mark_clean(&mut self) {
        self.conn_mut().dirty = false;
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.conn().dirty
    }

    pub(crate) fn idle_since(&self) -> Instant {
        self.conn().idle_since
    }

    pub(crate) fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }

    /// Takes the connection out of the pool for good; its slot is freed.
    pub fn detach(mut self) -> M::Connection {
        let conn = self.conn.take().expect("present until dropped");
        self.shared.checked_in(conn.id);
        self.shared.detached();
        conn.raw
    }

    /// Closes the connection and keeps its slot, for the acquire path that connects anew:
    /// after a failed check (`broken`), or to honour an acquire that wants a new one.
    pub(crate) fn discard_keep_slot(mut self, broken: bool) {
        let conn = self.conn.take().expect("present until dropped");
        self.shared.checked_in(conn.id);
        self.shared.discarded_keep_slot(broken);
        drop(conn);
    }
}

impl<M: Manager> Deref for PooledConn<M> {
    type Target = M::Connection;
    fn deref(&self) -> &M::Connection {
        &self.conn().raw
    }
}

impl<M: Manager> DerefMut for PooledConn<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.conn_mut().raw
    }
}

impl<M: Manager> Drop for PooledConn<M> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let broken = self.broken || self.shared.manager.is_broken(&mut conn.raw);
        self.shared.checked_in(conn.id);
        self.shared.release(conn, broken);
    }
}

impl<M: Manager> fmt::Debug for PooledConn<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PooledConn");
        if let Some(conn) = &self.conn {
            d.field("id", &conn.id)
                .field("age", &conn.created.elapsed())
                .field("dirty", &conn.dirty);
        }
        d.field("broken", &self.broken).finish()
    }
}
