//! A connection's two halves, over plain TCP or (feature `tls`) TLS, for the reader and
//! the writer that own them.
//!
//! An enum rather than a trait object or a generic: plain TCP keeps tokio's owned halves
//! (no lock between reader and writer, no box), and the only cost TLS adds to a plain
//! connection is a match on the variant per read or write call — not per frame. Without
//! the `tls` feature the enum has one variant and the match compiles away.
//!
//! A TLS session is one state machine shared by both directions, so its halves come from
//! `tokio::io::split` (a short lock around each poll). Its writes are buffered by rustls:
//! a writer must `flush` after each batch, or the batch's tail may stay in the session.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[cfg(feature = "tls")]
type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// The half a connection's reader owns.
#[derive(Debug)]
pub(crate) enum ReadHalf {
    /// Plain TCP.
    Tcp(OwnedReadHalf),
    /// TLS over TCP.
    #[cfg(feature = "tls")]
    Tls(tokio::io::ReadHalf<TlsStream>),
}

/// The half a connection's writer owns.
#[derive(Debug)]
pub(crate) enum WriteHalf {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// TLS over TCP.
    #[cfg(feature = "tls")]
    Tls(tokio::io::WriteHalf<TlsStream>),
}

/// Splits a plain TCP connection.
pub(crate) fn tcp(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = stream.into_split();
    (ReadHalf::Tcp(read), WriteHalf::Tcp(write))
}

/// Splits a TLS connection (client or server side) whose handshake is done.
#[cfg(feature = "tls")]
pub(crate) fn tls(stream: impl Into<TlsStream>) -> (ReadHalf, WriteHalf) {
    let (read, write) = tokio::io::split(stream.into());
    (ReadHalf::Tls(read), WriteHalf::Tls(write))
}

impl AsyncRead for ReadHalf {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            ReadHalf::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            WriteHalf::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(io) => Pin::new(io).poll_flush(cx),
            #[cfg(feature = "tls")]
            WriteHalf::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            WriteHalf::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            WriteHalf::Tls(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Tcp(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            WriteHalf::Tls(io) => io.is_write_vectored(),
        }
    }
}
