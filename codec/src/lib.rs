#![doc = include_str!("../README.md")]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]

pub mod buf_pool;
mod error;
pub mod push;
pub mod rpc;
pub mod ws;

pub use buf_pool::{BufPool, BufPoolStats, PooledBuf};
pub use error::CodecError;
