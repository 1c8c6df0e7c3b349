#![doc = include_str!("../README.md")]
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
mod slot_guard;
mod stats;
mod waiters;

#[cfg(any(feature = "mysql", feature = "postgres", feature = "sqlite"))]
pub mod db;

pub use conn::PooledConn;
pub use error::PoolError;
pub use manager::Manager;
pub use options::{Builder, Options, TestOnAcquire};
pub use pool::Pool;
pub use stats::Stats;
