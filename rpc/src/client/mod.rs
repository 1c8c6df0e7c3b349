//! The client: one API over three strategies, with per-target flow control.

mod handshake;
mod limits;
mod mux;
mod redial;
mod slots;
mod strategy;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use longlink_codec::rpc::{self as wire, Flags, Status};
use tower_service::Service;

use self::limits::{FlowControl, LimitsConfig};
use self::redial::Redial;
use self::slots::Slots;
use crate::trace::{self, TraceContext};
use crate::{DeadlinePhase, Request, RpcError};
use tracing::Instrument;

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
                addr: self.addr,
                strategy: self.strategy,
                config: self.config,
                redial,
                backend,
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
    /// When the target may be dialled again, for every strategy.
    redial: Arc<Redial>,
    backend: Backend,
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

/// A snapshot of a client's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Calls holding an in-flight slot.
    pub in_flight: usize,
    /// Request bytes in flight.
    pub in_flight_bytes: usize,
    /// Calls waiting for a slot.
    pub queued: usize,
    /// Calls refused with `Overloaded`, in total.
    pub overloaded: u64,
    /// Open connections.
    pub open_connections: usize,
    /// Calls registered on multiplexed connections, awaiting an answer.
    pub pending: usize,
    /// Request bodies compressed, answers decompressed (feature `compression`).
    #[cfg(feature = "compression")]
    pub compression: crate::CompressionStats,
}

impl Client {
    /// A builder for a client of `addr` (`host:port`, resolved at each connect).
    pub fn builder(addr: impl Into<String>) -> Builder {
        Builder {
            addr: addr.into(),
            strategy: Strategy::default(),
            config: Config::default(),
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

    /// The counters.
    pub fn stats(&self) -> ClientStats {
        let limits = &self.inner.limits;
        let (open_connections, pending) = match &self.inner.backend {
            Backend::Multiplexed(slots) => (slots.open(), slots.pending()),
            Backend::Pooled(pool) => (pool.stats().open, 0),
            Backend::Short => (0, 0),
        };
        ClientStats {
            in_flight: limits.in_flight(),
            in_flight_bytes: limits.in_flight_bytes(),
            queued: limits.queued(),
            overloaded: limits.overloaded.load(std::sync::atomic::Ordering::Relaxed),
            open_connections,
            pending,
            #[cfg(feature = "compression")]
            compression: self.inner.config.compression.stats(),
        }
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

    /// Calls `method` with `body` (with the default timeout, if one is set).
    pub async fn call(&self, method: u32, body: impl Into<Bytes>) -> Result<Bytes, RpcError> {
        self.call_request(Request {
            method,
            metadata: Default::default(),
            body: body.into(),
            deadline: self.deadline_or_default(None),
        })
        .await
    }

    /// Calls `method` with `body`, giving up after `timeout`. The server is told the
    /// deadline, drops the request if it passes before dispatch, and abandons the handler
    /// when it passes during.
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

    /// Calls with a full [`Request`]. Inside a trace (a [`TraceContext`] is current) the
    /// call is a new span of it: its `traceparent` goes in the metadata, and the call runs
    /// in an `rpc.client` span.
    ///
    /// [`TraceContext`]: crate::trace::TraceContext
    pub async fn call_request(&self, mut req: Request) -> Result<Bytes, RpcError> {
        if let Some(parent) = TraceContext::current()
            && req.metadata.get(trace::TRACEPARENT).is_none()
        {
            let cx = parent.child();
            req.metadata = cx.inject(&req.metadata);
            let span = cx.client_span(req.method);
            return self.call_untraced(req).instrument(span).await;
        }
        self.call_untraced(req).await
    }

    async fn call_untraced(&self, req: Request) -> Result<Bytes, RpcError> {
        // A call refused locally returns without awaiting anything; a caller retrying in a
        // loop would then never yield and starve the connection's reader (measured: zero
        // goodput under overload). Spending tokio's coop budget makes it yield regularly.
        tokio::task::coop::consume_budget().await;
        let inner = &*self.inner;
        let _permit = inner.limits.acquire(req.body.len(), req.deadline).await?;
        let answer = match &inner.backend {
            Backend::Multiplexed(slots) => {
                let conn = match req.deadline {
                    Some(at) => tokio::time::timeout_at(
                        at.into(),
                        slots.pick(&inner.addr, &inner.config, &inner.redial),
                    )
                    .await
                    .map_err(|_| RpcError::DeadlineExceeded {
                        phase: DeadlinePhase::Queued,
                    })??,
                    None => {
                        slots
                            .pick(&inner.addr, &inner.config, &inner.redial)
                            .await?
                    }
                };
                // Compressed here, in the caller's task, once the connection (and so what
                // its server accepts) is known.
                let (body, compressed) = inner.config.compression.compress(conn.peer, req.body);
                let relative = req
                    .deadline
                    .map(|at| at.saturating_duration_since(Instant::now()));
                let call = conn.send(req.method, req.metadata, body, compressed, relative)?;
                let answer = match req.deadline {
                    Some(at) => tokio::time::timeout_at(at.into(), call.answer())
                        .await
                        .map_err(|_| RpcError::DeadlineExceeded {
                            phase: DeadlinePhase::InFlight,
                        })??,
                    None => call.answer().await?,
                };
                open(&inner.config, conn.peer, answer)?
            }
            Backend::Pooled(pool) => strategy::pooled_call(pool, &inner.config, req).await?,
            Backend::Short => {
                strategy::short_call(&inner.addr, &inner.config, &inner.redial, req).await?
            }
        };
        into_result(answer)
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

/// Turns a RESP into the caller's result.
fn into_result(resp: wire::Response) -> Result<Bytes, RpcError> {
    let message = || String::from_utf8_lossy(&resp.body).into_owned();
    let not_processed = resp.flags.contains(Flags::NOT_PROCESSED);
    match resp.status {
        Status::OK => Ok(resp.body),
        Status::REJECTED => Err(RpcError::Rejected {
            retryable: resp.flags.contains(Flags::RETRYABLE),
            message: message(),
        }),
        Status::DRAINING => Err(RpcError::Draining),
        Status::DEADLINE_EXCEEDED => Err(RpcError::DeadlineExceeded {
            phase: if not_processed {
                DeadlinePhase::BeforeDispatch
            } else {
                DeadlinePhase::InHandler
            },
        }),
        Status::CANCELLED => Err(RpcError::Cancelled),
        status => Err(RpcError::Remote {
            status: status.0,
            message: message(),
            not_processed,
            retryable: resp.flags.contains(Flags::RETRYABLE),
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
