//! The FIFO of acquires waiting for a connection.
//!
//! A slab of slots (reused, so waiting allocates nothing once warm) and a queue of
//! `(slot, generation)` in arrival order. A release hands its connection straight to the
//! oldest live waiter's slot and wakes it, so a newcomer can never take it first (bb8 lets
//! newcomers jump ahead of woken waiters; Go's database/sql hands it to a random waiter,
//! golang/go#31708). A waiter that gives up vacates its slot; its queue entry goes stale
//! (the generation no longer matches) and is skipped or compacted away.

use std::collections::VecDeque;
use std::task::Waker;
use std::time::Instant;

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

enum Slot<T> {
    Vacant {
        generation: u64,
    },
    Waiting {
        generation: u64,
        waker: Option<Waker>,
        deadline: Instant,
    },
    Ready {
        generation: u64,
        handoff: Handoff<T>,
    },
}

impl<T> Slot<T> {
    fn generation(&self) -> u64 {
        match self {
            Slot::Vacant { generation }
            | Slot::Waiting { generation, .. }
            | Slot::Ready { generation, .. } => *generation,
        }
    }
}

/// A waiter's place: which slot, and which use of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    index: usize,
    generation: u64,
}

pub(crate) struct Waiters<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    queue: VecDeque<Ticket>,
    /// Waiters that have not been handed anything yet.
    waiting: usize,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            slots: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            waiting: 0,
        }
    }
}

