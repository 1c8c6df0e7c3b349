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
//! [`run`] has each process's entry point; [`launch`] starts a whole local cluster.

pub mod fanout;
pub mod grace;
pub mod handlers;
pub mod hot;
pub mod launch;
pub mod membership;
pub mod redis_register;
pub mod remote;
pub mod routes;
pub mod run;
pub mod services;
