//! The FIFO of acquires waiting for a connection.
//!
//! Each waiter owns a small cell (its own short lock) that a release fills with the
//! connection, so taking it needs no trip through the pool's lock; the pool's queue holds
//! the cells in arrival order. A release hands its connection straight to the oldest live
//! waiter's cell and wakes it, so a newcomer can never take it first (bb8 lets newcomers
//! jump ahead of woken waiters; Go's database/sql hands it to a random waiter,
//! golang/go#31708). A waiter that gives up marks its cell gone; its queue entry is skipped
//! or compacted away.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What a waiter is handed.
pub(crate) enum Handoff<T> {
    /// A connection.
    Conn(T),
    /// A slot: the waiter may open a new connection (`open` already counts it).
    Permit,
    /// The pool closed.
    Closed,
    /// The waiter's deadline passed (set by the pool's one deadline timer).
    TimedOut,
}

enum State<T> {
    Waiting(Option<Waker>),
    Ready(Handoff<T>),
    /// Taken, or given up.
    Gone,
}

/// One waiter's cell. The waiter holds it as its ticket.
pub(crate) struct Cell<T> {
    state: Mutex<State<T>>,
}

/// A waiter's place in the queue.
pub(crate) type Ticket<T> = Arc<Cell<T>>;

struct Entry<T> {
    cell: Ticket<T>,
    deadline: Instant,
    since: Instant,
}

pub(crate) struct Waiters<T> {
    queue: VecDeque<Entry<T>>,
    /// Waiters that have not been handed anything yet.
    waiting: usize,
    /// Time waiters spent waiting until they were handed something or gave up.
    waited: Duration,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            queue: VecDeque::new(),
            waiting: 0,
            waited: Duration::ZERO,
        }
    }
}

/// A waiter's poll: takes what it was handed, or refreshes its waker. Only the cell's own
/// lock is taken.
pub(crate) fn poll<T>(ticket: &Ticket<T>, waker: &Waker) -> Option<Handoff<T>> {
    let mut state = ticket.state.lock();
    match &mut *state {
        State::Waiting(stored) => {
            match stored {
                Some(w) if w.will_wake(waker) => {}
                _ => *stored = Some(waker.clone()),
            }
            None
        }
        State::Ready(_) => match std::mem::replace(&mut *state, State::Gone) {
            State::Ready(handoff) => Some(handoff),
            _ => unreachable!(),
        },
        State::Gone => {
            unreachable!("a ticket is polled until it is handed something, then dropped")
        }
    }
}

