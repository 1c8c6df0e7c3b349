//! The pool handle and the acquire path.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::conn::PooledConn;
use crate::shared::{Conn, Shared, Start};
use crate::slot_guard::SlotGuard;
use crate::waiters::{Handoff, Ticket};
use crate::{Builder, Manager, Options, PoolError, Stats, TestOnAcquire};

/// A pool of connections with Go `database/sql` semantics. Cheap to clone: clones share
/// one pool.
///
/// - **Lazy.** Creating a pool does no I/O; the first [`acquire`](Pool::acquire) connects.
/// - **Warm first.** Idle connections are reused last-in-first-out.
/// - **Fair.** When none is free, acquires wait in arrival order and a returned connection
///   goes straight to the oldest waiter.
/// - **Bounded.** `max_open` connections at most, `max_idle` kept, each closed after
///   `max_lifetime` (with jitter) or `max_idle_time`.
/// - **Honest errors.** When the database is down, waiters fail with the connect error,
///   not a bare timeout.
/// - **Cancellation-safe.** Dropping an acquire at any await, or a [`PooledConn`], never
///   leaks a slot, a place in the queue, or a connection.
///
/// ```
/// # use longlink_pool::Manager;
/// # struct M;
/// # impl Manager for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     async fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// #     async fn check(&self, _: &mut ()) -> Result<(), std::io::Error> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = longlink_pool::Pool::builder().max_open(2).build(M);
/// let a = pool.acquire().await.unwrap();
/// let b = pool.acquire().await.unwrap();
/// assert_eq!(pool.stats().open, 2);
/// drop((a, b));
/// assert_eq!(pool.stats().idle, 2);
/// # }
/// ```
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("options", &self.shared.options)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M: Manager> Pool<M> {
    /// A builder for the pool's options; the manager type is inferred from
    /// [`build`](Builder::build)'s argument.
    pub fn builder() -> Builder<M> {
        Builder::default()
    }

    /// A pool with `options`. No I/O happens here and no task is spawned.
    pub fn new(manager: M, options: Options) -> Pool<M> {
        Pool {
            shared: Arc::new(Shared::new(manager, options)),
        }
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.shared.options
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Borrows a connection: an idle one (tested first if the [`TestOnAcquire`] policy says
    /// so), else a new one if `max_open` allows, else the next one returned, waiting in
    /// line up to `acquire_timeout`.
    ///
    /// A timer starts only when the acquire must wait or connect; the warm path takes one
    /// short lock and no allocation. The caller's location is recorded for the leak warning.
    #[track_caller]
    pub fn acquire(
        &self,
    ) -> impl Future<Output = Result<PooledConn<M>, PoolError<M::Error>>> + Send + '_ {
        self.acquire_with(false, Location::caller())
    }

    /// Like [`acquire`](Pool::acquire), but always a newly opened connection, never an idle
    /// one (when `max_open` is reached, the coldest idle connection is closed to make room).
    /// [`Db`](crate::db::Db) retries a statement that met a dead connection this way last,
    /// as `database/sql` does.
    ///
    /// ```
    /// # use longlink_pool::Manager;
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     async fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     async fn check(&self, _: &mut ()) -> Result<(), std::io::Error> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = longlink_pool::Pool::builder().max_open(1).build(M);
    /// let first = pool.acquire().await.unwrap().id(); // returned at once: idle
    /// let fresh = pool.acquire_new().await.unwrap();
    /// assert_ne!(fresh.id(), first, "the idle one was closed to make room");
    /// assert_eq!(pool.stats().open, 1);
    /// # }
    /// ```
    #[track_caller]
    pub fn acquire_new(
        &self,
    ) -> impl Future<Output = Result<PooledConn<M>, PoolError<M::Error>>> + Send + '_ {
        self.acquire_with(true, Location::caller())
    }

    async fn acquire_with(
        &self,
        fresh: bool,
        location: &'static Location<'static>,
    ) -> Result<PooledConn<M>, PoolError<M::Error>> {
        // A loop of warm acquires never waits; spend tokio's cooperative budget so such a
        // loop still lets other tasks (and the timer) run — bb8 starved tokio's timer here.
        tokio::task::coop::consume_budget().await;
        self.start_reaper();
        let started = Instant::now();
        let deadline = started + self.shared.options.acquire_timeout;
        // Queue (if it comes to that) with this task's own waker, so the first poll of the
        // wait needs no second trip through the lock.
        let start = std::future::poll_fn(|cx| {
            Poll::Ready(
                self.shared
                    .start(started, deadline, fresh, || cx.waker().clone()),
            )
        })
        .await;
        let step = match start {
            Start::Closed => return Err(PoolError::Closed),
            Start::Idle(conn) => {
                let pooled = PooledConn::new(conn, Arc::clone(&self.shared));
                if !self.needs_check_or_reset(&pooled, started) {
                    self.shared.checked_out(pooled.id(), location);
                    return Ok(pooled);
                }
                Step::Test(pooled)
            }
            Start::Connect => Step::Connect(SlotGuard::new(&self.shared)),
            Start::Wait(ticket) => {
                self.start_timer();
                Step::Wait(WaitFor {
                    shared: &self.shared,
                    ticket: Some(ticket),
                    since: started,
                    first_poll: true,
                })
            }
        };
        let conn = self.slow_path(step, fresh, started, deadline).await?;
        self.shared.checked_out(conn.id(), location);
        Ok(conn)
    }

    fn timeout(&self, started: Instant) -> PoolError<M::Error> {
        let (last_connect_error, stats) = self.shared.timed_out(started);
        PoolError::Timeout {
            waited: started.elapsed(),
            last_connect_error,
            stats: Box::new(stats),
        }
    }

    fn needs_check_or_reset(&self, conn: &PooledConn<M>, now: Instant) -> bool {
        if conn.is_dirty() {
            return true;
        }
        match self.shared.options.test_on_acquire {
            TestOnAcquire::Never => false,
            TestOnAcquire::Always => true,
            TestOnAcquire::IdleFor(limit) => {
                now.saturating_duration_since(conn_idle_since(conn)) > limit
            }
        }
    }

    /// Everything that may await: testing a connection, connecting, waiting. Every state
    /// holds a guard, so dropping this future cleans up. Waiting is timed out by the pool's
    /// one deadline timer; the I/O steps by a timer of their own (they cost far more).
    async fn slow_path(
        &self,
        mut step: Step<'_, M>,
        fresh: bool,
        started: Instant,
        deadline: Instant,
    ) -> Result<PooledConn<M>, PoolError<M::Error>> {
        let deadline_tokio = tokio::time::Instant::from_std(deadline);
        loop {
            step = match step {
                Step::Test(mut pooled) => {
                    // Dropped mid-check, the connection is in an unknown state: closed.
                    pooled.set_broken(true);
                    let manager = &self.shared.manager;
                    let policy = self.shared.options.test_on_acquire;
                    let test = async {
                        if pooled.is_dirty() && manager.reset(&mut pooled).await.is_err() {
                            return false;
                        }
                        matches!(policy, TestOnAcquire::Never)
                            || manager.check(&mut pooled).await.is_ok()
                    };
                    match tokio::time::timeout_at(deadline_tokio, test).await {
                        Ok(true) => {
                            pooled.set_broken(false);
                            pooled.mark_clean();
                            return Ok(pooled);
                        }
                        Ok(false) => {
                            // Broken, and nothing was sent on it: keep the slot, open a new one.
                            pooled.discard_keep_slot(true);
                            Step::Connect(SlotGuard::new(&self.shared))
                        }
                        Err(_) => {
                            drop(pooled); // closed as broken
                            return Err(self.timeout(started));
                        }
                    }
                }
                Step::Connect(slot) => {
                    return match tokio::time::timeout_at(
                        deadline_tokio,
                        self.shared.manager.connect(),
                    )
                    .await
                    {
                        Ok(Ok(raw)) => Ok(slot.fill(raw)),
                        Ok(Err(e)) => {
                            let e = Arc::new(e);
                            slot.failed(Arc::clone(&e));
                            Err(PoolError::Connect(e))
                        }
                        Err(_) => {
                            drop(slot);
                            Err(self.timeout(started))
                        }
                    };
                }
                Step::Wait(mut wait) => match (&mut wait).await {
                    Handoff::Conn(conn) => {
                        let pooled = PooledConn::new(conn, Arc::clone(&self.shared));
                        if fresh {
                            pooled.discard_keep_slot(false);
                            Step::Connect(SlotGuard::new(&self.shared))
                        } else if pooled.is_dirty()
                            || self.shared.options.test_on_acquire == TestOnAcquire::Always
                        {
                            // Handed over straight from its last user, a connection was not
                            // idle: an idle-time test does not apply (no clock read needed).
                            Step::Test(pooled)
                        } else {
                            return Ok(pooled);
                        }
                    }
                    Handoff::Permit => Step::Connect(SlotGuard::new(&self.shared)),
                    Handoff::Closed => return Err(PoolError::Closed),
                    Handoff::TimedOut => return Err(self.timeout(started)),
                },
            }
        }
    }

    /// Stops the pool: acquires fail at once with [`PoolError::Closed`] (waiting ones too),
    /// idle connections are closed now, and connections in use are closed when returned.
    /// See [`wait_closed`](Pool::wait_closed) to wait for those.
    pub fn close(&self) {
        self.shared.close();
    }

    /// `true` once [`close`](Pool::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Resolves when the pool is closed and every connection has been closed.
    pub async fn wait_closed(&self) {
        self.shared.wait_closed().await
    }

    fn start_timer(&self) {
        if self.shared.timer_started.load(Ordering::Relaxed)
            || self.shared.timer_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let timer =
            crate::reaper::deadlines(Arc::downgrade(&self.shared), Arc::clone(&self.shared.timer));
        tokio::spawn(timer);
    }

    fn start_reaper(&self) {
        if self.shared.reaper_started.load(Ordering::Relaxed) {
            return;
        }
        let Some(period) = self.shared.options.reaper_period() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        handle.spawn(crate::reaper::run(Arc::downgrade(&self.shared), period));
    }
}

