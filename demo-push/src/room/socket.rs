//! A client's socket: plain TCP, or TLS over it with rustls's *unbuffered* API.
//!
//! rustls's buffered connection keeps a 4 KiB read buffer for as long as the connection
//! lives (`DeframerVecBuffer`, never released once grown). The unbuffered API leaves
//! buffers to the caller, so a TLS link keeps the plaintext discipline: ciphertext is
//! read into a buffer borrowed from the codec's pool when the socket is readable and given
//! back once every whole record is decrypted; records to send are encrypted into another
//! pooled buffer returned after the write. What an idle TLS connection holds is its
//! socket and rustls's session state (keys, the record layer), nothing more.

use bytes::Buf;
use longlink_codec::{BufPool, PooledBuf};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use std::io;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What a read asks of the pool: most frames from clients are small.
pub(crate) const READ_CHUNK: usize = 4096;
/// Ciphertext kept while a record is incomplete, at most: the largest TLS record
/// (16 KiB of plaintext, 2 KiB of expansion, its header) and one more read.
const MAX_INCOMING: usize = 16 * 1024 + 2048 + 5 + READ_CHUNK;
/// The first byte of every TLS handshake (the record type `handshake`).
const TLS_HANDSHAKE: u8 = 0x16;

/// What a read brought.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Something arrived (for TLS, maybe part of a record: no plaintext yet).
    Data,
    /// The peer closed (TCP end of stream, or a TLS `close_notify`).
    Eof,
}

/// A client's socket.
pub(crate) enum Socket {
    Plain(TcpStream),
    /// Boxed: a plain socket stays small.
    Tls(Box<TlsSocket>),
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Socket::Plain(_) => "Socket::Plain",
            Socket::Tls(_) => "Socket::Tls",
        })
    }
}

impl Socket {
    /// Waits until there is something to read (cancel safe).
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Socket::Plain(tcp) => tcp.readable().await,
            Socket::Tls(tls) => tls.tcp.readable().await,
        }
    }

    /// Reads what is there without waiting; plaintext goes to `plain` (taken from the
    /// pool only when there is some). `WouldBlock` when nothing was.
    pub(crate) fn try_read(&mut self, plain: &mut Option<PooledBuf>) -> io::Result<Read> {
        match self {
            Socket::Plain(tcp) => {
                let buf = plain.get_or_insert_with(|| BufPool::global().get(READ_CHUNK));
                if buf.capacity() - buf.len() < 512 {
                    buf.reserve(READ_CHUNK);
                }
                let read = tcp.try_read_buf(&mut **buf);
                if buf.is_empty() {
                    *plain = None;
                }
                match read? {
                    0 => Ok(Read::Eof),
                    _ => Ok(Read::Data),
                }
            }
            Socket::Tls(tls) => tls.try_read(plain),
        }
    }

    /// Reads until something arrives (cancel safe: nothing read is lost if dropped).
    pub(crate) async fn read(&mut self, plain: &mut Option<PooledBuf>) -> io::Result<Read> {
        loop {
            self.readable().await?;
            match self.try_read(plain) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// TLS records (a key update's answer) wait to be written: flush.
    pub(crate) fn wants_flush(&self) -> bool {
        matches!(self, Socket::Tls(tls) if tls.outgoing.is_some())
    }

    /// Writes `data` (encrypted, for TLS) and whatever TLS records were waiting.
    pub(crate) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Socket::Plain(tcp) => tcp.write_all(data).await,
            Socket::Tls(tls) => {
                if !data.is_empty() {
                    tls.encrypt(data).map_err(tls_error)?;
                }
                tls.flush().await
            }
        }
    }

    /// Closes our side (a TLS `close_notify` first).
    pub(crate) async fn shutdown(&mut self) {
        match self {
            Socket::Plain(tcp) => {
                let _ = tcp.shutdown().await;
            }
            Socket::Tls(tls) => {
                tls.close_notify();
                let _ = tls.flush().await;
                let _ = tls.tcp.shutdown().await;
            }
        }
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The client's first byte is not a TLS handshake's: it speaks plaintext (the socket is
    /// handed back to answer it in kind).
    #[error("not TLS (first byte {first:#04x})")]
    NotTls { first: u8, stream: TcpStream },
    /// rustls refused the handshake (an alert went to the client).
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

impl HandshakeError {
    /// A short label for logs and counting.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            HandshakeError::NotTls { .. } => "not_tls",
            HandshakeError::Tls(_) => "tls",
            HandshakeError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => "truncated",
            HandshakeError::Io(_) => "io",
        }
    }
}

