//! Message ids without a single issuer.
//!
//! An id is 53 bits, so it survives a JavaScript number:
//!
//! ```text
//!   ms since 2026-01-01 (43 bits, to the year 2304) | instance (4 bits) | sequence (6 bits)
//! ```
//!
//! Each center holds an **instance number** (0–15) leased in Redis ([`IdLease`]) and issues
//! ids only from its own lane, so two centers never issue the same id, whatever their
//! clocks say. Within a lane ids strictly increase: a clock that steps back does not send
//! them back (the lane keeps counting from its last millisecond), 64 ids in one millisecond
//! borrow the next one. Across a restart the lane starts above the largest stored id and
//! above the lease's *high-water mark* — the millisecond up to which the lane's last holder
//! was allowed to issue — so a restart with the clock set back repeats no id, stored or
//! not.
//!
//! **Ordering.** Ids are unique in the cluster and increase with time *per center*; ids from
//! two centers are ordered by their millisecond, which is each center's own clock — two
//! pushes made a few milliseconds apart through two centers may be numbered the other way
//! round (by at most the clocks' skew). A user's messages are delivered in the order their
//! pushes reached the rooms; clients deduplicate by id, never by "highest seen".
//!
//! The single process is instance 0 with no lease (it is the only issuer).

mod lease;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

pub use lease::{IdLease, LeaseError};

/// 2026-01-01T00:00:00Z in Unix milliseconds: message ids count from here.
pub const ID_EPOCH_MS: u64 = 1_767_225_600_000;
/// Bits of the instance number.
pub const INSTANCE_BITS: u32 = 4;
/// Instances that can issue ids at once.
pub const INSTANCES: u64 = 1 << INSTANCE_BITS;
/// Bits of the sequence within one millisecond.
pub const SEQ_BITS: u32 = 6;
const LOW_BITS: u32 = INSTANCE_BITS + SEQ_BITS;
const SEQ_MAX: u64 = (1 << SEQ_BITS) - 1;

/// The millisecond (since [`ID_EPOCH_MS`]) an id was issued in.
pub fn ms_of(id: u64) -> u64 {
    id >> LOW_BITS
}

/// The smallest id of a millisecond (since [`ID_EPOCH_MS`]).
pub fn first_id_of_ms(ms: u64) -> u64 {
    ms << LOW_BITS
}

/// The instance that issued an id.
pub fn instance_of(id: u64) -> u64 {
    (id >> SEQ_BITS) & (INSTANCES - 1)
}

/// Milliseconds since [`ID_EPOCH_MS`] now, by the wall clock.
pub fn epoch_ms() -> u64 {
    crate::model::now_ms().saturating_sub(ID_EPOCH_MS)
}

/// Ids may not be issued now: the lane's lease is not known to be held.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message ids cannot be issued: {0}")]
pub struct IdsUnavailable(pub String);

/// Hands out the ids of one lane (instance), strictly increasing.
///
/// ```
/// use longlink_push::ids::{IdGenerator, instance_of};
/// let ids = IdGenerator::starting_after(0);
/// let (a, b) = (ids.next().unwrap(), ids.next().unwrap());
/// assert!(b > a && b < 1 << 53);
/// let lane_3 = IdGenerator::for_instance(3, b);
/// let c = lane_3.next().unwrap();
/// assert!(c > b && instance_of(c) == 3);
/// ```
#[derive(Debug)]
pub struct IdGenerator {
    instance: u64,
    /// (millisecond, sequence) of the last id.
    last: Mutex<(u64, u64)>,
    /// Ids may be issued up to this millisecond (the lease's reach); `u64::MAX`: no bound.
    until_ms: Arc<AtomicU64>,
    /// Every id is above it.
    floor: u64,
    clock: fn() -> u64,
}

impl IdGenerator {
    /// Instance 0 with no lease (the single process), every id above `floor`.
    pub fn starting_after(floor: u64) -> IdGenerator {
        IdGenerator::for_instance(0, floor)
    }

    /// Lane `instance` (below [`INSTANCES`]), every id above `floor` (the largest id already
    /// stored, and the lease's high-water mark), so a restart never reuses one even if the
    /// clock went back.
    pub fn for_instance(instance: u64, floor: u64) -> IdGenerator {
        IdGenerator::with_clock(instance, floor, epoch_ms)
    }

    /// As [`for_instance`](Self::for_instance) with another clock (milliseconds since
    /// [`ID_EPOCH_MS`]): tests step it back.
    pub fn with_clock(instance: u64, floor: u64, clock: fn() -> u64) -> IdGenerator {
        assert!(instance < INSTANCES, "instance {instance} out of range");
        IdGenerator {
            instance,
            // The first id is in the millisecond after the floor's: above it in any lane.
            last: Mutex::new((ms_of(floor) + 1, u64::MAX)),
            until_ms: Arc::new(AtomicU64::new(u64::MAX)),
            floor,
            clock,
        }
    }

