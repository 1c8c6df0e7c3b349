//! One timing wheel for every connection's deadline (the AUTH deadline, then two missed
//! heartbeats), instead of a timer per connection.
//!
//! Slots of one tick each. A connection is filed under the slot of its deadline; a
//! heartbeat only moves the deadline in the connection's own state (an atomic store), not
//! in the wheel. When a slot comes up, each connection in it is checked: if its deadline
//! has passed it is timed out, otherwise it is filed again under its current deadline.
//! A deadline moved *earlier* (the AUTH deadline replaced by a short heartbeat window) is
//! filed again at once with [`Wheel::reschedule`]; the entry left behind is recognised as
//! stale by its tick and dropped, so a connection is never in the wheel twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::model::ConnId;

/// One slot of the wheel: the connections whose deadline falls in it, with the tick each
/// was filed under.
type Slot = Vec<(ConnId, Arc<Deadline>, u64)>;

/// A deadline a connection keeps in its own state, in wheel milliseconds.
#[derive(Debug, Default)]
pub(crate) struct Deadline {
    at: AtomicU64,
    /// The tick of the entry that counts; other entries for this deadline are stale.
    filed: AtomicU64,
}

impl Deadline {
    /// Moves the deadline later (or to `u64::MAX`: closed). Earlier moves go through
    /// [`Wheel::reschedule`].
    pub(crate) fn set(&self, at_ms: u64) {
        self.at.store(at_ms, Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.at.load(Relaxed)
    }
}

#[derive(Debug)]
pub(crate) struct Wheel {
    start: Instant,
    tick: Duration,
    slots: Mutex<Vec<Slot>>,
    /// The next slot to fire, as a tick count since `start`.
    next_tick: AtomicU64,
}

impl Wheel {
    pub(crate) fn new(tick: Duration, slots: usize) -> Wheel {
        Wheel {
            start: Instant::now(),
            tick,
            slots: Mutex::new(vec![Vec::new(); slots.max(2)]),
            next_tick: AtomicU64::new(1),
        }
    }

    /// Milliseconds since the wheel started: the unit of deadlines.
    pub(crate) fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn tick_of(&self, at_ms: u64) -> u64 {
        at_ms.div_ceil(self.tick.as_millis().max(1) as u64)
    }

    /// Files `conn` under its deadline.
    pub(crate) fn insert(&self, conn: ConnId, deadline: Arc<Deadline>) {
        let mut slots = self.slots.lock();
        let n = slots.len() as u64;
        // Never into a slot that has already fired this round.
        let tick = self
            .tick_of(deadline.get())
            .max(self.next_tick.load(Relaxed));
        deadline.filed.store(tick, Relaxed);
        slots[(tick % n) as usize].push((conn, deadline, tick));
    }

    /// Sets a deadline that may be earlier than the one it is filed under.
    pub(crate) fn reschedule(&self, conn: ConnId, deadline: &Arc<Deadline>, at_ms: u64) {
        deadline.set(at_ms);
        if self.tick_of(at_ms) < deadline.filed.load(Relaxed) {
            self.insert(conn, Arc::clone(deadline));
        }
    }

    /// Fires the slot of the current tick: returns the connections whose deadline passed;
    /// the others are filed again.
    pub(crate) fn advance(&self) -> Vec<ConnId> {
        let now = self.now_ms();
        let mut expired = Vec::new();
        let mut slots = self.slots.lock();
        let n = slots.len() as u64;
        let mut tick = self.next_tick.load(Relaxed);
        while tick <= self.tick_of(now) {
            let due = std::mem::take(&mut slots[(tick % n) as usize]);
            self.next_tick.store(tick + 1, Relaxed);
            for (conn, deadline, filed) in due {
                let at = deadline.get();
                if at == u64::MAX || deadline.filed.load(Relaxed) != filed {
                    continue; // closed, or filed again elsewhere: dropped from here
                }
                if at <= now {
                    expired.push(conn);
                } else {
                    let refile = self.tick_of(at).max(tick + 1);
                    deadline.filed.store(refile, Relaxed);
                    slots[(refile % n) as usize].push((conn, deadline, refile));
                }
            }
            tick += 1;
        }
        expired
    }

    /// Drops the entries of closed connections now instead of when their slot comes up
    /// (a heartbeat window later), and the slots' spare capacity: after many closes their
    /// small allocations would otherwise pin the pages a trim wants to give back.
    pub(crate) fn purge_closed(&self) -> usize {
        let mut slots = self.slots.lock();
        let mut purged = 0;
        for slot in slots.iter_mut() {
            let before = slot.len();
            slot.retain(|(_, deadline, filed)| {
                deadline.get() != u64::MAX && deadline.filed.load(Relaxed) == *filed
            });
            purged += before - slot.len();
            slot.shrink_to_fit();
        }
        purged
    }

    /// Entries filed now (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.slots.lock().iter().map(Vec::len).sum()
    }

    pub(crate) fn tick(&self) -> Duration {
        self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_fire_once_and_moved_deadlines_are_refiled() {
        let wheel = Wheel::new(Duration::from_millis(1), 8);
        let soon = Arc::new(Deadline::default());
        soon.set(wheel.now_ms() + 2);
        let later = Arc::new(Deadline::default());
        later.set(wheel.now_ms() + 2);
        let closed = Arc::new(Deadline::default());
        closed.set(wheel.now_ms() + 2);
        wheel.insert(1, Arc::clone(&soon));
        wheel.insert(2, Arc::clone(&later));
        wheel.insert(3, Arc::clone(&closed));
        later.set(wheel.now_ms() + 30); // a heartbeat arrived: beyond the wheel's 8 slots
        closed.set(u64::MAX);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(wheel.advance(), vec![1]);
        assert_eq!(
            wheel.len(),
            1,
            "the moved one is refiled, the closed one dropped"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(wheel.advance(), vec![2]);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn purging_drops_closed_and_stale_entries_and_keeps_live_ones() {
        let wheel = Wheel::new(Duration::from_millis(1), 64);
        let live = Arc::new(Deadline::default());
        live.set(wheel.now_ms() + 50);
        let closed = Arc::new(Deadline::default());
        closed.set(wheel.now_ms() + 50);
        wheel.insert(1, Arc::clone(&live));
        wheel.insert(2, Arc::clone(&closed));
        wheel.reschedule(1, &live, wheel.now_ms() + 5); // leaves a stale entry behind
        closed.set(u64::MAX);
        assert_eq!(wheel.len(), 3);
        assert_eq!(wheel.purge_closed(), 2);
        assert_eq!(wheel.len(), 1);
        assert_eq!(Arc::strong_count(&closed), 1, "the wheel let go of it");
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(wheel.advance(), vec![1]);
    }

    #[test]
    fn a_deadline_moved_earlier_fires_early_and_once() {
        let wheel = Wheel::new(Duration::from_millis(1), 64);
        let d = Arc::new(Deadline::default());
        d.set(wheel.now_ms() + 50);
        wheel.insert(7, Arc::clone(&d));
        wheel.reschedule(7, &d, wheel.now_ms() + 2);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(wheel.advance(), vec![7]);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            wheel.advance(),
            Vec::<ConnId>::new(),
            "the stale entry is dropped"
        );
        assert_eq!(wheel.len(), 0);
    }
}
