//! The server: accepts connections, runs each request through a `tower::Service`,
//! answers out of order, enforces limits, drains gracefully.

mod conn;
mod stats;
#[cfg(feature = "tls")]
mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

pub use stats::ServerStats;

use crate::{Request, Response};

/// Server limits. Defaults in brackets.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Requests running at once on one connection [256]; advertised in HELLO_ACK.
    pub(crate) max_concurrent_per_conn: usize,
    /// Requests running at once on the whole server [4096].
    pub(crate) max_concurrent: usize,
    /// Requests that may wait for a free slot instead of being refused [0].
    pub(crate) max_waiters: usize,
    /// Largest frame accepted [1 MiB].
    pub(crate) max_frame_bytes: usize,
    /// Answers queued for one connection's socket before the server stops reading that
    /// connection [4 MiB].
    pub(crate) max_outgoing_bytes: usize,
    /// Connections at once; more are accepted and refused with an ERR [10_000].
    pub(crate) max_connections: usize,
    /// How long a client has to send HELLO [5 s].
    pub(crate) handshake_timeout: Duration,
    /// A connection silent this long is closed [90 s]; clients ping more often.
    pub(crate) idle_timeout: Duration,
    /// What is accepted (answered in HELLO_ACK) and compressed on the way out, with the
    /// server's counters [off].
    pub(crate) compression: crate::compression::Side,
    /// `None`: plain TCP.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a client has to finish its TLS handshake [10 s].
    #[cfg(feature = "tls")]
    pub(crate) tls_handshake_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_concurrent_per_conn: 256,
            max_concurrent: 4096,
            max_waiters: 0,
            max_frame_bytes: longlink_codec::rpc::DEFAULT_MAX_FRAME_BYTES,
            max_outgoing_bytes: 4 * 1024 * 1024,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            compression: Default::default(),
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Builds a [`Server`].
///
/// ```no_run
/// use longlink_rpc::{Request, Response, Server};
/// # async fn run() -> std::io::Result<()> {
/// let server = Server::builder().max_concurrent(1024).max_waiters(64).bind("127.0.0.1:7000").await?;
/// let echo = tower::service_fn(|req: Request| async move { Ok::<_, std::convert::Infallible>(Response::ok(req.body)) });
/// server.serve(echo).await
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// Requests running at once per connection (advertised to clients). Default 256.
    pub fn max_concurrent_per_conn(mut self, n: usize) -> Builder {
        self.config.max_concurrent_per_conn = n.max(1);
        self
    }

    /// Requests running at once on the whole server; over it, requests are refused with a
    /// NACK (`NOT_PROCESSED | RETRYABLE`) and the handler does not run. Default 4096.
    pub fn max_concurrent(mut self, n: usize) -> Builder {
        self.config.max_concurrent = n.max(1);
        self
    }

    /// Requests that may wait for a slot instead of being refused at once. Default 0.
    pub fn max_waiters(mut self, n: usize) -> Builder {
        self.config.max_waiters = n;
        self
    }

    /// Largest frame accepted. Default 1 MiB.
    pub fn max_frame_bytes(mut self, n: usize) -> Builder {
        self.config.max_frame_bytes = n;
        self
    }

    /// Answers queued per connection before the server stops reading it. Default 4 MiB.
    pub fn max_outgoing_bytes(mut self, n: usize) -> Builder {
        self.config.max_outgoing_bytes = n;
        self
    }

    /// Connections at once. Default 10,000.
    pub fn max_connections(mut self, n: usize) -> Builder {
        self.config.max_connections = n;
        self
    }

    /// A connection silent this long is closed. Default 90 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Builder {
        self.config.idle_timeout = timeout;
        self
    }

    /// Accepts compressed requests and compresses answers (feature `compression`) on
    /// connections whose client turned compression on too. Default
    /// [`Compression::Off`](crate::Compression::Off): HELLO_ACK announces nothing, so
    /// clients send nothing compressed.
    ///
    /// A compressed request is decompressed in its handler's task once it is admitted
    /// (so the concurrency limits bound the memory decompression takes), within the
    /// message limit (16 MiB) read from the zstd frame before anything is allocated; one
    /// that is corrupt or over the limit is answered `BAD_REQUEST` with `NOT_PROCESSED`,
    /// and the handler does not run. Answers at or over the threshold are compressed in
    /// the handler's task, before they are queued. [`ServerStats::compression`] counts both
    /// directions.
    ///
    /// ```no_run
    /// use longlink_rpc::{Compression, Request, Response, Server};
    /// # async fn run() -> std::io::Result<()> {
    /// let server = Server::builder()
    ///     .compression(Compression::Zstd { level: 3, threshold: 16 * 1024 })
    ///     .bind("0.0.0.0:7810")
    ///     .await?;
    /// let echo = tower::service_fn(|req: Request| async move { Ok::<_, std::convert::Infallible>(Response::ok(req.body)) });
    /// server.serve(echo).await
    /// # }
    /// ```
    #[cfg(feature = "compression")]
    pub fn compression(mut self, compression: crate::Compression) -> Builder {
        self.config.compression = crate::compression::Side::new(compression);
        self
    }

    /// Serves TLS on every connection (feature `tls`): give it a [`TlsServer`](crate::TlsServer)
    /// (PEM certificate and key, optionally a client CA for mutual TLS) or any rustls
    /// server config. Each handshake runs in its connection's task, bounded by
    /// [`tls_handshake_timeout`](Builder::tls_handshake_timeout); a plaintext client is
    /// answered `ERR PROTOCOL_MISMATCH` ("this server requires TLS") and closed.
    ///
    /// ```no_run
    /// use longlink_rpc::{Request, Response, Server, TlsServer};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let (cert, key) = (std::fs::read("cert.pem")?, std::fs::read("key.pem")?);
    /// let server = Server::builder()
    ///     .tls(TlsServer::from_pem(&cert, &key)?.client_ca(std::fs::read("ca.pem")?)?)
    ///     .bind("0.0.0.0:7810")
    ///     .await?;
    /// let echo = tower::service_fn(|req: Request| async move { Ok::<_, std::convert::Infallible>(Response::ok(req.body)) });
    /// server.serve(echo).await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: impl Into<Arc<rustls::ServerConfig>>) -> Builder {
        self.config.tls = Some(config.into());
        self
    }

    /// How long a client has to finish its TLS handshake once connected (a client that
    /// connects and sends nothing is closed after this and counted in
    /// [`ServerStats::tls_handshake_failures`]). Default 10 s.
    #[cfg(feature = "tls")]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Builder {
        self.config.tls_handshake_timeout = timeout;
        self
    }

    /// Binds the listener.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server::new(listener, self.config))
    }
}

