//! A client's connection to a room: raw TCP, WebSocket (binary frames) or the SSE
//! fallback (JSON over HTTP), each plain or over TLS (rustls), one interface.

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use longlink_codec::push::{Op, PushCodec, PushMessage};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::codec::{Decoder, Framed};
use tokio_util::either::Either;

use super::ClientError;

/// A TCP stream, or TLS over one.
pub(super) type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

pub(super) enum Conn {
    Tcp(Framed<Stream, PushCodec>),
    Ws(Box<WebSocketStream<Stream>>, PushCodec),
    Sse(Box<super::sse::SseConn>),
}

/// `config` offering this ALPN protocol only.
pub(super) fn with_alpn(
    config: &Arc<rustls::ClientConfig>,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let mut config = (**config).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A TLS connection to `host:port`, the certificate checked for `host`.
pub(super) async fn tls_connect(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
) -> Result<Box<TlsStream<TcpStream>>, ClientError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| ClientError::Protocol(format!("{host}: not a server name: {e}")))?;
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(Box::new(tls))
}

/// `host:port` split (a bracketed IPv6 host keeps its brackets off).
fn host_port(addr: &str) -> Result<(&str, u16), ClientError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| ClientError::Protocol(format!("{addr}: not host:port")))?;
    let port = port
        .parse()
        .map_err(|_| ClientError::Protocol(format!("{addr}: bad port")))?;
    Ok((host, port))
}

impl Conn {
    /// Push frames on `addr` (`host:port`), over TLS with `tls`.
    pub(super) async fn tcp(
        addr: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
        max_frame_bytes: usize,
    ) -> Result<Conn, ClientError> {
        let stream = match tls {
            None => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Either::Left(stream)
            }
            Some(config) => {
                let (host, port) = host_port(addr)?;
                Either::Right(tls_connect(config, host, port).await?)
            }
        };
        let codec = PushCodec::new().max_frame_bytes(max_frame_bytes);
        Ok(Conn::Tcp(Framed::new(stream, codec)))
    }

    /// WebSocket on `url` (`ws://` or `wss://`, which needs `tls`).
    pub(super) async fn ws(
        url: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
        max_frame_bytes: usize,
    ) -> Result<Conn, ClientError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .max_message_size(Some(max_frame_bytes))
            .max_frame_size(Some(max_frame_bytes));
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ClientError::Protocol(format!("{url}: {e}")))?;
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Protocol(format!("{url}: no host")))?;
        let secure = uri.scheme_str() == Some("wss");
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let stream = if secure {
            let tls = tls.ok_or_else(|| {
                ClientError::Tls(format!("{url}: a wss:// room needs ClientConfig::tls"))
            })?;
            Either::Right(tls_connect(tls, host, port).await?)
        } else {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let stream = TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            Either::Left(stream)
        };
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await
            .map_err(|e| ClientError::Io(std::io::Error::other(e)))?;
        Ok(Conn::Ws(
            Box::new(ws),
            PushCodec::new().max_frame_bytes(max_frame_bytes),
        ))
    }

    /// The SSE fallback of the room whose WebSocket URL is `url` (connects at the AUTH).
    pub(super) fn sse(
        url: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
        max_frame_bytes: usize,
    ) -> Result<Conn, ClientError> {
        super::sse::SseConn::new(url, tls, max_frame_bytes).map(|c| Conn::Sse(Box::new(c)))
    }

    pub(super) async fn send(
        &mut self,
        seq: u32,
        message: &PushMessage,
    ) -> Result<(), ClientError> {
        match self {
            Conn::Sse(sse) => sse.send(seq, message).await?,
            Conn::Tcp(framed) => {
                let frame = message.to_frame(seq)?;
                framed.send(frame).await?;
            }
            Conn::Ws(ws, _) => {
                let mut buf = BytesMut::new();
                message.encode(seq, &mut buf)?;
                ws.send(WsMessage::Binary(buf.freeze()))
                    .await
                    .map_err(|e| ClientError::Io(std::io::Error::other(e)))?;
            }
        }
        Ok(())
    }

    /// The next messages from the room with their seq (a BATCH frame gives several);
    /// `None` at EOF.
    pub(super) async fn recv(&mut self) -> Result<Option<Vec<(u32, PushMessage)>>, ClientError> {
        let frame = match self {
            Conn::Sse(sse) => return sse.recv().await,
            Conn::Tcp(framed) => match framed.next().await {
                None => return Ok(None),
                Some(frame) => frame?,
            },
            Conn::Ws(ws, codec) => loop {
                match ws.next().await {
                    None | Some(Ok(WsMessage::Close(_))) => return Ok(None),
                    Some(Err(e)) => return Err(ClientError::Io(std::io::Error::other(e))),
                    Some(Ok(WsMessage::Binary(bytes))) => {
                        let mut buf = BytesMut::from(&bytes[..]);
                        match codec.decode(&mut buf)? {
                            Some(frame) => break frame,
                            None => {
                                return Err(ClientError::Protocol(
                                    "a websocket message held a partial frame".into(),
                                ));
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                }
            },
        };
        if frame.op == Op::BATCH {
            let max = match self {
                Conn::Tcp(f) => f.codec().get_max_frame_bytes(),
                Conn::Ws(_, c) => c.get_max_frame_bytes(),
                Conn::Sse(_) => unreachable!("an sse stream carries messages, not frames"),
            };
            return frame
                .unbatch(max)
                .map(|f| {
                    let f = f?;
                    Ok((f.seq, PushMessage::from_frame(&f)?))
                })
                .collect::<Result<Vec<_>, ClientError>>()
                .map(Some);
        }
        Ok(Some(vec![(frame.seq, PushMessage::from_frame(&frame)?)]))
    }
}
