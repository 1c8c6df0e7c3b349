//! A lazily-connecting database pool with Go database/sql semantics.
//!
//! This crate is filled in by a later issue; see the repository README.
