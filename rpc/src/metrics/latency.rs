//! The per-method rows of [`ClientStats`](crate::ClientStats) and
//! [`ServerStats`](crate::ServerStats), and the client's shareable histograms.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::table::{MethodTable, Row};
use super::{HistogramSnapshot, method_name};

/// The `method` label of a row: its name, else its id, else `other`.
fn label(method: Option<u32>, name: Option<&'static str>) -> Cow<'static, str> {
    match (name, method) {
        (Some(name), _) => Cow::Borrowed(name),
        (None, Some(id)) => Cow::Owned(id.to_string()),
        (None, None) => Cow::Borrowed("other"),
    }
}

/// The latency of one method's calls on a client.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use longlink_rpc::{Client, Request, Response, Server};
/// let server = Server::builder().bind("127.0.0.1:0").await?;
/// let addr = server.local_addr().to_string();
/// let echo = tower::service_fn(|req: Request| async move { Ok::<_, std::convert::Infallible>(Response::ok(req.body)) });
/// tokio::spawn(server.serve(echo));
///
/// let client = Client::new(addr);
/// for _ in 0..3 {
///     client.call(5, "hi").await?;
/// }
/// let row = &client.stats().latency[0];
/// assert_eq!((row.method, row.label().as_ref()), (Some(5), "5"));
/// assert_eq!((row.queue_wait.count(), row.round_trip.count()), (3, 3));
/// assert!(row.round_trip.p99().unwrap() > std::time::Duration::ZERO);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallLatency {
    /// The method id; `None` for the row of calls to methods past the
    /// [`MAX_METHODS`](super::MAX_METHODS) tracked.
    pub method: Option<u32>,
    /// Its name, if the typed layer or [`name_method`](super::name_method) gave one.
    pub name: Option<&'static str>,
    /// Time waiting for a flow-control permit (`max_in_flight`, `max_in_flight_bytes`):
    /// zero for a call that got one at once. Counted for every call that got a permit or
    /// whose wait ran out; not for one refused at once (queue full).
    pub queue_wait: HistogramSnapshot,
    /// From holding the permit to the answer: taking or opening a connection, writing,
    /// the server's queue and handler, reading. Counted for every call answered (whatever
    /// the status) or whose deadline passed while it waited for its answer; not for calls
    /// that failed before (unavailable, connection lost) or that their caller dropped.
    pub round_trip: HistogramSnapshot,
}

impl CallLatency {
    /// What the `method` label says: the name, the id, or `other`.
    pub fn label(&self) -> Cow<'static, str> {
        label(self.method, self.name)
    }

    pub(crate) fn from_row((method, queue_wait, round_trip): Row) -> CallLatency {
        CallLatency {
            method,
            name: method.and_then(method_name),
            queue_wait,
            round_trip,
        }
    }
}

/// The latency of one method's requests on a server.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use longlink_rpc::{Client, Request, Response, Server};
/// let server = Server::builder().bind("127.0.0.1:0").await?;
/// let (addr, handle) = (server.local_addr().to_string(), server.handle());
/// let slow = tower::service_fn(|req: Request| async move {
///     tokio::time::sleep(Duration::from_millis(5)).await;
///     Ok::<_, std::convert::Infallible>(Response::ok(req.body))
/// });
/// tokio::spawn(server.serve(slow));
///
/// Client::new(addr).call(9, "hi").await?;
/// let row = &handle.stats().latency[0];
/// assert_eq!((row.method, row.handler.count()), (Some(9), 1));
/// assert_eq!(row.handler.count_within(Duration::from_millis(2)), 0); // it slept 5 ms
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerLatency {
    /// The method id; `None` for `other`: methods past the
    /// [`MAX_METHODS`](super::MAX_METHODS) tracked, and requests answered
    /// `UNKNOWN_METHOD` (so that a client sending ids at random cannot fill the table).
    pub method: Option<u32>,
    /// Its name, if the typed layer or [`name_method`](super::name_method) gave one.
    pub name: Option<&'static str>,
    /// From the request's arrival (read off the socket) to its dispatch: waiting for a
    /// slot under `max_concurrent` (as one of `max_waiters`) and for its task to start.
    /// Counted with `handler` when the handler ends, and alone for a request whose
    /// deadline passed before dispatch; not for one refused at once or cancelled.
    pub queue: HistogramSnapshot,
    /// From dispatch to the answer being ready (queued for the socket): the handler.
    /// Counted for every handler that finished, failed or was abandoned at its deadline;
    /// not for one cancelled by its client.
    pub handler: HistogramSnapshot,
}

impl HandlerLatency {
    /// What the `method` label says: the name, the id, or `other`.
    pub fn label(&self) -> Cow<'static, str> {
        label(self.method, self.name)
    }

    pub(crate) fn from_row((method, queue, handler): Row) -> HandlerLatency {
        HandlerLatency {
            method,
            name: method.and_then(method_name),
            queue,
            handler,
        }
    }
}

/// The latency histograms of a client's calls, per method. Every client records into its
/// own unless built with [`histograms`](crate::ClientBuilder::histograms): clients given
/// clones of one `CallHistograms` record into it together — the instances of one service
/// behind a [`Balancer`](crate::Balancer), say, shown as one service — and each of their
/// [`stats`](crate::Client::stats) shows the shared counts.
///
/// ```
/// use longlink_rpc::{Balancer, Client, metrics::CallHistograms};
///
/// let saver = CallHistograms::new();
/// let balancer = Balancer::from_addrs(["10.0.0.1:7811", "10.0.0.2:7811"], |addr| {
///     Client::builder(addr).histograms(saver.clone()).build()
/// });
/// assert!(saver.snapshot().is_empty()); // no call yet
/// # drop(balancer);
/// ```
#[derive(Clone)]
pub struct CallHistograms {
    pub(crate) table: Arc<MethodTable>,
}

impl CallHistograms {
    /// Empty histograms, to give to one or more clients.
    pub fn new() -> CallHistograms {
        CallHistograms {
            table: Arc::new(MethodTable::new()),
        }
    }

    /// Records one call of `method` as a client does — for calls made some other way (an
    /// in-process shortcut that should show on the same page), and to measure the cost.
    /// Takes no lock and allocates nothing once `method` has been seen.
    ///
    /// ```
    /// use std::time::Duration;
    /// use longlink_rpc::metrics::CallHistograms;
    /// let h = CallHistograms::new();
    /// h.record(3, Duration::ZERO, Duration::from_micros(80));
    /// let row = &h.snapshot()[0];
    /// assert_eq!((row.method, row.round_trip.count()), (Some(3), 1));
    /// ```
    pub fn record(&self, method: u32, queue_wait: Duration, round_trip: Duration) {
        let timings = self.table.get(method);
        timings.queue.record(queue_wait);
        timings.run.record(round_trip);
    }

    /// A row per method called so far (by id; `other` last).
    pub fn snapshot(&self) -> Vec<CallLatency> {
        self.table
            .snapshot()
            .into_iter()
            .map(CallLatency::from_row)
            .collect()
    }
}

impl Default for CallHistograms {
    fn default() -> Self {
        CallHistograms::new()
    }
}

impl fmt::Debug for CallHistograms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CallHistograms").field(&self.table).finish()
    }
}