/// A bound RPC server; [`serve`](Server::serve) runs it.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) global: Arc<Semaphore>,
    pub(crate) stats: stats::Counters,
    /// Queue and handler histograms per method.
    pub(crate) latency: crate::metrics::MethodTable,
    pub(crate) shutdown: watch::Sender<Option<Duration>>,
}

/// Controls a running server from elsewhere. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl Server {
    /// A builder.
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn new(listener: TcpListener, config: Config) -> Server {
        let shared = Arc::new(Shared {
            global: Arc::new(Semaphore::new(config.max_concurrent)),
            config,
            stats: stats::Counters::default(),
            latency: crate::metrics::MethodTable::new(),
            shutdown: watch::channel(None).0,
        });
        Server { listener, shared }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// A handle to shut it down and read its counters.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
            local_addr: self.local_addr(),
        }
    }

    /// Serves `svc` on every connection until [`ServerHandle::begin_shutdown`]; then stops
    /// accepting, drains each connection (GOAWAY, finish admitted requests up to the
    /// timeout) and returns.
    pub async fn serve<S>(self, svc: S) -> io::Result<()>
    where
        S: Service<Request, Response = Response> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut shutdown = self.shared.shutdown.subscribe();
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let shared = Arc::clone(&self.shared);
                    let svc = svc.clone();
                    connections.spawn(conn::serve(stream, peer, svc, shared));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        drop(self.listener);
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// Like [`serve`](Server::serve), and shuts down (with `drain` to finish) when `signal`
    /// completes.
    pub async fn serve_with_shutdown<S>(
        self,
        svc: S,
        signal: impl Future<Output = ()>,
        drain: Duration,
    ) -> io::Result<()>
    where
        S: Service<Request, Response = Response> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let handle = self.handle();
        let serving = self.serve(svc);
        tokio::pin!(serving);
        tokio::select! {
            result = &mut serving => return result,
            () = signal => handle.begin_shutdown(drain),
        }
        serving.await
    }
}

/// Resolves once a shutdown has begun (at once if it already has).
async fn shutdown_begun(shutdown: &mut watch::Receiver<Option<Duration>>) {
    loop {
        if shutdown.borrow_and_update().is_some() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return; // the server is gone
        }
    }
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts a graceful shutdown: no new connections; each connection sends GOAWAY with
    /// the last request id it accepted, answers later requests with DRAINING (not run), and
    /// closes once its admitted requests are answered or `drain` has passed.
    pub fn begin_shutdown(&self, drain: Duration) {
        self.shared.shutdown.send_replace(Some(drain));
    }

    /// The server's counters.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats.snapshot(&self.shared)
    }
}
