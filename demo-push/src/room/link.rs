//! The two transports a client may use, behind one interface: raw TCP carrying push frames
//! back to back, and WebSocket carrying one push frame per binary message or the JSON form
//! per text message.
//!
//! Both hold **no buffer while idle**: a link waits for readiness, then reads into a buffer
//! borrowed from the codec's [`BufPool`] and gives it back as soon as every complete frame
//! is decoded; replies are written from a pooled buffer returned after the write. An idle
//! connection costs its task, its socket and a few small structs. WebSocket framing is
//! the codec's [`WsCodec`] over the same buffers (no WebSocket library state per
//! connection: tungstenite would keep a read buffer, 128 KiB by default, tungstenite#480).

use longlink_codec::push::{Op, PushCodec, PushFrame, PushMessage};
use longlink_codec::ws::{OpCode, WsCodec, WsMessage, encode_header};
use longlink_codec::{BufPool, CodecError, PooledBuf};

use super::socket::{Read, Socket};
use super::sse::SseLink;
use crate::frame::Frame;
use tokio_util::codec::Decoder;
/// WebSocket close status: normal closure.
pub(crate) const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close status: the server goes away (a drain).
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close status: a protocol error (broken framing).
pub(crate) const CLOSE_PROTOCOL: u16 = 1002;
/// WebSocket close status: data that does not fit its message (not UTF-8, does not decode).
pub(crate) const CLOSE_INVALID_DATA: u16 = 1007;
/// WebSocket close status: a policy violation (refused AUTH, a server-only op, too slow).
pub(crate) const CLOSE_POLICY: u16 = 1008;
/// WebSocket close status: a message too big.
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;

/// The form a client speaks; its answers go back in the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Binary,
    Json,
}

/// Why a link stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The client sent something that is not a valid frame or message.
    #[error("bad frame: {0}")]
    Protocol(#[from] CodecError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`Link::recv`] got.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A push message, with its sequence number and the form it came in.
    Message(u32, PushMessage, Form),
    /// A WebSocket control frame was handled and its answer queued: flush.
    Control,
}

/// One client connection's socket: raw TCP carrying push frames back to back, or
/// WebSocket carrying one push frame per binary message (the JSON form per text message).
pub(crate) struct Link {
    socket: Socket,
    /// Bytes read and not yet decoded; `None` while idle.
    inbound: Option<PooledBuf>,
    /// Bytes queued for the next flush; `None` while idle.
    out: Option<PooledBuf>,
    push: PushCodec,
    /// `Some` for WebSocket.
    ws: Option<WsCodec>,
    max_frame_bytes: usize,
    /// The form of the last message read (text: JSON), for answering one that does not
    /// decode in the form it came in.
    last_form: Form,
    /// A WebSocket CLOSE has been queued (ours or the answer to the client's).
    close_sent: bool,
    /// `Some` for SSE: the downstream is this socket's chunked `text/event-stream`, the
    /// upstream comes from POSTs through the session's inbox (boxed: the other links
    /// stay small).
    sse: Option<Box<SseLink>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tls = matches!(self.socket, Socket::Tls(_));
        if self.sse.is_some() {
            return f.write_str(if tls { "Link::Sses" } else { "Link::Sse" });
        }
        f.write_str(match (self.ws.is_some(), tls) {
            (true, false) => "Link::Ws",
            (true, true) => "Link::Wss",
            (false, false) => "Link::Tcp",
            (false, true) => "Link::TcpTls",
        })
    }
}

impl Link {
    /// Push frames back to back on `socket`; `early` holds plaintext that came with the
    /// TLS handshake.
    pub(crate) fn tcp(socket: Socket, early: Option<PooledBuf>, max_frame_bytes: usize) -> Link {
        Link {
            socket,
            inbound: early,
            out: None,
            push: PushCodec::new().max_frame_bytes(max_frame_bytes),
            ws: None,
            max_frame_bytes,
            close_sent: false,
            last_form: Form::Binary,
            sse: None,
        }
    }

    /// An SSE link: `sse` holds the AUTH that came as the `POST /sse` body (what the
    /// session reads first); its answer opens the stream on `socket`.
    pub(crate) fn sse(socket: Socket, sse: SseLink, max_frame_bytes: usize) -> Link {
        let mut link = Link::tcp(socket, None, max_frame_bytes);
        link.last_form = Form::Json;
        link.sse = Some(Box::new(sse));
        link
    }

    /// The session key the AUTH OK names: for SSE a new unguessable key that binds the
    /// POSTs to this session from now on; `{room}:{id}` otherwise.
    pub(crate) fn bind(&mut self, room: &super::RoomInner, id: u64) -> String {
        match self.sse.as_mut() {
            Some(sse) => sse.bind(&room.sse, &room.config.name, id),
            None => format!("{}:{id}", room.config.name),
        }
    }