    /// Bounds the lane by a lease: ids are issued only up to the millisecond `until_ms`
    /// holds (the lease moves it on; 0 stops the lane).
    pub fn bounded_by(mut self, until_ms: Arc<AtomicU64>) -> IdGenerator {
        self.until_ms = until_ms;
        self
    }

    /// The lane.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The next id; refused while the lane's lease is not known to be held, or when the
    /// lane would run past it.
    pub fn next(&self) -> Result<u64, IdsUnavailable> {
        let now = (self.clock)();
        let mut last = self.last.lock();
        let (ms, seq) = match *last {
            (ms, _) if now > ms => (now, 0),
            // The first id after the floor.
            (ms, seq) if seq == u64::MAX => (ms, 0),
            (ms, seq) if seq < SEQ_MAX => (ms, seq + 1),
            (ms, _) => (ms + 1, 0),
        };
        let until = self.until_ms.load(Ordering::Acquire);
        if ms > until {
            return Err(IdsUnavailable(if until == 0 {
                format!("the lease of id lane {} is not held", self.instance)
            } else {
                format!(
                    "id lane {} is at the end of its lease (not renewed)",
                    self.instance
                )
            }));
        }
        *last = (ms, seq);
        Ok((ms << LOW_BITS) | (self.instance << SEQ_BITS) | seq)
    }

    /// The last id handed out (the floor before the first): every id handed out later is
    /// larger.
    pub fn last(&self) -> u64 {
        match *self.last.lock() {
            (_, u64::MAX) => self.floor,
            (ms, seq) => (ms << LOW_BITS) | (self.instance << SEQ_BITS) | seq,
        }
    }

    /// The millisecond of the last id: a lease records it as its high-water mark.
    pub fn last_ms(&self) -> u64 {
        self.last.lock().0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::AtomicU64;

    use super::*;

    static CLOCK: AtomicU64 = AtomicU64::new(1_000_000);
    fn test_clock() -> u64 {
        CLOCK.load(Ordering::SeqCst)
    }

    #[test]
    fn a_burst_in_one_millisecond_borrows_the_next_and_stays_increasing() {
        let ids = IdGenerator::with_clock(5, 0, || 42);
        let got: Vec<u64> = (0..200).map(|_| ids.next().unwrap()).collect();
        assert!(got.windows(2).all(|w| w[1] > w[0]));
        assert!(got.iter().all(|&id| instance_of(id) == 5));
        assert_eq!(ms_of(got[0]), 42);
        assert_eq!(ms_of(got[199]), 42 + 199 / 64);
    }

    #[test]
    fn a_clock_stepped_back_neither_repeats_nor_decreases() {
        let ids = IdGenerator::with_clock(1, 0, test_clock);
        let before: Vec<u64> = (0..100).map(|_| ids.next().unwrap()).collect();
        CLOCK.fetch_sub(10_000, Ordering::SeqCst);
        let after: Vec<u64> = (0..100).map(|_| ids.next().unwrap()).collect();
        assert!(after[0] > *before.last().unwrap());
        // A restart from the stored floor with the clock still behind.
        let restarted = IdGenerator::with_clock(1, *after.last().unwrap(), test_clock);
        let again = restarted.next().unwrap();
        assert!(again > *after.last().unwrap());
        CLOCK.fetch_add(10_000, Ordering::SeqCst);
    }

    #[test]
    fn two_lanes_in_the_same_milliseconds_never_collide() {
        let (a, b) = (
            IdGenerator::with_clock(0, 0, || 7),
            IdGenerator::with_clock(1, 0, || 7),
        );
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(a.next().unwrap()));
            assert!(seen.insert(b.next().unwrap()));
        }
    }

    #[test]
    fn a_lane_past_its_lease_refuses() {
        let until = Arc::new(AtomicU64::new(0));
        let ids = IdGenerator::with_clock(2, 0, || 100).bounded_by(Arc::clone(&until));
        assert!(ids.next().unwrap_err().0.contains("not held"));
        until.store(100, Ordering::Release);
        assert!(ids.next().is_ok());
        until.store(99, Ordering::Release);
        assert!(ids.next().unwrap_err().0.contains("end of its lease"));
    }

    #[test]
    fn the_first_id_after_a_floor_from_another_lane_is_above_it() {
        let floor = (500 << LOW_BITS) | (15 << SEQ_BITS) | SEQ_MAX;
        let ids = IdGenerator::with_clock(0, floor, || 10);
        assert_eq!(ids.last(), floor);
        let first = ids.next().unwrap();
        assert!(first > floor && ids.last() == first);
    }
}
