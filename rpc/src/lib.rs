//! Pipelined, multiplexed RPC over long-lived TCP connections.
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

pub mod client;
mod error;
mod request;
pub mod server;
mod wire;

pub use client::{Builder as ClientBuilder, Client, ClientStats, Strategy};
pub use error::{DeadlinePhase, OverloadScope, RpcError};
pub use request::{Request, Response, Status, method_id};
pub use server::{Server, ServerHandle, ServerStats};
