//! The pool's shared state and every transition of it.
//!
//! All bookkeeping happens under one short `std::sync::Mutex` section per operation; no
//! lock is held across an `.await`, and nothing is dropped, connected or woken while it is
//! held (wakers and connections to close are carried out of the section first).
//!
//! Accounting: `open` counts every slot taken — idle, handed out, or being connected;
//! `in_use` counts connections handed out. A slot is given back in exactly one place,
//! [`State::free_slot`], which hands it to the oldest waiter as a permit to connect when
//! anyone waits.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use parking_lot::{Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

use tokio::sync::Notify;

use crate::waiters::{self, Handoff, Ticket, Waiters};
use crate::{Manager, Options, Stats};

/// A connection and what the pool knows about it.
pub(crate) struct Conn<C> {
    pub(crate) raw: C,
    pub(crate) id: u64,
    pub(crate) created: Instant,
    /// Created + lifetime − jitter.
    pub(crate) expires: Option<Instant>,
    /// When it was last returned (meaningful while idle).
    pub(crate) idle_since: Instant,
    /// Returned in a state that needs `Manager::reset` before reuse.
    pub(crate) dirty: bool,
}

pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: M,
    pub(crate) options: Options,
    state: Mutex<State<M>>,
    all_closed: Notify,
    next_id: AtomicU64,
    pub(crate) reaper_started: AtomicBool,
    pub(crate) timer_started: AtomicBool,
    /// Wakes the deadline timer when the queue goes from empty to not (and on close/drop).
    pub(crate) timer: Arc<Notify>,
    /// Connections handed out, for the leak check; `None` when no threshold is set, so the
    /// hot path pays nothing.
    checkouts: Option<Mutex<HashMap<u64, Checkout>>>,
    leaks: AtomicU64,
}

struct Checkout {
    since: Instant,
    location: &'static Location<'static>,
    warned: bool,
}

struct State<M: Manager> {
    /// LIFO: the most recently returned (warmest) connection is reused first.
    idle: Vec<Conn<M::Connection>>,
    open: usize,
    in_use: usize,
    waiters: Waiters<Conn<M::Connection>>,
    closed: bool,
    last_connect_error: Option<(Arc<M::Error>, Instant)>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    wait_count: u64,
    connects: u64,
    connect_errors: u64,
    timeouts: u64,
    max_idle_closed: u64,
    max_idle_time_closed: u64,
    max_lifetime_closed: u64,
    broken: u64,
}

/// What an acquire does next, decided under the lock.
pub(crate) enum Start<C> {
    /// An idle connection (now counted in use).
    Idle(Conn<C>),
    /// A slot was reserved: open a connection.
    Connect,
    /// Queued behind earlier waiters.
    Wait(Ticket<Conn<C>>),
    Closed,
}

/// parking_lot's lock: under contention it spins adaptively before parking, where std's
/// parked sooner (20% of contended-benchmark time went to `lock_contended` with std).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

fn wake(wakers: impl IntoIterator<Item = Waker>) {
    for w in wakers {
        w.wake();
    }
}

impl<M: Manager> Drop for Shared<M> {
    fn drop(&mut self) {
        // Let the deadline timer notice the pool is gone and end.
        self.timer.notify_one();
    }
}

impl<M: Manager> State<M> {
    /// Gives a slot back: to the oldest waiter as a permit to connect, or to no one.
    #[must_use]
    fn free_slot(&mut self) -> Option<Waker> {
        if !self.closed
            && let Ok(waker) = self.waiters.hand_to_oldest(Handoff::Permit, Instant::now())
        {
            return waker;
        }
        self.open -= 1;
        None
    }

