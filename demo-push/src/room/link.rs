//! The two transports a client may use, behind one interface: raw TCP carrying push frames
//! back to back, and WebSocket carrying one push frame per binary message or the JSON form
//! per text message.
//!
//! Raw TCP holds **no buffer while idle**: it waits for readiness, then reads into a buffer
//! borrowed from the codec's [`BufPool`] and gives it back as soon as every complete frame
//! is decoded; replies are written from a pooled buffer returned after the write. An idle
//! connection costs its task, its socket and a few small structs. WebSocket keeps
//! tungstenite's read buffer, set to 4 KiB (its default is 128 KiB: tungstenite#480).

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use longlink_codec::CodecError;
use longlink_codec::push::{Op, PushCodec, PushFrame, PushMessage};
use longlink_codec::{BufPool, PooledBuf};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, Utf8Bytes};
use tokio_util::codec::Decoder;

/// What a read asks of the pool: most frames from clients are small.
const READ_CHUNK: usize = 4096;

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
        reader: OwnedReadHalf,
        codec: PushCodec,
        /// Bytes read and not yet decoded; `None` while idle.
        inbound: Option<PooledBuf>,
        writer: OwnedWriteHalf,
        /// Bytes queued for the next flush; `None` while idle.
        out: Option<PooledBuf>,
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
        let (reader, writer) = stream.into_split();
        Link::Tcp {
            reader,
            codec: PushCodec::new().max_frame_bytes(max_frame_bytes),
            inbound: None,
            writer,
            out: None,
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
            Link::Tcp {
                reader,
                codec,
                inbound,
                ..
            } => loop {
                if let Some(buf) = inbound.as_mut()
                    && let Some(frame) = codec.decode(buf)?
                {
                    if buf.is_empty() {
                        *inbound = None; // back to the pool
                    }
                    return Ok(Some(decode_frame(frame, Form::Binary)?));
                }
                // Wait without a buffer; borrow one only when there is something to read.
                reader.readable().await?;
                let buf = inbound.get_or_insert_with(|| BufPool::global().get(READ_CHUNK));
                if buf.capacity() - buf.len() < 512 {
                    buf.reserve(READ_CHUNK);
                }
                match reader.try_read_buf(&mut **buf) {
                    Ok(0) => {
                        return if buf.is_empty() {
                            Ok(None)
                        } else {
                            Err(LinkError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                        };
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if buf.is_empty() {
                            *inbound = None;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
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
                out.get_or_insert_with(|| BufPool::global().get(payload.binary.len()))
                    .extend_from_slice(&payload.binary);
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
            Link::Tcp { out, .. } => {
                let out = out.get_or_insert_with(|| BufPool::global().get(256));
                Ok(message.encode(seq, out)?)
            }
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
                if let Some(buf) = out.take()
                    && !buf.is_empty()
                {
                    // The buffer goes back to the pool once written.
                    writer.write_all(&buf).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use longlink_codec::push::Ack;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (Link, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Link::tcp(server, 1024), client)
    }

    fn idle(link: &Link) -> bool {
        matches!(
            link,
            Link::Tcp {
                inbound: None,
                out: None,
                ..
            }
        )
    }

    #[tokio::test]
    async fn tcp_holds_no_buffer_between_frames_and_reads_frames_split_anyhow() {
        let (mut link, mut client) = pair().await;
        assert!(idle(&link));
        let mut wire = BytesMut::new();
        for n in 0..3u64 {
            PushMessage::Ack(Ack { ids: vec![n] })
                .encode(n as u32, &mut wire)
                .unwrap();
        }
        // One byte at a time: the frames arrive split across many reads.
        let writer = tokio::spawn(async move {
            for b in wire.iter() {
                client.write_all(&[*b]).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        for n in 0..3u64 {
            let (seq, message, _) = link.recv().await.unwrap().unwrap();
            assert_eq!(
                (seq, message),
                (n as u32, PushMessage::Ack(Ack { ids: vec![n] }))
            );
        }
        let mut client = writer.await.unwrap();
        assert!(
            idle(&link),
            "every frame decoded: the read buffer went back"
        );
        link.feed_message(1, &PushMessage::HeartbeatReply, Form::Binary)
            .await
            .unwrap();
        assert!(!idle(&link));
        link.flush().await.unwrap();
        assert!(idle(&link), "written: the write buffer went back");
        // A frame cut off by EOF is an error, a clean EOF is the end.
        client.write_all(&[0, 0, 0, 40, 0]).await.unwrap();
        client.shutdown().await.unwrap();
        assert!(matches!(link.recv().await, Err(LinkError::Io(_))));
    }

    #[tokio::test]
    async fn tcp_refuses_an_oversized_frame_from_its_header() {
        let (mut link, mut client) = pair().await;
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&(1u32 << 20).to_be_bytes());
        wire.extend_from_slice(&[0, 16, 0, 1, 0, 0, 0, 7, 0, 0, 0, 1]);
        client.write_all(&wire).await.unwrap();
        assert!(matches!(
            link.recv().await,
            Err(LinkError::Protocol(CodecError::FrameTooLarge { .. }))
        ));
    }
}