impl<T> Waiters<T> {
    /// Waiters not yet handed anything.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting
    }

    /// Joins the back of the queue. Deadlines must not decrease along the queue (every
    /// waiter of a pool waits the same `acquire_timeout`), so the front waiter always
    /// expires first and one timer serves them all.
    pub(crate) fn push(&mut self, waker: Waker, deadline: Instant) -> Ticket {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::Vacant { generation: 0 });
                self.slots.len() - 1
            }
        };
        let generation = self.slots[index].generation() + 1;
        self.slots[index] = Slot::Waiting {
            generation,
            waker: Some(waker),
            deadline,
        };
        let ticket = Ticket { index, generation };
        self.queue.push_back(ticket);
        self.waiting += 1;
        ticket
    }

    /// Hands `handoff` to the oldest waiter and returns its waker (to wake after unlocking),
    /// or gives `handoff` back when nobody waits.
    pub(crate) fn hand_to_oldest(
        &mut self,
        handoff: Handoff<T>,
    ) -> Result<Option<Waker>, Handoff<T>> {
        while let Some(ticket) = self.queue.pop_front() {
            let slot = &mut self.slots[ticket.index];
            if let Slot::Waiting {
                generation, waker, ..
            } = slot
                && *generation == ticket.generation
            {
                let waker = waker.take();
                *slot = Slot::Ready {
                    generation: ticket.generation,
                    handoff,
                };
                self.waiting -= 1;
                return Ok(waker);
            }
            // Stale: that waiter gave up (or its slot was reused since).
        }
        Err(handoff)
    }

    /// A waiter's poll: takes what it was handed, or refreshes its waker.
    pub(crate) fn poll(&mut self, ticket: Ticket, waker: &Waker) -> Option<Handoff<T>> {
        let slot = &mut self.slots[ticket.index];
        match slot {
            Slot::Ready { generation, .. } if *generation == ticket.generation => {
                let Slot::Ready { handoff, .. } = std::mem::replace(
                    slot,
                    Slot::Vacant {
                        generation: ticket.generation,
                    },
                ) else {
                    unreachable!()
                };
                self.free.push(ticket.index);
                Some(handoff)
            }
            Slot::Waiting {
                generation,
                waker: stored,
                ..
            } if *generation == ticket.generation => {
                match stored {
                    Some(w) if w.will_wake(waker) => {}
                    _ => *stored = Some(waker.clone()),
                }
                None
            }
            _ => unreachable!("a ticket's slot is only vacated by its owner"),
        }
    }

    /// A waiter gave up: vacates its slot and returns what it had been handed but not yet
    /// taken, which the caller must pass on (a connection dropped here would leak its slot).
    pub(crate) fn cancel(&mut self, ticket: Ticket) -> Option<Handoff<T>> {
        let slot = std::mem::replace(
            &mut self.slots[ticket.index],
            Slot::Vacant {
                generation: ticket.generation,
            },
        );
        self.free.push(ticket.index);
        let handed = match slot {
            Slot::Waiting { .. } => {
                self.waiting -= 1;
                None
            }
            Slot::Ready { handoff, .. } => Some(handoff),
            Slot::Vacant { .. } => unreachable!("a ticket's slot is only vacated by its owner"),
        };
        // Stale entries are skipped by `hand_to_oldest`; compact when they pile up (many
        // waiters timing out while nothing is released) so the queue stays bounded.
        if self.queue.len() > 2 * self.waiting + 32 {
            let slots = &self.slots;
            self.queue.retain(|t| matches!(slots[t.index], Slot::Waiting { generation, .. } if generation == t.generation));
        }
        handed
    }

    /// Times out the waiters at the front whose deadline has passed (pushing their wakers
    /// onto `wakers`); returns the deadline of the first one still waiting.
    pub(crate) fn expire(&mut self, now: Instant, wakers: &mut Vec<Waker>) -> Option<Instant> {
        while let Some(&ticket) = self.queue.front() {
            match &self.slots[ticket.index] {
                Slot::Waiting {
                    generation,
                    deadline,
                    ..
                } if *generation == ticket.generation => {
                    if *deadline > now {
                        return Some(*deadline);
                    }
                    if let Ok(Some(waker)) = self.hand_to_oldest(Handoff::TimedOut) {
                        wakers.push(waker);
                    }
                }
                _ => {
                    self.queue.pop_front(); // stale
                }
            }
        }
        None
    }

    /// Closes the queue: every waiter gets [`Handoff::Closed`]; returns their wakers.
    pub(crate) fn close_all(&mut self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        while let Ok(waker) = self.hand_to_oldest(Handoff::Closed) {
            wakers.extend(waker);
        }
        wakers
    }

    /// Slot and queue capacity, for tests of boundedness.
    #[cfg(test)]
    pub(crate) fn footprint(&self) -> (usize, usize) {
        (self.slots.len(), self.queue.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn oldest_waiter_is_served_first_and_stale_ones_are_skipped() {
        let mut w: Waiters<u32> = Waiters::default();
        let a = w.push(Waker::noop().clone(), Instant::now());
        let b = w.push(Waker::noop().clone(), Instant::now());
        let c = w.push(Waker::noop().clone(), Instant::now());
        assert!(w.cancel(a).is_none());
        assert!(w.hand_to_oldest(Handoff::Conn(7)).is_ok());
        assert!(matches!(w.poll(b, Waker::noop()), Some(Handoff::Conn(7))));
        assert!(w.poll(c, Waker::noop()).is_none());
        assert_eq!(w.waiting(), 1);
    }

    #[test]
    fn cancelled_waiter_returns_what_it_was_handed() {
        let mut w: Waiters<u32> = Waiters::default();
        let a = w.push(Waker::noop().clone(), Instant::now());
        assert!(w.hand_to_oldest(Handoff::Conn(1)).is_ok());
        assert!(matches!(w.cancel(a), Some(Handoff::Conn(1))));
        assert!(matches!(
            w.hand_to_oldest(Handoff::Conn(2)),
            Err(Handoff::Conn(2))
        ));
    }

    #[test]
    fn expired_waiters_at_the_front_time_out_and_the_next_deadline_is_reported() {
        let mut w: Waiters<u32> = Waiters::default();
        let now = Instant::now();
        let ms = std::time::Duration::from_millis;
        let a = w.push(Waker::noop().clone(), now);
        let b = w.push(Waker::noop().clone(), now + ms(1));
        let c = w.push(Waker::noop().clone(), now + ms(50));
        let mut wakers = Vec::new();
        assert_eq!(w.expire(now + ms(10), &mut wakers), Some(now + ms(50)));
        assert_eq!(wakers.len(), 2);
        assert!(matches!(w.poll(a, Waker::noop()), Some(Handoff::TimedOut)));
        assert!(matches!(w.poll(b, Waker::noop()), Some(Handoff::TimedOut)));
        assert!(w.poll(c, Waker::noop()).is_none());
        assert_eq!(w.waiting(), 1);
    }

    #[test]
    fn queue_stays_bounded_when_waiters_keep_giving_up() {
        let mut w: Waiters<u32> = Waiters::default();
        let keep = w.push(Waker::noop().clone(), Instant::now());
        for _ in 0..10_000 {
            let t = w.push(Waker::noop().clone(), Instant::now());
            w.cancel(t);
        }
        let (slots, queue) = w.footprint();
        assert!(slots <= 2 && queue <= 40, "slots {slots}, queue {queue}");
        assert!(w.hand_to_oldest(Handoff::Permit).is_ok());
        assert!(matches!(w.poll(keep, Waker::noop()), Some(Handoff::Permit)));
    }
}
