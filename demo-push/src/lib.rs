#![doc = include_str!("../README.md")]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![deny(unsafe_code)] // one audited exception: `memory` calls glibc's malloc_trim

pub mod admission;
pub mod center;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod courier;
pub mod dispatcher;
mod error;
pub mod fdlimit;
pub mod frame;
pub mod ids;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod node;
pub mod pacing;
pub mod pusher;
pub mod records;
pub mod redis_conn;
pub mod register;
pub mod remote;
pub mod retries;
pub mod room;
pub mod rooms;
pub mod saver;
pub mod serde_duration;
pub mod system;
pub mod tls;
pub mod token;
pub mod workers;

pub use error::PushError;

/// What [`contract!`] expands to needs.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use longlink_rpc;
}
