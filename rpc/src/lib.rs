#![doc = include_str!("../README.md")]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

mod balance;
pub mod client;
mod compression;
mod error;
pub mod metrics;
mod request;
pub mod server;
mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub mod trace;
pub mod typed;
mod wire;

pub use balance::Balancer;
pub use client::{
    Builder as ClientBuilder, Client, ClientStats, Hedge, RetryBudget, RetryPolicy, Strategy,
};
#[cfg(feature = "compression")]
pub use compression::{Compression, CompressionStats};
pub use error::{DeadlinePhase, OverloadScope, RpcError};
pub use request::{Flags, Metadata, MetadataError, Request, Response, Status, method_id};
pub use server::{Builder as ServerBuilder, Server, ServerHandle, ServerStats};
#[cfg(feature = "tls")]
pub use tls::{TlsClient, TlsServer};
pub use typed::{Caller, ServiceError};
