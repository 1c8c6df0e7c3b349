//! The client: one API over three strategies, with per-target flow control, retries and
//! hedging.

mod attempt;
pub(crate) mod attempts;
mod budget;
mod handshake;
mod latency;
mod limits;
mod mux;
mod redial;
mod retry;
mod slots;
mod stats;
mod strategy;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use longlink_codec::rpc::{self as wire, Flags};
use tower_service::Service;

pub use self::budget::RetryBudget;
pub use self::retry::{Hedge, RetryPolicy};
pub use self::stats::ClientStats;

use self::attempts::RetryState;
use self::limits::{FlowControl, LimitsConfig};
use self::redial::Redial;
use self::slots::Slots;
use crate::metrics::CallHistograms;
use crate::{Request, RpcError};

/// How a client carries calls to its target.
///
/// ```
/// use longlink_rpc::Strategy;
/// assert_eq!(Strategy::default(), Strategy::Multiplexed { conns: 1 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Connect, call, close: a TCP and HELLO round trip per call.
    Short,
    /// Up to `max_conns` connections kept and reused, one call per connection at a time
    /// (a `longlink-pool` pool of connections).
    Pooled {
        /// Most connections.
        max_conns: usize,
    },
    /// `conns` connections, each carrying many calls at once, answered out of order.
    Multiplexed {
        /// Connections (the hard cap per target).
        conns: usize,
    },
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::Multiplexed { conns: 1 }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_frame_bytes: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) limits: LimitsConfig,
    pub(crate) retry: RetryPolicy,
    /// What is offered in HELLO and compressed on the way out, with the counters every
    /// clone shares.
    pub(crate) compression: crate::compression::Side,
    /// `None`: plain TCP.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsClient>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
            connect_timeout: Duration::from_secs(3),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(5),
            default_timeout: None,
            limits: LimitsConfig {
                max_in_flight: 1024,
                max_in_flight_bytes: 64 * 1024 * 1024,
                max_queued: 1024,
                max_queue_wait: Duration::from_secs(1),
            },
            retry: RetryPolicy::default(),
            compression: Default::default(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Builds a [`Client`]. Building does no I/O: the first call connects.
///
/// ```
/// use std::time::Duration;
/// use longlink_rpc::{Client, Strategy};
///
/// let client = Client::builder("127.0.0.1:7000")
///     .strategy(Strategy::Multiplexed { conns: 2 })
///     .max_in_flight(512)
///     .max_in_flight_bytes(16 << 20)
///     .max_queued(256)
///     .max_queue_wait(Duration::from_millis(50))
///     .default_timeout(Duration::from_secs(2))
///     .build();
/// assert_eq!(client.stats().open_connections, 0);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    addr: String,
    strategy: Strategy,
    config: Config,
    /// `None`: the client gets histograms of its own.
    histograms: Option<CallHistograms>,
}

impl Builder {
    /// The strategy (default: one multiplexed connection).
    pub fn strategy(mut self, strategy: Strategy) -> Builder {
        self.strategy = strategy;
        self
    }

    /// Calls in flight to this target at once, across all clones. Default 1024.
    pub fn max_in_flight(mut self, n: usize) -> Builder {
        self.config.limits.max_in_flight = n.max(1);
        self
    }

    /// Request body bytes in flight at once. Default 64 MiB.
    pub fn max_in_flight_bytes(mut self, n: usize) -> Builder {
        self.config.limits.max_in_flight_bytes = n;
        self
    }

    /// Calls that may wait for an in-flight slot; beyond, calls fail at once with
    /// `Overloaded`. Default 1024.
    pub fn max_queued(mut self, n: usize) -> Builder {
        self.config.limits.max_queued = n;
        self
    }

    /// Longest wait for an in-flight slot. Default 1 s.
    pub fn max_queue_wait(mut self, wait: Duration) -> Builder {
        self.config.limits.max_queue_wait = wait;
        self
    }

    /// Deadline for calls that do not set one. Default none.
    pub fn default_timeout(mut self, timeout: Duration) -> Builder {
        self.config.default_timeout = Some(timeout);
        self
    }

    /// How calls are retried and hedged, and the budget that caps both (shared by every
    /// clone). Default [`RetryPolicy::default()`]: calls that provably did not run (and
    /// [idempotent](Client::call_idempotent) ones after errors that say they may have) are
    /// tried up to 3 times within 10% of the calls plus 10 a second; no hedging.
    /// [`RetryPolicy::never()`] turns it all off.
    pub fn retry(mut self, policy: RetryPolicy) -> Builder {
        self.config.retry = policy;
        self
    }

