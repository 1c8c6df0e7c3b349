//! Giving memory back after connections close.
//!
//! Freed connection state goes back to the allocator, not to the system: glibc keeps it in
//! its arenas (one per worker thread), scattered between live objects, and the room's maps
//! keep the capacity of their busiest moment. After a large drop in connections the room
//! shrinks its maps and asks the allocator to return the free pages
//! ([`release_free_memory`](crate::memory::release_free_memory)).

use super::RoomInner;

/// Connections that must have closed since the last trim before another one.
const MIN_CLOSED: u64 = 1_000;

/// Counts closes since the last trim; decides when to trim.
#[derive(Debug, Default)]
pub(super) struct Trimmer {
    closed_at_last_trim: u64,
    /// Closes counted at the previous check.
    last_closed: u64,
}

impl Trimmer {
    /// Called every second or so with the connections accepted in total and those open
    /// now: `true` when at least 1,000 have closed since the last trim, at least as many as
    /// are open (the room holds about half of what it did, or less), and the closing has
    /// stopped (nothing closed since the last check: their state is freed by then). Under
    /// closes that never stop, it trims once four times as many as are open have closed.
    /// A trim costs a few milliseconds per 100 MB.
    pub(super) fn should_trim(&mut self, accepted: u64, open: u64) -> bool {
        let closed = accepted.saturating_sub(open);
        let settled = closed == self.last_closed;
        self.last_closed = closed;
        let since = closed.saturating_sub(self.closed_at_last_trim);
        let dropped = since >= MIN_CLOSED && since >= open;
        if (dropped && settled) || since >= 4 * open.max(MIN_CLOSED) {
            self.closed_at_last_trim = closed;
            true
        } else {
            false
        }
    }
}

/// Shrinks the room's maps and returns free memory to the system.
pub(super) async fn trim(room: &RoomInner) {
    for shard in &room.conns {
        let mut shard = shard.lock();
        if shard.capacity() > 2 * shard.len() + 16 {
            shard.shrink_to_fit();
        }
    }
    for shard in &room.users {
        let mut shard = shard.lock();
        if shard.capacity() > 2 * shard.len() + 16 {
            shard.shrink_to_fit();
        }
    }
    let purged = room.wheel.purge_closed();
    let released = crate::memory::release_free_memory(&room.metrics).await;
    tracing::debug!(
        released,
        purged,
        open = room.metrics.connections.get(),
        "memory trimmed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_a_large_drop_once_the_closing_stops() {
        let mut t = Trimmer::default();
        assert!(!t.should_trim(10_000, 10_000));
        assert!(!t.should_trim(10_000, 9_500), "500 closed: too few");
        assert!(!t.should_trim(10_000, 6_000), "4,000 closed, 6,000 open");
        assert!(
            !t.should_trim(10_000, 4_000),
            "6,000 closed, 4,000 open, still closing"
        );
        assert!(t.should_trim(10_000, 4_000), "closing stopped");
        assert!(
            !t.should_trim(10_000, 2_500),
            "1,500 more closed, 2,500 open"
        );
        assert!(
            !t.should_trim(10_000, 2_500),
            "settled, but fewer closed than open"
        );
        assert!(!t.should_trim(10_000, 500));
        assert!(
            t.should_trim(10_000, 500),
            "3,500 more closed, 500 open, settled"
        );
        let mut small = Trimmer::default();
        assert!(!small.should_trim(900, 0));
        assert!(
            !small.should_trim(900, 0),
            "a small room never gets to 1,000 closed"
        );
        let mut churn = Trimmer::default();
        let trims = (1..=100u64)
            .filter(|i| churn.should_trim(2_000 + i * 1_000, 2_000))
            .count();
        assert_eq!(
            trims, 12,
            "1,000 closes a second with 2,000 open: every 8,000"
        );
    }
}
