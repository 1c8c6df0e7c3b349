//! The two transports a client may use, behind one interface: raw TCP carrying push frames
//! back to back, and WebSocket carrying one push frame per binary message or the JSON form
//! per text message.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use longlink_codec::CodecError;
use longlink_codec::push::{Op, PushCodec, PushFrame, PushMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, Utf8Bytes};
use tokio_util::codec::{Decoder, FramedRead};

/// The form a client speaks; its answers go back in the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Binary,
    Json,
}

/// A message encoded once in both forms, shared by every connection it goes to.
#[derive(Debug)]
pub struct Payload {
    binary: Bytes,
    json: Utf8Bytes,
}

impl Payload {
    /// Encodes `message` (with `seq`) in both forms.
    pub fn new(seq: u32, message: &PushMessage) -> Result<Payload, CodecError> {
        let mut binary = BytesMut::new();
        message.encode(seq, &mut binary)?;
        Ok(Payload {
            binary: binary.freeze(),
            json: Utf8Bytes::from(message.to_json(seq)),
        })
    }

    /// The binary frame's size.
    pub fn len(&self) -> usize {
        self.binary.len()
    }

    /// `true` for an empty payload (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.binary.is_empty()
    }
}

/// Why a link stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The client sent something that is not a valid frame or message.
    #[error("bad frame: {0}")]
    Protocol(#[from] CodecError),
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) enum Link {
    Tcp {
        reader: FramedRead<OwnedReadHalf, PushCodec>,
        writer: OwnedWriteHalf,
        out: BytesMut,
    },
    Ws {
        ws: Box<WebSocketStream<TcpStream>>,
        codec: PushCodec,
        max_frame_bytes: usize,
    },
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Tcp { .. } => "Link::Tcp",
            Link::Ws { .. } => "Link::Ws",
        })
    }
}

impl Link {
    pub(crate) fn tcp(stream: TcpStream, max_frame_bytes: usize) -> Link {
        let (read, writer) = stream.into_split();
        let reader = FramedRead::with_capacity(
            read,
            PushCodec::new().max_frame_bytes(max_frame_bytes),
            1024,
        );
        Link::Tcp {
            reader,
            writer,
            out: BytesMut::new(),
        }
    }

    pub(crate) fn ws(ws: WebSocketStream<TcpStream>, max_frame_bytes: usize) -> Link {
        Link::Ws {
            ws: Box::new(ws),
            codec: PushCodec::new().max_frame_bytes(max_frame_bytes),
            max_frame_bytes,
        }
    }

    /// The next message from the client and the form it came in; `None` when it hung up.
    pub(crate) async fn recv(&mut self) -> Result<Option<(u32, PushMessage, Form)>, LinkError> {
        match self {
            Link::Tcp { reader, .. } => match reader.next().await {
                None => Ok(None),
                Some(frame) => Ok(Some(decode_frame(frame?, Form::Binary)?)),
            },
            Link::Ws {
                ws,
                codec,
                max_frame_bytes,
            } => loop {
                match ws.next().await {
                    None | Some(Ok(WsMessage::Close(_))) => return Ok(None),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(WsMessage::Binary(bytes))) => {
                        let mut buf = BytesMut::from(&bytes[..]);
                        let frame = codec.decode(&mut buf)?.ok_or(CodecError::BodyTooShort {
                            what: "websocket message",
                            len: bytes.len(),
                            need: 16,
                        })?;
                        return Ok(Some(decode_frame(frame, Form::Binary)?));
                    }
                    Some(Ok(WsMessage::Text(text))) => {
                        let (seq, message) =
                            PushMessage::from_json(text.as_str(), *max_frame_bytes)?;
                        return Ok(Some((seq, message, Form::Json)));
                    }
                    // Pings are answered by tungstenite itself; pongs need nothing.
                    Some(Ok(_)) => {}
                }
            },
        }
    }

    /// Queues a shared payload (written at the next flush).
    pub(crate) async fn feed(&mut self, payload: &Payload, form: Form) -> Result<(), LinkError> {
        match self {
            Link::Tcp { out, .. } => {
                out.extend_from_slice(&payload.binary);
                Ok(())
            }
            Link::Ws { ws, .. } => {
                let message = match form {
                    Form::Binary => WsMessage::Binary(payload.binary.clone()),
                    Form::Json => WsMessage::Text(payload.json.clone()),
                };
                Ok(ws.feed(message).await?)
            }
        }
    }

    /// Queues a reply to this client only.
    pub(crate) async fn feed_message(
        &mut self,
        seq: u32,
        message: &PushMessage,
        form: Form,
    ) -> Result<(), LinkError> {
        match self {
            Link::Tcp { out, .. } => Ok(message.encode(seq, out)?),
            Link::Ws { ws, .. } => {
                let frame = match form {
                    Form::Json => WsMessage::Text(Utf8Bytes::from(message.to_json(seq))),
                    Form::Binary => {
                        let mut buf = BytesMut::new();
                        message.encode(seq, &mut buf)?;
                        WsMessage::Binary(buf.freeze())
                    }
                };
                Ok(ws.feed(frame).await?)
            }
        }
    }

    /// Writes everything queued (one syscall for TCP; one flush for WebSocket).
    pub(crate) async fn flush(&mut self) -> Result<(), LinkError> {
        match self {
            Link::Tcp { writer, out, .. } => {
                if !out.is_empty() {
                    writer.write_all(out).await?;
                    out.clear();
                    if out.capacity() > 64 * 1024 {
                        // Do not keep a burst's buffer for an idle connection.
                        *out = BytesMut::new();
                    }
                }
                Ok(())
            }
            Link::Ws { ws, .. } => Ok(ws.flush().await?),
        }
    }

    /// Flushes and closes.
    pub(crate) async fn close(&mut self) {
        let _ = self.flush().await;
        match self {
            Link::Tcp { writer, .. } => {
                let _ = writer.shutdown().await;
            }
            Link::Ws { ws, .. } => {
                let _ = (**ws).close(None).await;
            }
        }
    }
}

fn decode_frame(frame: PushFrame, form: Form) -> Result<(u32, PushMessage, Form), CodecError> {
    if frame.op == Op::BATCH {
        return Err(CodecError::Malformed {
            what: "batch",
            reason: "clients may not send batches".into(),
        });
    }
    Ok((frame.seq, PushMessage::from_frame(&frame)?, form))
}