    /// Connect (TCP, the TLS handshake if any, and HELLO) timeout. Default 3 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
        self.config.connect_timeout = timeout;
        self
    }

    /// A connection silent this long is probed with PING; one that does not answer within
    /// `ping_timeout` more is dropped and its calls fail. Defaults 15 s and 5 s.
    pub fn heartbeat(mut self, ping_interval: Duration, ping_timeout: Duration) -> Builder {
        self.config.ping_interval = ping_interval;
        self.config.ping_timeout = ping_timeout;
        self
    }

    /// Largest frame sent or accepted. Default 1 MiB.
    pub fn max_frame_bytes(mut self, n: usize) -> Builder {
        self.config.max_frame_bytes = n;
        self
    }

    /// Speaks TLS on every connection (feature `tls`), whichever the strategy: `tls` says
    /// which CAs to trust, which certificate to present (mutual TLS) and which name to
    /// check (default: the host of the address). The handshake runs inside the connect
    /// timeout; one that fails fails the call with [`RpcError::Tls`] (it did not run).
    ///
    /// ```no_run
    /// use longlink_rpc::{Client, Strategy, TlsClient};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = std::fs::read("/etc/longlink/ca.pem")?;
    /// let client = Client::builder("10.0.0.5:7810")
    ///     .strategy(Strategy::Multiplexed { conns: 1 })
    ///     .tls(TlsClient::from_pem(&ca)?)
    ///     .build();
    /// let answer = client.call(1, "ping").await?;
    /// # let _ = answer; Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: impl Into<crate::tls::TlsClient>) -> Builder {
        self.config.tls = Some(tls.into());
        self
    }

    /// Records the client's latency histograms into `histograms`, shared with every other
    /// client given a clone of it (default: histograms of its own). The instances of one
    /// service behind a balancer, given one, show as one service.
    ///
    /// ```
    /// use longlink_rpc::{Client, metrics::CallHistograms};
    /// let shared = CallHistograms::new();
    /// let a = Client::builder("10.0.0.1:7811").histograms(shared.clone()).build();
    /// let b = Client::builder("10.0.0.2:7811").histograms(shared.clone()).build();
    /// // a.stats().latency and b.stats().latency both show the calls of both.
    /// # drop((a, b));
    /// ```
    pub fn histograms(mut self, histograms: CallHistograms) -> Builder {
        self.histograms = Some(histograms);
        self
    }

    /// Compresses request bodies (feature `compression`) on connections whose server
    /// turned compression on too; the server then compresses its answers to this client.
    /// Default [`Compression::Off`](crate::Compression::Off): nothing offered, so nothing
    /// is compressed either way.
    ///
    /// Bodies at or over the threshold are compressed in the calling task, before the call
    /// is queued (the connection's writer only copies bytes), and sent as they were when
    /// compressing does not save an eighth. Flow control counts the body before
    /// compression. [`ClientStats::compression`] counts both directions.
    ///
    /// ```
    /// use longlink_rpc::{Client, Compression};
    /// let client = Client::builder("127.0.0.1:7000")
    ///     .compression(Compression::zstd()) // level 1, bodies of 8 KiB or more
    ///     .build();
    /// assert_eq!(client.stats().compression.sent, 0);
    /// ```
    #[cfg(feature = "compression")]
    pub fn compression(mut self, compression: crate::Compression) -> Builder {
        self.config.compression = crate::compression::Side::new(compression);
        self
    }

    /// The client.
    pub fn build(self) -> Client {
        let redial = Arc::new(Redial::default());
        let backend = match self.strategy {
            Strategy::Short => Backend::Short,
            Strategy::Pooled { max_conns } => Backend::Pooled(strategy::pool(
                &self.addr,
                &self.config,
                max_conns,
                Arc::clone(&redial),
            )),
            Strategy::Multiplexed { conns } => Backend::Multiplexed(Slots::new(conns)),
        };
        Client {
            inner: Arc::new(Inner {
                limits: FlowControl::new(self.config.limits),
                retry: RetryState::new(self.config.retry),
                addr: self.addr,
                strategy: self.strategy,
                config: self.config,
                redial,
                backend,
                histograms: self.histograms.unwrap_or_default(),
            }),
        }
    }
}

/// A client for one target. Cheap to clone; clones share the connections and the flow
/// control. Also a `tower::Service<Request>`.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    addr: String,
    strategy: Strategy,
    config: Config,
    limits: FlowControl,
    retry: RetryState,
    /// When the target may be dialled again, for every strategy.
    redial: Arc<Redial>,
    backend: Backend,
    /// Queue wait and round trip per method (maybe shared with other clients).
    histograms: CallHistograms,
}

enum Backend {
    Short,
    Pooled(longlink_pool::Pool<strategy::SerialManager>),
    Multiplexed(Slots),
}

