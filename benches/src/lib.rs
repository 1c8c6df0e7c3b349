//! Benchmarks and load tools comparing longlink with its peers.
//!
//! This crate is filled in by a later issue; see the repository README.
