//! What the pool needs from a database driver.

use std::future::Future;

/// Opens, checks and resets connections for a [`Pool`](crate::Pool).
///
/// The pool calls [`connect`](Manager::connect) when it needs a connection and has room for
/// one, [`check`](Manager::check) before handing out a connection that its
/// [`TestOnAcquire`](crate::TestOnAcquire) policy says to test, [`reset`](Manager::reset)
/// before handing out a connection that was returned *dirty* (for example by a transaction
/// dropped without commit or rollback), and [`is_broken`](Manager::is_broken) when a
/// connection comes back. A connection is closed by dropping it.
///
/// ```
/// use longlink_pool::Manager;
///
/// /// Hands out numbers; a real manager opens sockets.
/// struct Counter(std::sync::atomic::AtomicU32);
///
/// impl Manager for Counter {
///     type Connection = u32;
///     type Error = std::io::Error;
///
///     async fn connect(&self) -> Result<u32, std::io::Error> {
///         Ok(self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
///     }
///
///     async fn check(&self, _conn: &mut u32) -> Result<(), std::io::Error> {
///         Ok(())
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The connection type.
    type Connection: Send + 'static;
    /// What `connect`, `check` and `reset` fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection. The pool calls it outside any lock, with a slot reserved.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Proves the connection still works (a ping). An error means it is broken: the pool
    /// closes it and uses a fresh one. Nothing the caller asked for has been sent yet, so
    /// this never makes a statement run twice.
    fn check(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Puts a connection that came back dirty into a clean state (roll back an open
    /// transaction, drop session state). Called before it is handed out again; an error
    /// closes it. The default does nothing.
    fn reset(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = conn;
        async { Ok(()) }
    }

    /// A cheap synchronous look at a returned connection: `true` if it is known to be
    /// unusable (its socket closed, a protocol error seen). Broken connections are closed,
    /// never kept. The default says no.
    fn is_broken(&self, conn: &mut Self::Connection) -> bool {
        let _ = conn;
        false
    }
}