impl Drop for Inner {
    fn drop(&mut self) {
        match &self.backend {
            Backend::Multiplexed(slots) => slots.close(),
            Backend::Pooled(pool) => pool.close(),
            Backend::Short => {}
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.addr)
            .field("strategy", &self.inner.strategy)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Client {
    /// A builder for a client of `addr` (`host:port`, resolved at each connect).
    pub fn builder(addr: impl Into<String>) -> Builder {
        Builder {
            addr: addr.into(),
            strategy: Strategy::default(),
            config: Config::default(),
            histograms: None,
        }
    }

    /// A multiplexed client of `addr` with the defaults.
    pub fn new(addr: impl Into<String>) -> Client {
        Client::builder(addr).build()
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.inner.strategy
    }

    /// Calls in flight now (cheap; what the balancer compares).
    pub fn load(&self) -> usize {
        self.inner.limits.in_flight()
    }

    /// The target's address.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// `deadline`, or now + the default timeout when there is none.
    pub(crate) fn deadline_or_default(&self, deadline: Option<Instant>) -> Option<Instant> {
        deadline.or_else(|| {
            self.inner
                .config
                .default_timeout
                .map(|t| Instant::now() + t)
        })
    }

    /// Whether `other` is a clone of this client (they share connections and flow control).
    #[cfg(test)]
    pub(crate) fn same_target(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Calls `method` with `body` (with the default timeout, if one is set). A failure that
    /// proves the call did not run is retried as the [`RetryPolicy`] allows.
    pub async fn call(&self, method: u32, body: impl Into<Bytes>) -> Result<Bytes, RpcError> {
        self.call_request(Request {
            method,
            metadata: Default::default(),
            body: body.into(),
            deadline: self.deadline_or_default(None),
        })
        .await
    }

    /// Calls `method`, which may run more than once with the same effect as once (a read,
    /// a put of a whole value, a delete, an ACK): besides the retries of [`call`](Client::call),
    /// it is retried after errors that say it *may* have run (`ConnectionLost { written:
    /// true }`, a handler's retryable error), and hedged if the policy hedges.
    ///
    /// ```
    /// use longlink_rpc::{Client, Request, Response, Server};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Server::builder().bind("127.0.0.1:0").await?;
    /// let addr = server.local_addr().to_string();
    /// let echo = tower::service_fn(|req: Request| async move { Ok::<_, std::convert::Infallible>(Response::ok(req.body)) });
    /// tokio::spawn(server.serve(echo));
    /// let client = Client::new(addr);
    /// assert_eq!(client.call_idempotent(1, "read me").await?, "read me");
    /// assert_eq!(client.stats().retries, 0);
    /// # Ok(()) }
    /// ```
    pub async fn call_idempotent(
        &self,
        method: u32,
        body: impl Into<Bytes>,
    ) -> Result<Bytes, RpcError> {
        self.call_request_idempotent(Request {
            method,
            metadata: Default::default(),
            body: body.into(),
            deadline: self.deadline_or_default(None),
        })
        .await
    }

    /// Calls `method` with `body`, giving up after `timeout`. The server is told the
    /// deadline, drops the request if it passes before dispatch, and abandons the handler
    /// when it passes during. Retries stay within the deadline.
    pub async fn call_timeout(
        &self,
        method: u32,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        self.call_request(Request {
            method,
            metadata: Default::default(),
            body: body.into(),
            deadline: Some(Instant::now() + timeout),
        })
        .await
    }

    /// Calls with a full [`Request`] (its deadline as given: the default timeout is not
    /// applied), retried when the error proves it did not run.
    pub async fn call_request(&self, req: Request) -> Result<Bytes, RpcError> {
        attempts::call(
            &[self],
            req.method,
            req.metadata,
            req.body,
            req.deadline,
            false,
            None,
        )
        .await
    }

    /// [`call_request`](Client::call_request) for an idempotent call (see
    /// [`call_idempotent`](Client::call_idempotent)).
    pub async fn call_request_idempotent(&self, req: Request) -> Result<Bytes, RpcError> {
        attempts::call(
            &[self],
            req.method,
            req.metadata,
            req.body,
            req.deadline,
            true,
            None,
        )
        .await
    }
}

/// A RESP as the caller reads it: its body decompressed, here in the caller's task, if it
/// came compressed on a connection that `negotiated` zstd. The answer exists, so a failure
/// says the call may have run.
pub(crate) fn open(
    config: &Config,
    negotiated: wire::Features,
    mut resp: wire::Response,
) -> Result<wire::Response, RpcError> {
    if !resp.flags.contains(Flags::COMPRESSED) {
        return Ok(resp);
    }
    // The limit the client's codec puts on a joined message, so a compressed answer can
    // be no larger than an uncompressed one.
    match config
        .compression
        .decompress(negotiated, &resp.body, wire::DEFAULT_MAX_MESSAGE_BYTES)
    {
        Ok(body) => {
            resp.body = body;
            resp.flags = resp.flags.without(Flags::COMPRESSED);
            Ok(resp)
        }
        Err(refusal) => Err(RpcError::BadResponse {
            reason: refusal.to_string(),
        }),
    }
}

impl Service<Request> for Client {
    type Response = Bytes;
    type Error = RpcError;
    type Future = Pin<Box<dyn Future<Output = Result<Bytes, RpcError>> + Send>>;

    /// Always ready: flow control happens in `call`, which fails fast with `Overloaded`
    /// rather than making `poll_ready` wait.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { client.call_request(req).await })
    }
}
