//! A long-connection push system built on longlink-codec, longlink-pool and longlink-rpc.
//!
//! This crate is filled in by a later issue; see the repository README.
