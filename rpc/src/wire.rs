//! Reading and writing frames on a socket, shared by the server and the client.
//!
//! The reader decodes out of one pooled read buffer; the writer drains its queue into one
//! pooled write buffer and writes the batch with one syscall (write coalescing), and splits
//! large bodies into chunks that take turns with everything else, so a 1 MiB message does
//! not hold up the small ones behind it.

use std::collections::VecDeque;

use bytes::Buf;
use longlink_codec::rpc::{ChunkedMessage, Message, RpcCodec};
use longlink_codec::{BufPool, CodecError, PooledBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

/// Read buffer size: most reads of a busy connection fit, and it is a pool class.
const READ_BUF: usize = 64 * 1024;
/// Stop coalescing once a batch reaches this size and write it.
const MAX_BATCH: usize = 256 * 1024;

/// Decodes messages from a socket's read half.
pub(crate) struct FrameReader<R> {
    io: R,
    buf: PooledBuf,
    codec: RpcCodec,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(io: R, codec: RpcCodec) -> FrameReader<R> {
        FrameReader {
            io,
            buf: BufPool::global().get(READ_BUF),
            codec,
        }
    }

    /// The next message; `Ok(None)` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Message>, CodecError> {
        loop {
            if let Some(message) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(message));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_BUF);
            }
            // Everything read so far is handled: let the tasks it woke run (callers send
            // their next request, handlers answer) before reading again, so one busy
            // connection keeps its pipeline full instead of moving in bursts.
            tokio::task::yield_now().await;
            if self.io.read_buf(&mut *self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(CodecError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

/// What the writer tells its owner about each batch.
///
/// Who may have run a request is decided here, so the order matters: `sending` comes
/// *before* the first byte of a batch goes to the socket (a connection that fails while
/// the batch is being written must already see its requests as possibly delivered, or a
/// caller would be told "not written" about a request the server ran, and retry it), and
/// `unsent` gives back, after a failed write, the requests whose frames the socket did not
/// take whole (the server cannot have read them).
pub(crate) trait WriteObserver: Send + 'static {
    /// The REQ frames with these ids are about to be written.
    fn sending(&mut self, _request_ids: &[u64]) {}
    /// The write failed before these REQ frames (announced by `sending`) were taken whole
    /// by the socket.
    fn unsent(&mut self, _request_ids: &[u64]) {}
    /// A batch of `bytes` is now in the socket.
    fn written(&mut self, _bytes: usize) {}
}

impl WriteObserver for () {}

/// Drains `rx` into the socket until the channel closes (then flushes and returns) or the
/// socket fails.
pub(crate) async fn write_loop<W, O>(
    mut io: W,
    mut rx: mpsc::UnboundedReceiver<Message>,
    codec: RpcCodec,
    mut observer: O,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    O: WriteObserver,
{
    let mut large: VecDeque<ChunkedMessage> = VecDeque::new();
    // The batch's REQ ids, and where each one's (first) frame ends in the batch.
    let mut request_ids = Vec::new();
    let mut request_ends = Vec::new();
    loop {
        // Wait for work only when no large message is part-way out.
        let first = if large.is_empty() {
            let first = match rx.recv().await {
                Some(m) => m,
                None => break,
            };
            if rx.is_empty() {
                // A lone message: whoever queued it has probably woken more tasks that
                // will queue theirs. On the multi-thread runtime the task a send wakes
                // runs next (the worker's LIFO slot), so writing now would write one
                // frame per call (measured: one `sendto` per call, against one per ~38 on
                // current-thread). `yield_now` defers this task until the worker has run
                // what is ready and polled the driver (at most `event_interval` task
                // polls), whatever the scheduler's order: the batch forms first.
                tokio::task::yield_now().await;
            }
            Some(first)
        } else {
            None
        };
        let mut buf = BufPool::global().get(64 * 1024);
        request_ids.clear();
        request_ends.clear();
        let mut next = first;
        loop {
            let message = match next.take() {
                Some(m) => m,
                None => match rx.try_recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let is_request = matches!(message, Message::Request(_));
            let id = message.id();
            let mut chunks = ChunkedMessage::new(message);
            match chunks.encode_next(&codec, &mut buf) {
                Ok(true) => {}
                Ok(false) => large.push_back(chunks),
                Err(e) => {
                    tracing::warn!(error = %e, "dropping a message that cannot be encoded");
                    continue;
                }
            }
            if is_request {
                request_ids.push(id);
                request_ends.push(buf.len());
            }
            if buf.len() >= MAX_BATCH {
                break;
            }
        }
        // One chunk of each large message per batch: they share the socket with
        // everything else instead of holding it.
        for _ in 0..large.len() {
            let mut chunks = large.pop_front().expect("counted");
            match chunks.encode_next(&codec, &mut buf) {
                Ok(true) => {}
                Ok(false) => large.push_back(chunks),
                Err(e) => tracing::warn!(error = %e, "dropping a message that cannot be encoded"),
            }
        }
        let bytes = buf.len();
        observer.sending(&request_ids);
        let mut taken = 0;
        while buf.has_remaining() {
            let n = match io.write(&buf).await {
                Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
                other => other,
            };
            match n {
                Ok(n) => {
                    buf.advance(n);
                    taken += n;
                }
                Err(e) => {
                    // Frames past what the socket took cannot have reached the server.
                    let whole = request_ends.partition_point(|end| *end <= taken);
                    observer.unsent(&request_ids[whole..]);
                    return Err(e);
                }
            }
        }
        // TLS buffers in its session what the socket did not take; plain TCP has nothing
        // to flush (a ready no-op). A failed flush leaves everything announced as possibly
        // sent: what the session let out is not known.
        io.flush().await?;
        observer.written(bytes);
        if large.is_empty() {
            // Give the runtime a chance to fill the queue again before the next batch.
            tokio::task::coop::consume_budget().await;
        }
    }
    io.flush().await?;
    io.shutdown().await
}

/// Bytes `message` takes on the wire when written by [`write_loop`] with `codec` (chunk
/// headers included), for byte budgets that must match what the writer reports.
pub(crate) fn wire_len(message: &Message, codec: &RpcCodec) -> usize {
    use longlink_codec::rpc::HEADER_LEN;
    let (prefix, body) = match message {
        Message::Request(r) if r.metadata.is_empty() => (8, r.body.len()),
        Message::Request(r) => {
            // The metadata rides in the first frame only.
            let first = 10 + r.metadata.as_bytes().len();
            let chunk = codec
                .get_max_chunk_bytes()
                .min(
                    codec
                        .get_max_frame_bytes()
                        .saturating_sub(10 + r.metadata.as_bytes().len()),
                )
                .max(1);
            let rest_chunk = codec
                .get_max_chunk_bytes()
                .min(codec.get_max_frame_bytes().saturating_sub(10))
                .max(1);
            let first_body = r.body.len().min(chunk);
            let frames = 1 + (r.body.len() - first_body).div_ceil(rest_chunk);
            return frames * HEADER_LEN + first + r.body.len();
        }
        Message::Response(r) => (2, r.body.len()),
        Message::Hello(_) | Message::HelloAck(_) => return HEADER_LEN + 12,
        Message::GoAway { .. } => return HEADER_LEN + 8,
        Message::Credit { .. } => return HEADER_LEN + 4,
        Message::Error(e) => return HEADER_LEN + 2 + e.message.len(),
        Message::Cancel { .. } | Message::Ping { .. } | Message::Pong { .. } => return HEADER_LEN,
    };
    let chunk = codec
        .get_max_chunk_bytes()
        .min(codec.get_max_frame_bytes().saturating_sub(prefix))
        .max(1);
    let frames = body.div_ceil(chunk).max(1);
    frames * HEADER_LEN + prefix + body
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use bytes::{Bytes, BytesMut};
    use longlink_codec::rpc::{Features, Flags, Hello, Metadata, Request, Response, Status};
    use tokio_util::codec::Encoder;

    use super::*;

    /// Takes `room` bytes, then fails every write.
    struct Cramped {
        room: usize,
    }

    impl AsyncWrite for Cramped {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if self.room == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// What the observer was told, in order.
    type Events = Vec<(&'static str, Vec<u64>)>;

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Events>>);

    impl WriteObserver for Log {
        fn sending(&mut self, ids: &[u64]) {
            self.0.lock().unwrap().push(("sending", ids.to_vec()));
        }
        fn unsent(&mut self, ids: &[u64]) {
            self.0.lock().unwrap().push(("unsent", ids.to_vec()));
        }
    }

    fn request(id: u64) -> Message {
        Message::Request(Request {
            id,
            deadline: None,
            method: 1,
            metadata: Default::default(),
            compressed: false,
            body: Bytes::from_static(&[7; 100]),
        })
    }

    #[tokio::test]
    async fn requests_are_announced_before_the_write_and_the_ones_cut_off_given_back() {
        let codec = RpcCodec::new();
        let frame = wire_len(&request(1), &codec);
        // The socket takes the first frame whole and half of the second.
        for (room, unsent) in [
            (0, vec![1, 2, 3]),
            (frame + frame / 2, vec![2, 3]),
            (3 * frame - 1, vec![3]),
        ] {
            let (tx, rx) = mpsc::unbounded_channel();
            for id in 1..=3 {
                tx.send(request(id)).unwrap();
            }
            drop(tx);
            let log = Log::default();
            let result = write_loop(Cramped { room }, rx, RpcCodec::new(), log.clone()).await;
            assert!(result.is_err(), "room {room}");
            assert_eq!(
                *log.0.lock().unwrap(),
                [("sending", vec![1, 2, 3]), ("unsent", unsent)],
                "room {room}"
            );
        }
    }

    #[test]
    fn wire_len_is_what_the_codec_writes() {
        let mut meta = Metadata::builder();
        meta.insert("traceparent", "00-01").unwrap();
        let meta = meta.build();
        let hello = Hello {
            max_frame_bytes: 1 << 20,
            max_in_flight: 8,
            features: Features::ZSTD,
        };
        let messages = [
            Message::Hello(hello),
            Message::HelloAck(hello),
            Message::GoAway { last_id: 3 },
            Message::Request(Request {
                id: 1,
                deadline: None,
                method: 2,
                metadata: meta,
                compressed: true,
                body: Bytes::from(vec![1u8; 200_000]),
            }),
            Message::Response(Response {
                id: 1,
                status: Status::OK,
                flags: Flags::COMPRESSED,
                body: Bytes::from(vec![1u8; 200_000]),
            }),
        ];
        let mut codec = RpcCodec::new();
        for message in messages {
            let mut wire = BytesMut::new();
            let expected = wire_len(&message, &codec);
            codec.encode(message.clone(), &mut wire).unwrap();
            assert_eq!(wire.len(), expected, "{:?}", message.kind());
        }
    }
}
