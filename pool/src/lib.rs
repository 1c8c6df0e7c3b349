//! A database pool with Go `database/sql` semantics.
//!
//! [`Pool`] is generic over a [`Manager`] (how to connect, check and reset a connection).
//! Opening it does no I/O; connections are made on first use, kept and reused, closed after
//! their lifetime or idle time; acquires wait in line, fairly, up to a timeout; a dropped
//! acquire or connection never leaks a slot. See `docs/pool.md` for how each `database/sql`
//! behaviour maps here.
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

mod conn;
mod error;
mod manager;
mod options;
mod pool;
mod reaper;
mod shared;
mod stats;
mod waiters;

pub mod db;

pub use conn::PooledConn;
pub use error::PoolError;
pub use manager::Manager;
pub use options::{Builder, Options, TestOnAcquire};
pub use pool::Pool;
pub use stats::Stats;
