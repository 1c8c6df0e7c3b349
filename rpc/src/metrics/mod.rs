//! Latency histograms per method, on both sides of a call, and their Prometheus text.
//!
//! | side | histogram | from → to |
//! |---|---|---|
//! | client | `queue_wait` | the call asks for a flow-control permit → it has one (0 when free at once) |
//! | client | `round_trip` | the permit is held → the answer is read (connect or pool checkout included) |
//! | server | `queue` | the request is read off the socket → its handler starts (a slot, its task) |
//! | server | `handler` | the handler starts → its answer is ready for the socket |
//!
//! They are in [`ClientStats::latency`](crate::ClientStats::latency) and
//! [`ServerStats::latency`](crate::ServerStats::latency), a row per method, and rendered by
//! [`ClientStats::render_prometheus`](crate::ClientStats::render_prometheus),
//! [`ServerStats::render_prometheus`](crate::ServerStats::render_prometheus) or, for many
//! on one page, an [`Exposition`].
//!
//! **Buckets** are fixed, the same in every process (so Prometheus can add instances up):
//! 1-2-5 steps from 1 µs to 10 s and `+Inf` ([`Histogram::BOUNDS`]; why, in [`Histogram`]).
//!
//! **Cost per call**, on each side: two clock reads (`Instant::now()`; the server reuses
//! the arrival instant its deadline already needed, the client the one its queue took),
//! a method lookup that takes no lock and allocates nothing once the method has been seen
//! (an open-addressing table, one atomic load per slot visited), and four relaxed
//! `fetch_add`s (a bucket and a sum per histogram). A call dropped by its caller records
//! what it had finished (its queue wait) and nothing after; there is nothing to give back.
//!
//! **Methods** are tracked up to [`MAX_METHODS`] per client or server; the calls of any
//! more go to one row, `method="other"` (its counts are what overflowed). Names come from
//! the typed layer or [`name_method`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use longlink_rpc::{Client, Server, ServiceError};
//!
//! longlink_rpc::service! {
//!     pub mod accounts {
//!         fn transfer(from: u64, to: u64, cents: i64) -> i64;
//!     }
//! }
//! struct Bank;
//! impl accounts::Handler for Bank {
//!     async fn transfer(&self, _from: u64, _to: u64, cents: i64) -> Result<i64, ServiceError> {
//!         Ok(cents)
//!     }
//! }
//!
//! let server = Server::builder().bind("127.0.0.1:0").await?;
//! let (addr, handle) = (server.local_addr().to_string(), server.handle());
//! tokio::spawn(server.serve(accounts::Server::new(Bank)));
//! let client = Client::new(addr);
//! accounts::Client::new(client.clone()).transfer(1, 2, 100).await?;
//!
//! let text = client.stats().render_prometheus("longlink_rpc", &[("peer", "bank")]);
//! assert!(text.contains(
//!     "longlink_rpc_client_round_trip_seconds_count{peer=\"bank\",method=\"accounts.transfer\"} 1\n"
//! ));
//! let served = &handle.stats().latency[0];
//! assert_eq!((served.name, served.handler.count()), (Some("accounts.transfer"), 1));
//! # Ok(()) }
//! ```

mod histogram;
mod latency;
mod names;
mod prometheus;
mod table;

pub use self::histogram::{BUCKETS, Histogram, HistogramSnapshot};
pub use self::latency::{CallHistograms, CallLatency, HandlerLatency};
pub(crate) use self::names::name_methods_if_unnamed;
pub use self::names::{method_name, name_method};
pub use self::prometheus::Exposition;
pub use self::table::MAX_METHODS;
pub(crate) use self::table::MethodTable;
