//! The server's side of a TLS handshake, run in the connection's own task (the accept loop
//! never waits for one): bounded by the handshake timeout, so a client that opens TCP and
//! sends nothing does not hold a connection slot; abandoned at once when shutdown begins;
//! counted either way.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use longlink_codec::rpc::{ErrorCode, ErrorFrame, Message, RpcCodec};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::codec::Encoder;

use super::Shared;
use super::stats::Counters;

/// The first byte of a TLS connection: a handshake record. A longlink HELLO starts with its
/// frame length's high byte, 0.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How long a plaintext client is given to read the refusal.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

enum Failure {
    /// The peer sent something that is not TLS: a plaintext client.
    NotTls(TcpStream),
    /// rustls refused the handshake (a client certificate missing or from another CA, a
    /// protocol error) or the peer went away during it.
    Io(io::Error),
}

/// The TLS session of `stream`, or `None` when the handshake failed, timed out or was
/// abandoned for a shutdown (the caller closes the connection).
pub(super) async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Arc<ServerConfig>,
    shared: &Shared,
    shutdown: &mut watch::Receiver<Option<Duration>>,
) -> Option<TlsStream<TcpStream>> {
    let stats = &shared.stats;
    let timeout = shared.config.tls_handshake_timeout;
    let outcome = tokio::select! {
        biased;
        () = super::shutdown_begun(shutdown) => {
            tracing::debug!(%peer, "closing a connection still in its TLS handshake: shutting down");
            return None;
        }
        outcome = tokio::time::timeout(timeout, handshake(stream, config)) => outcome,
    };
    match outcome {
        Ok(Ok(tls)) => {
            Counters::bump(&stats.tls_handshakes);
            Some(tls)
        }
        Ok(Err(Failure::NotTls(stream))) => {
            Counters::bump(&stats.tls_handshake_failures);
            tracing::warn!(%peer, "a plaintext client on a TLS port: refused");
            refuse_plaintext(stream).await;
            None
        }
        Ok(Err(Failure::Io(e))) => {
            Counters::bump(&stats.tls_handshake_failures);
            match crate::tls::describe(&e) {
                Some(reason) => tracing::warn!(%peer, reason, "TLS handshake refused"),
                None => tracing::debug!(%peer, error = %e, "TLS handshake cut short"),
            }
            None
        }
        Err(_) => {
            Counters::bump(&stats.tls_handshake_failures);
            tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
            None
        }
    }
}

async fn handshake(
    stream: TcpStream,
    config: &Arc<ServerConfig>,
) -> Result<TlsStream<TcpStream>, Failure> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) => return Err(Failure::Io(io::ErrorKind::UnexpectedEof.into())),
        Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => return Err(Failure::NotTls(stream)),
        Ok(_) => {}
        Err(e) => return Err(Failure::Io(e)),
    }
    TlsAcceptor::from(Arc::clone(config))
        .accept(stream)
        .await
        .map_err(Failure::Io)
}

/// Answers a plaintext client `ERR PROTOCOL_MISMATCH` in plaintext, so that it fails at once
/// with a reason instead of waiting out its connect timeout, and closes.
async fn refuse_plaintext(mut stream: TcpStream) {
    let mut frame = BytesMut::new();
    let refusal = Message::Error(ErrorFrame {
        code: ErrorCode::PROTOCOL_MISMATCH,
        message: "this server requires TLS".into(),
    });
    if RpcCodec::new().encode(refusal, &mut frame).is_err() {
        return;
    }
    let _ = tokio::time::timeout(REFUSAL_WAIT, async {
        // Read what the client sent (its HELLO) first: closing a socket with unread bytes
        // sends a reset, which can reach the client before the refusal does.
        let mut sink = [0u8; 512];
        let _ = stream.try_read(&mut sink);
        stream.write_all(&frame).await?;
        stream.shutdown().await?;
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}
