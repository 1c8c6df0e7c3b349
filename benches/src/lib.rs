//! Benchmarks and load tools comparing longlink with the crates users would pick instead.
//!
//! The criterion benches live in `benches/`; run them with `cargo bench -p longlink-benches`
//! (or `scripts/bench.sh`). Each bench measures its baseline in the same run and ends by
//! printing a table of ratios, read back from criterion's own estimates by [`report`].

pub mod plot;
pub mod push_load;
pub mod report;
pub mod rpc_load;