    /// The SSE session's key, once bound (`None` for other links).
    pub(crate) fn sse_key(&self) -> Option<&str> {
        self.sse.as_ref().and_then(|s| s.key())
    }

    /// A WebSocket link over an upgraded stream; `early` holds bytes that followed the
    /// upgrade request.
    pub(crate) fn ws(socket: Socket, early: Option<PooledBuf>, max_frame_bytes: usize) -> Link {
        let mut link = Link::tcp(socket, early, max_frame_bytes);
        // A push frame per WebSocket message; the JSON form may be a little longer.
        link.ws = Some(WsCodec::new().max_message_bytes(max_frame_bytes + 1024));
        link
    }

    /// `true` when the link holds no buffer (what an idle connection should cost).
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.inbound.is_none() && self.out.is_none()
    }

    fn out(&mut self, hint: usize) -> &mut PooledBuf {
        self.out.get_or_insert_with(|| BufPool::global().get(hint))
    }

    /// The next message from the client; `None` when it hung up (or closed the WebSocket).
    ///
    /// Waits for readiness without a buffer and borrows one from the pool only when there
    /// is something to read; it goes back as soon as every whole frame is decoded. Cancel
    /// safe: nothing is lost if the future is dropped.
    pub(crate) async fn recv(&mut self) -> Result<Option<Inbound>, LinkError> {
        if self.sse.is_some() {
            // Boxed: its state would otherwise grow every connection's task, SSE or not.
            return Box::pin(self.recv_sse()).await;
        }
        loop {
            if let Some(inbound) = self.decode()? {
                return Ok(Some(inbound));
            }
            if self.close_sent {
                return Ok(None);
            }
            if self.socket.wants_flush() {
                // TLS records of the session's own (a key update's answer) go out now.
                return Ok(Some(Inbound::Control));
            }
            self.socket.readable().await?;
            let had = self.inbound.as_ref().map_or(0, |b| b.len());
            match self.socket.try_read(&mut self.inbound) {
                Ok(Read::Eof) => {
                    return if had == 0 {
                        Ok(None)
                    } else {
                        Err(LinkError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                    };
                }
                Ok(Read::Data) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// SSE: the AUTH first, then what is POSTed; `None` when the stream's connection
    /// closed. Anything the client sends on the stream's own connection is dropped (it has
    /// nothing to say there), as it arrives, so it holds no buffer.
    async fn recv_sse(&mut self) -> Result<Option<Inbound>, LinkError> {
        let Some(sse) = self.sse.as_mut() else {
            return Ok(None);
        };
        if let Some((seq, auth)) = sse.take_auth() {
            return Ok(Some(Inbound::Message(seq, auth, Form::Json)));
        }
        loop {
            if self.socket.wants_flush() {
                return Ok(Some(Inbound::Control));
            }
            tokio::select! {
                posted = sse.next() => {
                    return Ok(posted.map(|(seq, m)| Inbound::Message(seq, m, Form::Json)));
                }
                readable = self.socket.readable() => {
                    readable?;
                    match self.socket.try_read(&mut self.inbound) {
                        Ok(Read::Eof) => return Ok(None),
                        Ok(Read::Data) => self.inbound = None,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// One message out of what has been read, if a whole one is there.
    fn decode(&mut self) -> Result<Option<Inbound>, LinkError> {
        let Some(buf) = self.inbound.as_mut() else {
            return Ok(None);
        };
        let Some(ws) = self.ws.as_mut() else {
            let Some(frame) = self.push.decode(buf)? else {
                return Ok(None);
            };
            if buf.is_empty() {
                self.inbound = None; // back to the pool
            }
            return Ok(Some(decode_frame(frame, Form::Binary)?));
        };
        let Some(message) = ws.decode(buf)? else {
            return Ok(None);
        };
        if buf.is_empty() {
            self.inbound = None;
        }
        match message {
            WsMessage::Binary(mut body) => {
                self.last_form = Form::Binary;
                let len = body.len();
                let frame = self.push.decode(&mut body)?;
                match frame {
                    Some(frame) if body.is_empty() => Ok(Some(decode_frame(frame, Form::Binary)?)),
                    _ => Err(CodecError::Malformed {
                        what: "websocket message",
                        reason: format!("{len} bytes are not exactly one push frame"),
                    }
                    .into()),
                }
            }
            WsMessage::Text(text) => {
                self.last_form = Form::Json;
                let text = std::str::from_utf8(&text).map_err(|e| CodecError::Malformed {
                    what: "websocket message",
                    reason: e.to_string(),
                })?;
                let (seq, message) = PushMessage::from_json(text, self.max_frame_bytes)?;
                Ok(Some(Inbound::Message(seq, message, Form::Json)))
            }
            WsMessage::Ping(payload) => {
                let out = self.out(payload.len() + 2);
                encode_header(OpCode::Pong, payload.len(), &mut **out);
                out.extend_from_slice(&payload);
                Ok(Some(Inbound::Control))
            }
            WsMessage::Pong(_) => Ok(Some(Inbound::Control)),
            WsMessage::Close(status) => {
                // Answer with the same status (RFC 6455 §5.5.1), then the link is done.
                if !self.close_sent {
                    self.queue_close(status.map_or(CLOSE_NORMAL, |(code, _)| code));
                }
                Ok(None)
            }
        }
    }

    fn queue_close(&mut self, code: u16) {
        self.close_sent = true;
        let out = self.out(4);
        encode_header(OpCode::Close, 2, &mut **out);
        out.extend_from_slice(&code.to_be_bytes());
    }

    /// The form of the last message read: what an ERROR about it goes out in.
    pub(crate) fn last_form(&self) -> Form {
        self.last_form
    }

    /// Queues a shared frame (written at the next flush).
    pub(crate) fn feed(&mut self, frame: &Frame, form: Form) {
        if self.sse.is_some() {
            return self.feed_event(frame.json());
        }
        let body = match form {
            Form::Binary => frame.binary(),
            Form::Json => frame.json(),
        };
        let ws = self.ws.is_some();
        let out = self.out(body.len() + 10);
        if ws {
            let opcode = match form {
                Form::Binary => OpCode::Binary,
                Form::Json => OpCode::Text,
            };
            encode_header(opcode, body.len(), &mut **out);
        }
        out.extend_from_slice(body);
    }

    /// Queues a reply to this client only.
    pub(crate) fn feed_message(
        &mut self,
        seq: u32,
        message: &PushMessage,
        form: Form,
    ) -> Result<(), LinkError> {
        if self.sse.is_some() {
            self.feed_event(message.to_json(seq).as_bytes());
            return Ok(());
        }
        if self.ws.is_none() {
            let out = self.out(256);
            return Ok(message.encode(seq, out)?);
        }
        match form {
            Form::Json => {
                let json = message.to_json(seq);
                let out = self.out(json.len() + 10);
                encode_header(OpCode::Text, json.len(), &mut **out);
                out.extend_from_slice(json.as_bytes());
            }
            Form::Binary => {
                // The WebSocket header needs the frame's length first.
                let mut frame = BufPool::global().get(256);
                message.encode(seq, &mut frame)?;
                let out = self.out(frame.len() + 10);
                encode_header(OpCode::Binary, frame.len(), &mut **out);
                out.extend_from_slice(&frame);
            }
        }
        Ok(())
    }

    /// SSE: queues one event (the stream's head first, the first time).
    fn feed_event(&mut self, json: &[u8]) {
        let Some(sse) = self.sse.as_mut() else { return };
        if sse.ended {
            return;
        }
        let head = !std::mem::replace(&mut sse.streaming, true);
        let out = self.out(
            json.len()
                + 16
                + if head {
                    super::http::STREAM_HEAD.len()
                } else {
                    0
                },
        );
        if head {
            out.extend_from_slice(super::http::STREAM_HEAD.as_bytes());
        }
        super::http::event_chunk(json, &mut **out);
    }

    /// Refuses the AUTH with `reply` and closes: for SSE an HTTP `status` with the reply
    /// as its JSON body (the stream never opened), otherwise the reply itself.
    pub(crate) async fn refuse(&mut self, seq: u32, reply: &PushMessage, status: u16) {
        match self.sse.as_mut() {
            Some(sse) if !sse.streaming => {
                sse.ended = true;
                let answer = super::http::answer(status, &reply.to_json(seq), false);
                let _ = self.socket.write_all(answer.as_bytes()).await;
                self.socket.shutdown().await;
            }
            _ => {
                let _ = self.feed_message(seq, reply, self.last_form);
                self.close_with(CLOSE_POLICY).await;
            }
        }
    }

    /// The session ended before its AUTH was answered (closed while it was checked): an
    /// SSE client still waiting for the answer to its `POST /sse` gets a `503`; other links
    /// have nothing more to say.
    pub(crate) async fn abandon(&mut self) {
        let reply = PushMessage::AuthReply(longlink_codec::push::AuthReply {
            ok: false,
            reason: Some("the session closed before it opened: try again".into()),
            heartbeat_secs: 0,
            session: None,
        });
        if self.sse.as_ref().is_some_and(|s| !s.streaming && !s.ended) {
            self.refuse(0, &reply, 503).await;
        }
    }

    /// Writes everything queued in one write; the buffer goes back to the pool after.
    pub(crate) async fn flush(&mut self) -> Result<(), LinkError> {
        match self.out.take() {
            Some(buf) => self.socket.write_all(&buf).await?,
            None if self.socket.wants_flush() => self.socket.write_all(&[]).await?,
            None => {}
        }
        Ok(())
    }

    /// Flushes and closes (with a WebSocket CLOSE first, unless one was sent).
    pub(crate) async fn close(&mut self) {
        self.close_with(CLOSE_NORMAL).await;
    }

    /// Flushes and closes with this WebSocket close status (unless a CLOSE was sent).
    pub(crate) async fn close_with(&mut self, code: u16) {
        if let Some(sse) = self.sse.as_mut() {
            // POSTs find no session from now on; the stream ends with its last chunk.
            sse.unbind();
            if sse.streaming && !std::mem::replace(&mut sse.ended, true) {
                self.out(8).extend_from_slice(super::http::LAST_CHUNK);
            }
        }
        if self.ws.is_some() && !self.close_sent {
            self.queue_close(code);
        }
        let _ = self.flush().await;
        self.socket.shutdown().await;
    }
}

fn decode_frame(frame: PushFrame, form: Form) -> Result<Inbound, CodecError> {
    if frame.op == Op::BATCH {
        return Err(CodecError::Malformed {
            what: "batch",
            reason: "clients may not send batches".into(),
        });
    }
    Ok(Inbound::Message(
        frame.seq,
        PushMessage::from_frame(&frame)?,
        form,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use longlink_codec::push::Ack;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Link, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Link::tcp(Socket::Plain(server), None, 1024), client)
    }

    #[tokio::test]
    async fn tcp_holds_no_buffer_between_frames_and_reads_frames_split_anyhow() {
        let (mut link, mut client) = pair().await;
        assert!(link.is_idle());
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
            let Some(Inbound::Message(seq, message, _)) = link.recv().await.unwrap() else {
                panic!("a message")
            };
            assert_eq!(
                (seq, message),
                (n as u32, PushMessage::Ack(Ack { ids: vec![n] }))
            );
        }
        let mut client = writer.await.unwrap();
        assert!(
            link.is_idle(),
            "every frame decoded: the read buffer went back"
        );
        link.feed_message(1, &PushMessage::HeartbeatReply, Form::Binary)
            .unwrap();
        assert!(!link.is_idle());
        link.flush().await.unwrap();
        assert!(link.is_idle(), "written: the write buffer went back");
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

    /// A masked client frame carrying `payload`.
    fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let key = [9, 8, 7, 6];
        let mut frame = vec![0x80 | opcode.bits(), 0x80 | payload.len() as u8];
        frame.extend_from_slice(&key);
        let mut body = payload.to_vec();
        longlink_codec::ws::apply_mask(&mut body, key);
        frame.extend_from_slice(&body);
        frame
    }

    #[tokio::test]
    async fn websocket_holds_no_buffer_between_messages_and_answers_a_ping() {
        let (link, client) = pair().await;
        let Link { socket, .. } = link;
        let mut link = Link::ws(socket, None, 1024);
        let (mut client_rx, mut client_tx) = client.into_split();
        let mut wire = Vec::new();
        for n in 0..2u64 {
            let mut frame = BytesMut::new();
            PushMessage::Ack(Ack { ids: vec![n] })
                .encode(n as u32, &mut frame)
                .unwrap();
            wire.extend(client_frame(OpCode::Binary, &frame));
        }
        wire.extend(client_frame(OpCode::Ping, b"hi"));
        let writer = tokio::spawn(async move {
            for b in wire {
                client_tx.write_all(&[b]).await.unwrap();
                tokio::task::yield_now().await;
            }
            client_tx
        });
        for n in 0..2u64 {
            let Some(Inbound::Message(seq, message, Form::Binary)) = link.recv().await.unwrap()
            else {
                panic!("a binary message")
            };
            assert_eq!(
                (seq, message),
                (n as u32, PushMessage::Ack(Ack { ids: vec![n] }))
            );
        }
        assert!(matches!(link.recv().await.unwrap(), Some(Inbound::Control)));
        assert!(!link.is_idle(), "the pong is queued");
        link.flush().await.unwrap();
        assert!(link.is_idle(), "read and written: both buffers went back");
        let mut pong = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut client_rx, &mut pong)
            .await
            .unwrap();
        assert_eq!(pong, [0x8A, 2, b'h', b'i']);
        drop(writer.await.unwrap());
    }
}