fn conn_idle_since<M: Manager>(conn: &PooledConn<M>) -> Instant {
    conn.idle_since()
}

enum Step<'a, M: Manager> {
    Test(PooledConn<M>),
    Connect(SlotGuard<M>),
    Wait(WaitFor<'a, M>),
}

/// A place in the queue; dropped before it is served, it leaves the queue and passes on
/// anything it was handed meanwhile.
struct WaitFor<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    ticket: Option<Ticket<Conn<M::Connection>>>,
    since: Instant,
    /// The queue entry already holds this task's waker: the first poll can report
    /// `Pending` without taking the lock (a hand-off meanwhile has woken the task, so it
    /// will be polled again).
    first_poll: bool,
}

impl<M: Manager> Future for WaitFor<'_, M> {
    type Output = Handoff<Conn<M::Connection>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if std::mem::take(&mut self.first_poll) {
            return Poll::Pending;
        }
        let ticket = self.ticket.as_ref().expect("polled after completion");
        match self.shared.poll_wait(ticket, cx.waker()) {
            Some(handoff) => {
                self.ticket = None;
                Poll::Ready(handoff)
            }
            None => Poll::Pending,
        }
    }
}

impl<M: Manager> Drop for WaitFor<'_, M> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.shared.cancel_wait(&ticket, self.since);
        }
    }
}
