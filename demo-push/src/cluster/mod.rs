//! The cluster mode: each service its own process, talking longlink-rpc (multiplexed by
//! default), with sessions and membership in Redis and messages in MySQL/MariaDB.
//!
//! ```text
//!            clients ──ws/tcp──▶ room ×N ──rpc──▶ register ──▶ Redis (sessions, groups,
//!               │                 ▲  │                           membership, epoch)
//!      GET /dispatch              │  └──rpc──▶ saver ──▶ MySQL (messages, deliveries)
//!               ▼                 │  └──rpc──▶ coordinator ──▶ webhooks
//!          dispatcher        rpc: deliver / broadcast / kick / drain
//!                                 │
//!   business ──HTTP──▶ center ────┘ (store via saver, look up via register, one call per room)
//! ```
//!
//! Every role runs as any number of instances at once: services find each other through
//! membership in Redis ([`services`], the rooms' in [`rooms`](crate::rooms)), callers
//! balance and fail over with the rpc crate's `Balancer`, centers issue ids from leased
//! lanes ([`ids`](crate::ids)), savers share the pending index safely
//! ([`saver`](crate::saver)), and every process drains on SIGTERM before it exits.
//!
//! Every process runs a component of the single-process system with remote
//! implementations of what it depends on (see [`node`](crate::node) and
//! [`remote`](crate::remote)). [`run`] has each process's entry point; [`launch`] starts a
//! whole local cluster.

pub mod launch;
pub mod run;
pub mod services;