    /// Puts a healthy connection back: to the oldest waiter, to the idle stack, or closed
    /// when `max_idle` is reached. Returns a waker to wake and a connection to close.
    fn put_back(
        &mut self,
        mut conn: Conn<M::Connection>,
        now: Instant,
        max_idle: usize,
    ) -> (Option<Waker>, Option<Conn<M::Connection>>) {
        if self.closed {
            self.open -= 1;
            return (None, Some(conn));
        }
        conn.idle_since = now;
        match self.waiters.hand_to_oldest(Handoff::Conn(conn), now) {
            Ok(waker) => {
                self.in_use += 1;
                (waker, None)
            }
            Err(Handoff::Conn(conn)) => {
                if self.idle.len() < max_idle {
                    self.idle.push(conn);
                    (None, None)
                } else {
                    self.open -= 1;
                    self.counters.max_idle_closed += 1;
                    (None, Some(conn))
                }
            }
            Err(_) => unreachable!("handed back what was offered"),
        }
    }
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(manager: M, options: Options) -> Shared<M> {
        Shared {
            manager,
            checkouts: options.leak_threshold.map(|_| Mutex::new(HashMap::new())),
            options,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                in_use: 0,
                waiters: Waiters::default(),
                closed: false,
                last_connect_error: None,
                counters: Counters::default(),
            }),
            all_closed: Notify::new(),
            next_id: AtomicU64::new(1),
            reaper_started: AtomicBool::new(false),
            timer_started: AtomicBool::new(false),
            timer: Arc::new(Notify::new()),
            leaks: AtomicU64::new(0),
        }
    }

    /// The first step of an acquire: an idle connection, a slot to connect with, or a
    /// place in the queue. Connections found past their lifetime or idle time on the way
    /// are closed (after the lock is released).
    pub(crate) fn start(
        &self,
        now: Instant,
        deadline: Instant,
        fresh: bool,
        waker: impl FnOnce() -> Waker,
    ) -> Start<M::Connection> {
        let mut expired = Vec::new();
        let start = {
            let mut state = lock(&self.state);
            if fresh
                && !state.closed
                && state.waiters.waiting() == 0
                && !state.idle.is_empty()
                && state.open >= self.options.max_open
            {
                // A new connection is wanted and every slot is taken: close the coldest idle
                // connection and take over its slot.
                expired.push(state.idle.remove(0));
                Start::Connect
            } else {
                self.start_locked(&mut state, now, deadline, fresh, &mut expired, waker)
            }
        };
        drop(expired);
        start
    }

    fn start_locked(
        &self,
        state: &mut State<M>,
        now: Instant,
        deadline: Instant,
        fresh: bool,
        expired: &mut Vec<Conn<M::Connection>>,
        waker: impl FnOnce() -> Waker,
    ) -> Start<M::Connection> {
        if state.closed {
            return Start::Closed;
        }
        // Waiters come first: a newcomer may only take what no one is queued for.
        if state.waiters.waiting() == 0 {
            while !fresh && let Some(conn) = state.idle.pop() {
                if conn.expires.is_some_and(|at| now >= at) {
                    state.open -= 1;
                    state.counters.max_lifetime_closed += 1;
                    expired.push(conn);
                    continue;
                }
                if self
                    .options
                    .max_idle_time
                    .is_some_and(|max| now.saturating_duration_since(conn.idle_since) > max)
                {
                    state.open -= 1;
                    state.counters.max_idle_time_closed += 1;
                    expired.push(conn);
                    continue;
                }
                state.in_use += 1;
                return Start::Idle(conn);
            }
            if state.open < self.options.max_open {
                state.open += 1;
                return Start::Connect;
            }
        }
        state.counters.wait_count += 1;
        if state.waiters.waiting() == 0 {
            // The deadline timer sleeps while nobody waits.
            self.timer.notify_one();
        }
        Start::Wait(state.waiters.push(waker(), now, deadline))
    }

    /// A waiting acquire's poll: only its own cell is locked, not the pool.
    pub(crate) fn poll_wait(
        &self,
        ticket: &Ticket<Conn<M::Connection>>,
        waker: &Waker,
    ) -> Option<Handoff<Conn<M::Connection>>> {
        waiters::poll(ticket, waker)
    }

    /// A waiting acquire gave up (timed out or dropped): passes on whatever it was handed.
    pub(crate) fn cancel_wait(&self, ticket: &Ticket<Conn<M::Connection>>, since: Instant) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let (waker, close) = match state.waiters.cancel(ticket, since, now) {
            None | Some(Handoff::Closed | Handoff::TimedOut) => (None, None),
            Some(Handoff::Permit) => (state.free_slot(), None),
            Some(Handoff::Conn(conn)) => {
                state.in_use -= 1;
                state.put_back(conn, now, self.options.max_idle)
            }
        };
        self.after(state, waker, close);
    }

    /// Releases the lock, then wakes and closes, then signals an empty closed pool.
    fn after(
        &self,
        state: MutexGuard<'_, State<M>>,
        waker: Option<Waker>,
        close: Option<Conn<M::Connection>>,
    ) {
        let all_closed = state.closed && state.open == 0;
        drop(state);
        wake(waker);
        drop(close);
        if all_closed {
            self.all_closed.notify_waiters();
        }
    }

    /// A reserved slot's connect succeeded: a new connection, counted in use.
    pub(crate) fn connected(&self, raw: M::Connection) -> Conn<M::Connection> {
        let now = Instant::now();
        let expires = self.options.max_lifetime.map(|lifetime| {
            // Up to a tenth earlier, at random, so a burst of connections does not expire
            // (and reconnect) all at once.
            let jitter = lifetime.mul_f64(fastrand::f64() * 0.1);
            now + lifetime - jitter
        });
        let conn = Conn {
            raw,
            id: self.next_id.fetch_add(1, Relaxed),
            created: now,
            expires,
            idle_since: now,
            dirty: false,
        };
        let mut state = lock(&self.state);
        state.counters.connects += 1;
        state.in_use += 1;
        conn
    }

    /// A reserved slot's connect failed: remember why, and give the slot to the next waiter
    /// so it tries too (and fails with the real cause, not a bare timeout).
    pub(crate) fn connect_failed(&self, error: Arc<M::Error>) {
        let mut state = lock(&self.state);
        state.counters.connect_errors += 1;
        state.last_connect_error = Some((error, Instant::now()));
        let waker = state.free_slot();
        self.after(state, waker, None);
    }

    /// A reserved slot was not used (its acquire was dropped while connecting).
    pub(crate) fn free_slot(&self) {
        let mut state = lock(&self.state);
        let waker = state.free_slot();
        self.after(state, waker, None);
    }

    /// A handed-out connection comes back.
    pub(crate) fn release(&self, conn: Conn<M::Connection>, broken: bool) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        state.in_use -= 1;
        let (waker, close) = if broken {
            state.counters.broken += 1;
            (state.free_slot(), Some(conn))
        } else if conn.expires.is_some_and(|at| now >= at) {
            state.counters.max_lifetime_closed += 1;
            (state.free_slot(), Some(conn))
        } else {
            state.put_back(conn, now, self.options.max_idle)
        };
        self.after(state, waker, close);
    }

    /// A handed-out connection is closed before use — found broken (failed check or
    /// reset), or not wanted by an acquire that asked for a new one — and its slot stays
    /// with the caller, who connects anew.
    pub(crate) fn discarded_keep_slot(&self, broken: bool) {
        let mut state = lock(&self.state);
        state.in_use -= 1;
        if broken {
            state.counters.broken += 1;
        }
    }

    /// A handed-out connection leaves the pool for good (`PooledConn::detach`).
    pub(crate) fn detached(&self) {
        let mut state = lock(&self.state);
        state.in_use -= 1;
        let waker = state.free_slot();
        self.after(state, waker, None);
    }

    pub(crate) fn timed_out(&self, started: Instant) -> (Option<Arc<M::Error>>, Stats) {
        let mut state = lock(&self.state);
        state.counters.timeouts += 1;
        let cause = match &state.last_connect_error {
            Some((error, at)) if *at >= started => Some(Arc::clone(error)),
            _ => None,
        };
        (cause, self.stats_locked(&state))
    }

    /// The deadline timer's turn: times out expired waiters; returns the next deadline.
    pub(crate) fn expire_waiters(&self, now: Instant) -> Option<Instant> {
        let mut wakers = Vec::new();
        let next = lock(&self.state).waiters.expire(now, &mut wakers);
        wake(wakers);
        next
    }

    pub(crate) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        let idle = std::mem::take(&mut state.idle);
        state.open -= idle.len();
        let wakers = state.waiters.close_all(Instant::now());
        let all_closed = state.open == 0;
        drop(state);
        wake(wakers);
        drop(idle);
        self.timer.notify_one();
        if all_closed {
            self.all_closed.notify_waiters();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    pub(crate) async fn wait_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            {
                let state = lock(&self.state);
                if state.closed && state.open == 0 {
                    return;
                }
            }
            notified.await;
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let state = lock(&self.state);
        self.stats_locked(&state)
    }

    fn stats_locked(&self, state: &State<M>) -> Stats {
        let c = &state.counters;
        Stats {
            max_open: self.options.max_open,
            open: state.open,
            in_use: state.in_use,
            idle: state.idle.len(),
            waiting: state.waiters.waiting(),
            wait_count: c.wait_count,
            wait_duration: state.waiters.waited(),
            connects: c.connects,
            connect_errors: c.connect_errors,
            timeouts: c.timeouts,
            max_idle_closed: c.max_idle_closed,
            max_idle_time_closed: c.max_idle_time_closed,
            max_lifetime_closed: c.max_lifetime_closed,
            broken: c.broken,
            leaks: self.leaks.load(Relaxed),
        }
    }

    /// The reaper's sweep: closes idle connections past their lifetime or idle time, and
    /// reserves slots for the connections `min_idle` still needs (the caller connects).
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let mut state = lock(&self.state);
        if state.closed {
            return 0;
        }
        let mut expired = Vec::new();
        let max_idle_time = self.options.max_idle_time;
        let mut kept = Vec::with_capacity(state.idle.len());
        for conn in std::mem::take(&mut state.idle) {
            if conn.expires.is_some_and(|at| now >= at) {
                state.counters.max_lifetime_closed += 1;
                expired.push(conn);
            } else if max_idle_time
                .is_some_and(|max| now.saturating_duration_since(conn.idle_since) > max)
            {
                state.counters.max_idle_time_closed += 1;
                expired.push(conn);
            } else {
                kept.push(conn);
            }
        }
        state.idle = kept;
        state.open -= expired.len();
        // Top up to `min_idle`, within `max_open`, counting connections already being opened
        // (open − in_use − idle).
        let connecting = state.open - state.in_use - state.idle.len();
        let want = self
            .options
            .min_idle
            .saturating_sub(state.idle.len() + connecting);
        let room = self.options.max_open - state.open;
        let reserve = if state.waiters.waiting() == 0 {
            want.min(room)
        } else {
            0
        };
        state.open += reserve;
        drop(state);
        drop(expired);
        reserve
    }

    /// Records a connection handed out, for the leak check.
    pub(crate) fn checked_out(&self, id: u64, location: &'static Location<'static>) {
        if let Some(checkouts) = &self.checkouts {
            lock(checkouts).insert(
                id,
                Checkout {
                    since: Instant::now(),
                    location,
                    warned: false,
                },
            );
        }
    }

    /// Forgets a connection handed out; warns if it was held past the threshold.
    pub(crate) fn checked_in(&self, id: u64) {
        let (Some(checkouts), Some(threshold)) = (&self.checkouts, self.options.leak_threshold)
        else {
            return;
        };
        let Some(checkout) = lock(checkouts).remove(&id) else {
            return;
        };
        let held = checkout.since.elapsed();
        if held > threshold && !checkout.warned {
            self.leaks.fetch_add(1, Relaxed);
            tracing::warn!(
                connection = id,
                held_ms = held.as_millis() as u64,
                acquired_at = %checkout.location,
                "connection held longer than the leak threshold of {threshold:?}"
            );
        }
    }

    /// The reaper's leak check: warns once about each connection held past the threshold.
    pub(crate) fn check_leaks(&self) {
        let (Some(checkouts), Some(threshold)) = (&self.checkouts, self.options.leak_threshold)
        else {
            return;
        };
        let mut checkouts = lock(checkouts);
        for (id, checkout) in checkouts.iter_mut() {
            let held = checkout.since.elapsed();
            if held > threshold && !checkout.warned {
                checkout.warned = true;
                self.leaks.fetch_add(1, Relaxed);
                tracing::warn!(
                    connection = id,
                    held_ms = held.as_millis() as u64,
                    acquired_at = %checkout.location,
                    "connection still held after the leak threshold of {threshold:?}; not returned yet"
                );
            }
        }
        if checkouts.is_empty() && checkouts.capacity() > 64 {
            checkouts.shrink_to_fit();
        }
    }
}