impl<T> Waiters<T> {
    /// Waiters not yet handed anything.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting
    }

    /// Total time spent waiting by waiters that were served or gave up.
    pub(crate) fn waited(&self) -> Duration {
        self.waited
    }

    /// Joins the back of the queue. Deadlines must not decrease along the queue (every
    /// waiter of a pool waits the same `acquire_timeout`), so the front waiter always
    /// expires first and one timer serves them all.
    pub(crate) fn push(&mut self, waker: Waker, since: Instant, deadline: Instant) -> Ticket<T> {
        // One small allocation per wait: reusing cells measured no faster.
        let cell = Arc::new(Cell {
            state: Mutex::new(State::Waiting(Some(waker))),
        });
        self.queue.push_back(Entry {
            cell: Arc::clone(&cell),
            deadline,
            since,
        });
        self.waiting += 1;
        cell
    }

    /// Hands `handoff` to the oldest waiter and returns its waker (to wake after unlocking),
    /// or gives `handoff` back when nobody waits.
    pub(crate) fn hand_to_oldest(
        &mut self,
        handoff: Handoff<T>,
        now: Instant,
    ) -> Result<Option<Waker>, Handoff<T>> {
        while let Some(entry) = self.queue.pop_front() {
            let mut state = entry.cell.state.lock();
            if let State::Waiting(waker) = &mut *state {
                let waker = waker.take();
                *state = State::Ready(handoff);
                drop(state);
                self.waiting -= 1;
                self.waited += now.saturating_duration_since(entry.since);
                return Ok(waker);
            }
            // Gone: that waiter gave up.
        }
        Err(handoff)
    }

    /// A waiter gave up: marks its cell gone and returns what it had been handed but not
    /// yet taken, which the caller must pass on (a connection dropped here would leak its
    /// slot).
    pub(crate) fn cancel(
        &mut self,
        ticket: &Ticket<T>,
        since: Instant,
        now: Instant,
    ) -> Option<Handoff<T>> {
        let handed = match std::mem::replace(&mut *ticket.state.lock(), State::Gone) {
            State::Waiting(_) => {
                self.waiting -= 1;
                self.waited += now.saturating_duration_since(since);
                None
            }
            State::Ready(handoff) => Some(handoff),
            State::Gone => None,
        };
        // Gone entries are skipped by `hand_to_oldest`; compact when they pile up (many
        // waiters timing out while nothing is released) so the queue stays bounded.
        if self.queue.len() > 2 * self.waiting + 32 {
            self.queue
                .retain(|e| matches!(*e.cell.state.lock(), State::Waiting(_)));
        }
        handed
    }

    /// Times out the waiters at the front whose deadline has passed (pushing their wakers
    /// onto `wakers`); returns the deadline of the first one still waiting.
    pub(crate) fn expire(&mut self, now: Instant, wakers: &mut Vec<Waker>) -> Option<Instant> {
        while let Some(entry) = self.queue.front() {
            if !matches!(*entry.cell.state.lock(), State::Waiting(_)) {
                self.queue.pop_front(); // gone
                continue;
            }
            if entry.deadline > now {
                return Some(entry.deadline);
            }
            if let Ok(Some(waker)) = self.hand_to_oldest(Handoff::TimedOut, now) {
                wakers.push(waker);
            }
        }
        None
    }

    /// Closes the queue: every waiter gets [`Handoff::Closed`]; returns their wakers.
    pub(crate) fn close_all(&mut self, now: Instant) -> Vec<Waker> {
        let mut wakers = Vec::new();
        while let Ok(waker) = self.hand_to_oldest(Handoff::Closed, now) {
            wakers.extend(waker);
        }
        wakers
    }

    /// Queue length, for tests of boundedness.
    #[cfg(test)]
    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn push(w: &mut Waiters<u32>, deadline: Instant) -> Ticket<u32> {
        w.push(Waker::noop().clone(), Instant::now(), deadline)
    }

    #[test]
    fn oldest_waiter_is_served_first_and_gone_ones_are_skipped() {
        let mut w: Waiters<u32> = Waiters::default();
        let now = Instant::now();
        let a = push(&mut w, now);
        let b = push(&mut w, now);
        let c = push(&mut w, now);
        assert!(w.cancel(&a, now, now).is_none());
        assert!(w.hand_to_oldest(Handoff::Conn(7), now).is_ok());
        assert!(matches!(poll(&b, Waker::noop()), Some(Handoff::Conn(7))));
        assert!(poll(&c, Waker::noop()).is_none());
        assert_eq!(w.waiting(), 1);
    }

    #[test]
    fn cancelled_waiter_returns_what_it_was_handed() {
        let mut w: Waiters<u32> = Waiters::default();
        let now = Instant::now();
        let a = push(&mut w, now);
        assert!(w.hand_to_oldest(Handoff::Conn(1), now).is_ok());
        assert!(matches!(w.cancel(&a, now, now), Some(Handoff::Conn(1))));
        assert!(matches!(
            w.hand_to_oldest(Handoff::Conn(2), now),
            Err(Handoff::Conn(2))
        ));
    }

    #[test]
    fn expired_waiters_at_the_front_time_out_and_the_next_deadline_is_reported() {
        let mut w: Waiters<u32> = Waiters::default();
        let now = Instant::now();
        let ms = std::time::Duration::from_millis;
        let a = push(&mut w, now);
        let b = push(&mut w, now + ms(1));
        let c = push(&mut w, now + ms(50));
        let mut wakers = Vec::new();
        assert_eq!(w.expire(now + ms(10), &mut wakers), Some(now + ms(50)));
        assert_eq!(wakers.len(), 2);
        assert!(matches!(poll(&a, Waker::noop()), Some(Handoff::TimedOut)));
        assert!(matches!(poll(&b, Waker::noop()), Some(Handoff::TimedOut)));
        assert!(poll(&c, Waker::noop()).is_none());
        assert_eq!(w.waiting(), 1);
    }

    #[test]
    fn queue_stays_bounded_when_waiters_keep_giving_up() {
        let mut w: Waiters<u32> = Waiters::default();
        let now = Instant::now();
        let keep = push(&mut w, now);
        for _ in 0..10_000 {
            let t = push(&mut w, now);
            w.cancel(&t, now, now);
        }
        assert!(w.queue_len() <= 40, "queue {}", w.queue_len());
        assert!(w.hand_to_oldest(Handoff::Permit, now).is_ok());
        assert!(matches!(poll(&keep, Waker::noop()), Some(Handoff::Permit)));
    }
}
