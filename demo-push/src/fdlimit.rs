//! The process's open-file limit. Every connection is a file: a room raises its soft limit
//! to the hard one at start, reports both, and takes no more connections than the limit
//! leaves after a reserve for its listeners, stores and internal connections. On these
//! machines the hard limit is 20,000, so a room holds up to about 19,900 connections and
//! more users mean more rooms.

use rlimit::Resource;

/// Files kept back for listeners, store and RPC connections, logs.
pub const RESERVE: u64 = 100;

/// The open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit (what `EMFILE` is measured against).
    pub soft: u64,
    /// The hard limit (the most the soft one can be raised to).
    pub hard: u64,
}

impl FdLimit {
    /// Connections a room can hold under this limit.
    ///
    /// ```
    /// use longlink_push::fdlimit::FdLimit;
    /// assert_eq!(FdLimit { soft: 20_000, hard: 20_000 }.connection_capacity(), 19_900);
    /// assert_eq!(FdLimit { soft: 50, hard: 50 }.connection_capacity(), 0);
    /// ```
    pub fn connection_capacity(&self) -> usize {
        self.soft.saturating_sub(RESERVE) as usize
    }
}

/// The limit now.
pub fn current() -> std::io::Result<FdLimit> {
    let (soft, hard) = Resource::NOFILE.get()?;
    Ok(FdLimit { soft, hard })
}

/// Raises the soft limit to the hard one; returns the limit after.
pub fn raise() -> std::io::Result<FdLimit> {
    let (soft, hard) = Resource::NOFILE.get()?;
    if soft < hard {
        Resource::NOFILE.set(hard, hard)?;
    }
    current()
}
