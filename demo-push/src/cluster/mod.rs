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
//! Every process runs a component of the single-process system with remote
//! implementations of what it depends on (see [`node`](crate::node) and
//! [`remote`](crate::remote)). [`run`] has each process's entry point; [`launch`] starts a
//! whole local cluster.

pub mod launch;
pub mod run;