/// A TLS session over a TCP socket, its buffers borrowed only while in use.
pub(crate) struct TlsSocket {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// Ciphertext read and not yet processed (a record cut short); `None` while idle.
    incoming: Option<PooledBuf>,
    /// Records to send; `None` while idle.
    outgoing: Option<PooledBuf>,
    /// The client sent `close_notify`.
    peer_closed: bool,
    /// Our `close_notify` went out (or the session failed): nothing more is encrypted.
    closed: bool,
}

/// Where processing the records read so far left the session.
enum Progress {
    /// The handshake needs more from the client.
    NeedMore,
    /// Application data may flow.
    Open,
    /// Both sides closed.
    Closed,
}

impl TlsSocket {
    /// Runs the server handshake on `tcp` (the caller bounds it in time). Returns the
    /// session and any plaintext the client sent right behind its `Finished`.
    pub(crate) async fn accept(
        tcp: TcpStream,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<(Box<TlsSocket>, Option<PooledBuf>), HandshakeError> {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        if first[0] != TLS_HANDSHAKE {
            return Err(HandshakeError::NotTls {
                first: first[0],
                stream: tcp,
            });
        }
        let mut tls = Box::new(TlsSocket {
            tcp,
            conn: UnbufferedServerConnection::new(config)?,
            incoming: None,
            outgoing: None,
            peer_closed: false,
            closed: false,
        });
        let mut plain = None;
        loop {
            match tls.process(&mut plain) {
                Ok(Progress::Open) => {
                    tls.flush().await?;
                    return Ok((tls, plain));
                }
                Ok(Progress::NeedMore) => {
                    tls.flush().await?;
                    tls.tcp.readable().await?;
                    match tls.read_tcp() {
                        Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(Progress::Closed) => {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                }
                Err(e) => {
                    // Tell the client why (the alert rustls queued), if it still listens.
                    tls.closed = true;
                    let _ = tls.process(&mut plain);
                    let _ = tls.flush().await;
                    return Err(e.into());
                }
            }
        }
    }

    /// Reads ciphertext into the pooled `incoming` buffer; the bytes read.
    fn read_tcp(&mut self) -> io::Result<usize> {
        let buf = self
            .incoming
            .get_or_insert_with(|| BufPool::global().get(READ_CHUNK));
        if buf.len() >= MAX_INCOMING {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a TLS record larger than the protocol allows",
            ));
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(READ_CHUNK);
        }
        let read = self.tcp.try_read_buf(&mut **buf);
        if buf.is_empty() {
            self.incoming = None;
        }
        read
    }

    fn try_read(&mut self, plain: &mut Option<PooledBuf>) -> io::Result<Read> {
        if self.peer_closed {
            return Ok(Read::Eof);
        }
        let n = self.read_tcp()?;
        if n == 0 {
            // The TCP stream ended without a close_notify: an end all the same (push
            // frames carry their lengths, so a cut cannot pass for a whole frame).
            self.peer_closed = true;
            return Ok(Read::Eof);
        }
        self.process(plain).map_err(tls_error)?;
        Ok(if self.peer_closed && plain.is_none() {
            Read::Eof
        } else {
            Read::Data
        })
    }

    /// Processes every whole record read: plaintext to `plain`, records to send to
    /// `outgoing`.
    fn process(&mut self, plain: &mut Option<PooledBuf>) -> Result<Progress, rustls::Error> {
        loop {
            let mut empty = [0u8; 0];
            let incoming: &mut [u8] = match self.incoming.as_mut() {
                Some(buf) => &mut buf[..],
                None => &mut empty,
            };
            let UnbufferedStatus { mut discard, state } = self.conn.process_tls_records(incoming);
            let step = match state {
                Err(e) => Err(e),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut failed = None;
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                let buf = plain.get_or_insert_with(|| {
                                    BufPool::global().get(record.payload.len().max(READ_CHUNK))
                                });
                                buf.extend_from_slice(record.payload);
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    failed.map_or(Ok(None), Err)
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    let out = self
                        .outgoing
                        .get_or_insert_with(|| BufPool::global().get(READ_CHUNK));
                    let start = out.len();
                    loop {
                        let room = out.capacity() - start;
                        out.resize(start + room, 0);
                        match encode.encode(&mut out[start..]) {
                            Ok(n) => {
                                out.truncate(start + n);
                                break Ok(None);
                            }
                            Err(EncodeError::InsufficientSize(need)) => {
                                out.truncate(start);
                                out.reserve(need.required_size);
                            }
                            Err(EncodeError::AlreadyEncoded) => {
                                out.truncate(start);
                                break Ok(None);
                            }
                        }
                    }
                }
                // What was encoded is in `outgoing`, written before we wait on the client.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Ok(None)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Progress::NeedMore)),
                Ok(ConnectionState::WriteTraffic(_)) => Ok(Some(Progress::Open)),
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Ok(None)
                }
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    self.closed = true;
                    Ok(Some(Progress::Closed))
                }
                // Early data is off (`max_early_data_size` 0); anything else is new to us.
                Ok(other) => Err(rustls::Error::General(format!(
                    "unexpected TLS state {other:?}"
                ))),
            };
            if discard > 0
                && let Some(buf) = self.incoming.as_mut()
            {
                let n = discard.min(buf.len());
                buf.advance(n);
                if buf.is_empty() {
                    self.incoming = None;
                }
            }
            if let Some(progress) = step? {
                return Ok(progress);
            }
        }
    }

    /// Encrypts `data` into `outgoing`.
    fn encrypt(&mut self, data: &[u8]) -> Result<(), rustls::Error> {
        if self.closed {
            return Err(rustls::Error::General("the TLS session is closed".into()));
        }
        let mut empty = [0u8; 0];
        let incoming: &mut [u8] = match self.incoming.as_mut() {
            Some(buf) => &mut buf[..],
            None => &mut empty,
        };
        // Every whole record was processed when read: the session can only be open here
        // (or have records of its own to send first, which `process` queues).
        let UnbufferedStatus { discard, state } = self.conn.process_tls_records(incoming);
        debug_assert_eq!(discard, 0);
        let mut traffic = match state? {
            ConnectionState::WriteTraffic(traffic) => traffic,
            other => {
                let what = format!("{other:?}");
                drop(other);
                // Records of its own first (a key update's answer), then ours.
                let mut plain = None;
                self.process(&mut plain)?;
                if plain.is_some() {
                    return Err(rustls::Error::General(format!(
                        "unprocessed TLS records while writing ({what})"
                    )));
                }
                return self.encrypt(data);
            }
        };
        let out = self
            .outgoing
            .get_or_insert_with(|| BufPool::global().get(data.len() + 64));
        let start = out.len();
        out.reserve(data.len() + data.len() / 16_384 * 22 + 64);
        loop {
            let room = out.capacity() - start;
            out.resize(start + room, 0);
            match traffic.encrypt(data, &mut out[start..]) {
                Ok(n) => {
                    out.truncate(start + n);
                    return Ok(());
                }
                Err(EncryptError::InsufficientSize(need)) => {
                    out.truncate(start);
                    out.reserve(need.required_size);
                }
                Err(EncryptError::EncryptExhausted) => {
                    out.truncate(start);
                    return Err(rustls::Error::EncryptError);
                }
            }
        }
    }

    /// Queues a `close_notify` (once).
    fn close_notify(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut empty = [0u8; 0];
        let incoming: &mut [u8] = match self.incoming.as_mut() {
            Some(buf) => &mut buf[..],
            None => &mut empty,
        };
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(incoming);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
            let out = self
                .outgoing
                .get_or_insert_with(|| BufPool::global().get(64));
            let start = out.len();
            out.resize(start + 64, 0);
            match traffic.queue_close_notify(&mut out[start..]) {
                Ok(n) => out.truncate(start + n),
                Err(_) => out.truncate(start),
            }
        }
    }

    /// Writes the queued records; the buffer goes back to the pool.
    async fn flush(&mut self) -> io::Result<()> {
        if let Some(out) = self.outgoing.take()
            && !out.is_empty()
        {
            self.tcp.write_all(&out).await?;
        }
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server socket and a rustls client on loopback, the handshake done.
    async fn pair() -> (Box<TlsSocket>, tokio_rustls::client::TlsStream<TcpStream>) {
        let dir = tempfile::tempdir().unwrap();
        let made = crate::tls::self_signed(dir.path(), &[]).unwrap();
        let certs = crate::tls::Certificates::load(&made.tls, Default::default()).unwrap();
        let config = crate::tls::server_config(&certs, &[crate::tls::ALPN_PUSH]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for ca in crate::tls::load_chain(&made.ca).unwrap() {
            roots.add(ca).unwrap();
        }
        let mut client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![crate::tls::ALPN_PUSH.to_vec()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connecting = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap()
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let (server, early) = TlsSocket::accept(tcp, config).await.unwrap();
        assert!(early.is_none());
        (server, connecting.await.unwrap())
    }

    fn idle(tls: &TlsSocket) -> bool {
        tls.incoming.is_none() && tls.outgoing.is_none()
    }

    #[tokio::test]
    async fn an_idle_tls_socket_holds_no_buffer_and_answers_a_key_update() {
        let (tls, mut client) = pair().await;
        let mut socket = Socket::Tls(tls);
        let Socket::Tls(tls) = &socket else {
            unreachable!()
        };
        assert!(idle(tls), "after the handshake nothing is kept");
        // Client to server, cut into many small writes.
        let text = vec![7u8; 40_000];
        let writer = {
            let text = text.clone();
            tokio::spawn(async move {
                for chunk in text.chunks(5_000) {
                    client.write_all(chunk).await.unwrap();
                    client.flush().await.unwrap();
                }
                client
            })
        };
        let mut plain: Option<PooledBuf> = None;
        let mut got = Vec::new();
        while got.len() < text.len() {
            assert_eq!(socket.read(&mut plain).await.unwrap(), Read::Data);
            if let Some(buf) = plain.take() {
                got.extend_from_slice(&buf);
            }
        }
        assert_eq!(got, text);
        let mut client = writer.await.unwrap();
        let Socket::Tls(tls) = &socket else {
            unreachable!()
        };
        assert!(
            idle(tls),
            "every record decrypted: the ciphertext buffer went back"
        );

        // Server to client, then a key update from the client: the server answers it
        // (its own records, queued and flushed) and traffic goes on both ways.
        socket.write_all(b"hello").await.unwrap();
        let mut five = [0u8; 5];
        client.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"hello");
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(b"after").await.unwrap();
        client.flush().await.unwrap();
        let mut got = Vec::new();
        while got.len() < 5 {
            socket.read(&mut plain).await.unwrap();
            if let Some(buf) = plain.take() {
                got.extend_from_slice(&buf);
            }
        }
        assert_eq!(&got, b"after");
        socket.write_all(b"again").await.unwrap();
        client.read_exact(&mut five).await.unwrap();
        assert_eq!(&five, b"again");
        let Socket::Tls(tls) = &socket else {
            unreachable!()
        };
        assert!(idle(tls));

        // A close_notify from the client is the end.
        client.shutdown().await.unwrap();
        assert_eq!(socket.read(&mut plain).await.unwrap(), Read::Eof);
        // What an idle TLS connection keeps besides its socket: rustls's session.
        let size = std::mem::size_of::<TlsSocket>();
        assert!(size < 2048, "TlsSocket is {size} bytes inline");
    }
}
