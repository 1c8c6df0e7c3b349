//! Pipelined, multiplexed RPC over long-lived TCP connections with per-target flow control.
//!
//! This crate is filled in by a later issue; see the repository README.
