//! Method id → its two histograms, found without a lock or an allocation once the method
//! has been seen.
//!
//! An open-addressing table of [`SLOTS`] slots, each a `OnceLock<Box<Entry>>`. A lookup
//! hashes the id and walks the slots from there: a filled slot with the id is the answer
//! (one atomic load per slot visited); an empty one means the method is new, and the slot
//! is filled with `get_or_init` — two threads racing for one slot both leave with the
//! entry that won, and the one whose method lost walks on. Nothing is ever removed, so a
//! reference to an entry lives as long as the table. At most [`MAX_METHODS`] methods are
//! tracked, so the table is never more than half full and walks stay short; the calls of
//! any further method are recorded in `other`.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::{Histogram, HistogramSnapshot};

/// Methods a client or a server tracks one by one; calls of more methods than this are
/// recorded together under `method="other"`.
pub const MAX_METHODS: usize = 64;

/// Twice the methods tracked (a power of two, for the mask): never more than half full.
const SLOTS: usize = 2 * MAX_METHODS;

/// The two histograms of one method on one side of a call.
#[derive(Debug, Default)]
pub(crate) struct Timings {
    /// Client: waiting for a flow-control permit. Server: arrival → dispatch.
    pub(crate) queue: Histogram,
    /// Client: permit → answer (the round trip). Server: dispatch → answer ready (the
    /// handler).
    pub(crate) run: Histogram,
}

struct Entry {
    method: u32,
    timings: Timings,
}

/// One row of a snapshot: the method (`None` for `other`) and its two histograms.
pub(crate) type Row = (Option<u32>, HistogramSnapshot, HistogramSnapshot);

pub(crate) struct MethodTable {
    slots: Box<[OnceLock<Box<Entry>>]>,
    /// Slots filled (it may pass `MAX_METHODS` by the number of threads that raced past
    /// the check at once; `SLOTS` bounds it anyway).
    tracked: AtomicUsize,
    other: Timings,
}

impl MethodTable {
    pub(crate) fn new() -> MethodTable {
        MethodTable {
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
            tracked: AtomicUsize::new(0),
            other: Timings::default(),
        }
    }

    /// Fibonacci hashing: typed ids are hashes already, raw ids are often 1, 2, 3 …
    fn home(method: u32) -> usize {
        (method.wrapping_mul(0x9E37_79B9) >> (32 - SLOTS.trailing_zeros())) as usize
    }

    /// The histograms of `method`, made on its first call (one allocation, once).
    pub(crate) fn get(&self, method: u32) -> &Timings {
        let mut index = Self::home(method);
        for _ in 0..SLOTS {
            let slot = &self.slots[index];
            let entry = match slot.get() {
                Some(entry) => entry,
                None => {
                    if self.tracked.load(Relaxed) >= MAX_METHODS {
                        return &self.other;
                    }
                    slot.get_or_init(|| {
                        self.tracked.fetch_add(1, Relaxed);
                        Box::new(Entry {
                            method,
                            timings: Timings::default(),
                        })
                    })
                }
            };
            if entry.method == method {
                return &entry.timings;
            }
            index = (index + 1) % SLOTS;
        }
        &self.other
    }

    /// Where calls of unknown or untracked methods go.
    pub(crate) fn other(&self) -> &Timings {
        &self.other
    }

    /// Every tracked method by id, then `other` if it counted anything.
    pub(crate) fn snapshot(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .slots
            .iter()
            .filter_map(OnceLock::get)
            .map(|e| {
                (
                    Some(e.method),
                    e.timings.queue.snapshot(),
                    e.timings.run.snapshot(),
                )
            })
            .collect();
        rows.sort_by_key(|row| row.0);
        let other = (None, self.other.queue.snapshot(), self.other.run.snapshot());
        if other.1.count() + other.2.count() > 0 {
            rows.push(other);
        }
        rows
    }
}

impl fmt::Debug for MethodTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodTable")
            .field("tracked", &self.tracked.load(Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_method_finds_its_own_histograms_again() {
        let table = MethodTable::new();
        table.get(7).run.record(Duration::from_millis(1));
        table.get(7).run.record(Duration::from_millis(1));
        table.get(8).queue.record(Duration::ZERO);
        let rows = table.snapshot();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].0, rows[0].2.count()), (Some(7), 2));
        assert_eq!((rows[1].0, rows[1].1.count()), (Some(8), 1));
        assert!(std::ptr::eq(table.get(7), table.get(7)));
    }

    #[test]
    fn methods_past_the_cap_are_counted_as_other() {
        let table = MethodTable::new();
        for method in 0..(MAX_METHODS as u32 + 10) {
            table.get(method).run.record(Duration::from_micros(5));
        }
        let rows = table.snapshot();
        assert_eq!(rows.len(), MAX_METHODS + 1);
        let other = rows.last().unwrap();
        assert_eq!((other.0, other.2.count()), (None, 10));
        // A tracked method still finds its own, whatever was refused after it.
        assert!(std::ptr::eq(table.get(0), table.get(0)));
        assert!(std::ptr::eq(table.get(10_000), table.other()));
    }

    #[test]
    fn ids_that_share_a_home_slot_each_get_their_own() {
        let table = MethodTable::new();
        let home = MethodTable::home(1);
        let twins: Vec<u32> = (2..u32::MAX)
            .filter(|m| MethodTable::home(*m) == home)
            .take(3)
            .collect();
        for (i, m) in [1].iter().chain(&twins).enumerate() {
            for _ in 0..=i {
                table.get(*m).run.record(Duration::from_micros(1));
            }
        }
        let counts: Vec<u64> = table.snapshot().iter().map(|r| r.2.count()).collect();
        assert_eq!(counts.iter().sum::<u64>(), 1 + 2 + 3 + 4);
        assert_eq!(counts.len(), 4);
    }

    #[test]
    fn threads_racing_on_first_sight_count_every_call() {
        let table = Arc::new(MethodTable::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    for i in 0..4_000u32 {
                        table.get(i % 16).run.record(Duration::from_micros(3));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let rows = table.snapshot();
        assert_eq!(rows.len(), 16, "one entry per method, none twice");
        assert!(rows.iter().all(|r| r.2.count() == 1_000));
    }
}
