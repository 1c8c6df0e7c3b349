//! Unicast through the push system end to end: clients connected through the dispatcher,
//! pushes through the center's HTTP API, latency from the API call to the client's receipt.
//! [`suite`] runs it against the single process and against a 2-room cluster with each RPC
//! strategy (multiplexed, pooled, short), each system started as child processes of the
//! `longlink-push` binary.

pub mod scale;
pub mod suite;
pub mod system;
pub mod unicast;
pub mod worker;
