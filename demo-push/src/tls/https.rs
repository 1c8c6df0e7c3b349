//! An axum router served over HTTPS or plain HTTP from one call, for the center's API,
//! the dispatcher and the metrics endpoint.
//!
//! Handshakes run in their own tasks (at most [`MAX_HANDSHAKES`] at once, each within
//! [`HANDSHAKE_TIMEOUT`]) and hand finished connections to axum through a [`Listener`]:
//! a slow or broken client never holds up the accept loop. These listeners serve few,
//! busy connections, so the buffered rustls stream is the right tool here (the rooms,
//! with their many idle ones, use the unbuffered API).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, inc};

/// TLS handshakes in progress at once, at most; more connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener`: HTTPS with `tls`, plain HTTP without. Returns when the
/// server stops.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
        Some(config) => {
            let local = listener.local_addr()?;
            let (tx, rx) = mpsc::channel(64);
            let acceptor =
                tokio::spawn(handshakes(listener, TlsAcceptor::from(config), tx, metrics));
            let served = axum::serve(TlsListener { rx, local }, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            acceptor.abort();
            served
        }
    }
}

/// Accepts and runs handshakes, sending finished connections to `tx` until it closes.
async fn handshakes(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    metrics: Arc<Metrics>,
) {
    let limit = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    while !tx.is_closed() {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                inc(&metrics.accept_errors);
                tracing::warn!(error = %e, "https accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, tx, metrics) = (acceptor.clone(), tx.clone(), Arc::clone(&metrics));
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    inc(&metrics.tls_handshakes);
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => {
                    inc(&metrics.tls_handshake_failures);
                    tracing::debug!(%peer, error = %e, "https handshake failed");
                }
                Err(_) => {
                    inc(&metrics.tls_handshake_failures);
                    tracing::debug!(%peer, "https handshake timed out");
                }
            }
        });
    }
}

/// Connections whose handshake finished, as axum takes them.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(accepted) => accepted,
            // The acceptor stopped: serve what is open, accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
