//! A client's connection to a room: raw TCP or WebSocket (binary frames), one interface.

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use longlink_codec::push::{Op, PushCodec, PushMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::codec::{Decoder, Framed};

use super::ClientError;

pub(super) enum Conn {
    Tcp(Framed<TcpStream, PushCodec>),
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>, PushCodec),
}

impl Conn {
    pub(super) async fn tcp(addr: &str, max_frame_bytes: usize) -> Result<Conn, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let codec = PushCodec::new().max_frame_bytes(max_frame_bytes);
        Ok(Conn::Tcp(Framed::new(stream, codec)))
    }

    pub(super) async fn ws(url: &str, max_frame_bytes: usize) -> Result<Conn, ClientError> {
        let config = WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .max_message_size(Some(max_frame_bytes))
            .max_frame_size(Some(max_frame_bytes));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| ClientError::Io(std::io::Error::other(e)))?;
        Ok(Conn::Ws(
            Box::new(ws),
            PushCodec::new().max_frame_bytes(max_frame_bytes),
        ))
    }

    pub(super) async fn send(
        &mut self,
        seq: u32,
        message: &PushMessage,
    ) -> Result<(), ClientError> {
        match self {
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
