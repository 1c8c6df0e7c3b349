//! One multiplexed connection: many calls in flight, answered out of order by id.
//!
//! A writer task drains a queue into the socket, coalescing whatever is queued into one
//! write; a reader task hands each answer to its caller by id. Callers never hold a lock
//! across an await: they register under a short lock, queue the frame, and wait on their
//! own oneshot. A call dropped early leaves the map and sends CANCEL.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use longlink_codec::CodecError;
use longlink_codec::rpc::{self as wire, ErrorCode, Message};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Config;
use super::handshake::{Greeted, codec};
use crate::RpcError;
use crate::wire::{WriteObserver, write_loop};

const OPEN: u8 = 0;
const DRAINING: u8 = 1;
const CLOSED: u8 = 2;

/// Ids are our own sequence numbers: a multiply is all the hashing they need.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 ids are hashed")
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Answer = Result<wire::Response, RpcError>;

struct PendingCall {
    tx: oneshot::Sender<Answer>,
    /// The request may be in the socket (so a lost connection may have run it): set
    /// before the writer writes its frame, never after.
    written: bool,
}

type PendingMap = HashMap<u64, PendingCall, BuildHasherDefault<IdHasher>>;

pub(crate) struct MuxConn {
    tx: mpsc::UnboundedSender<Message>,
    pending: Mutex<PendingMap>,
    next_id: AtomicU64,
    state: AtomicU8,
    /// Calls in flight on this connection (for choosing the least loaded).
    in_flight: AtomicUsize,
    /// The server's per-connection limit from HELLO_ACK (0: none announced).
    pub(crate) server_limit: usize,
    /// The features the server answered in HELLO_ACK (compression towards it).
    pub(crate) peer: wire::Features,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for MuxConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxConn")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Keeps each pending call's `written` in step with the writer: set before its frame can
/// reach the socket, cleared again if the write failed before the socket took the frame.
struct MarkWritten(Arc<MuxConn>);

impl MarkWritten {
    fn mark(&self, ids: &[u64], written: bool) {
        if ids.is_empty() {
            return;
        }
        let mut pending = self.0.pending.lock();
        for id in ids {
            if let Some(call) = pending.get_mut(id) {
                call.written = written;
            }
        }
    }
}

impl WriteObserver for MarkWritten {
    fn sending(&mut self, ids: &[u64]) {
        self.mark(ids, true);
    }

    fn unsent(&mut self, ids: &[u64]) {
        self.mark(ids, false);
    }
}

impl MuxConn {
    /// Starts the reader and writer tasks on a greeted connection.
    pub(crate) fn start(greeted: Greeted, config: &Config) -> Arc<MuxConn> {
        let Greeted {
            reader,
            writer,
            server,
        } = greeted;
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(MuxConn {
            tx,
            pending: Mutex::new(PendingMap::default()),
            next_id: AtomicU64::new(1),
            state: AtomicU8::new(OPEN),
            in_flight: AtomicUsize::new(0),
            server_limit: server.max_in_flight as usize,
            peer: server.features,
            tasks: Mutex::new(Vec::new()),
        });
        let writer_task = {
            let conn = Arc::clone(&conn);
            let codec = codec(config);
            tokio::spawn(async move {
                let observer = MarkWritten(Arc::clone(&conn));
                if let Err(e) = write_loop(writer, rx, codec, observer).await {
                    conn.fail(&format!("write failed: {e}"), None);
                }
            })
        };
        let reader_task = {
            let conn = Arc::clone(&conn);
            let (interval, timeout) = (config.ping_interval, config.ping_timeout);
            tokio::spawn(async move { conn.read_loop(reader, interval, timeout).await })
        };
        conn.tasks.lock().extend([writer_task, reader_task]);
        conn
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Registers a call and queues its REQ; the receiver gets the answer.
    pub(crate) fn send(
        self: &Arc<Self>,
        method: u32,
        metadata: wire::Metadata,
        body: Bytes,
        compressed: bool,
        deadline: Option<Duration>,
    ) -> Result<CallGuard, RpcError> {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = self.pending.lock();
            // Checked under the lock: `fail` drains the map under it, so a call registered
            // here is either failed by it or sees the connection still open.
            if self.state.load(Ordering::Acquire) != OPEN {
                return Err(RpcError::ConnectionLost { written: false });
            }
            pending.insert(id, PendingCall { tx, written: false });
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Message::Request(wire::Request {
            id,
            deadline,
            method,
            metadata,
            compressed,
            body,
        }));
        Ok(CallGuard {
            conn: Arc::clone(self),
            id,
            rx: Some(rx),
        })
    }

    /// Fails every pending call and closes: the connection is unusable.
    fn fail(&self, reason: &str, error: Option<RpcError>) {
        let drained: Vec<PendingCall> = {
            let mut pending = self.pending.lock();
            self.state.store(CLOSED, Ordering::Release);
            pending.drain().map(|(_, call)| call).collect()
        };
        tracing::debug!(reason, calls = drained.len(), "rpc connection closed");
        for call in drained {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            let err = error.clone().unwrap_or(RpcError::ConnectionLost {
                written: call.written,
            });
            let _ = call.tx.send(Err(err));
        }
    }

    /// Closes the connection from our side (the client is going away).
    pub(crate) fn close(&self) {
        self.fail("closed by the client", None);
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }

    async fn read_loop(
        self: Arc<Self>,
        mut reader: crate::wire::FrameReader<crate::stream::ReadHalf>,
        ping_interval: Duration,
        ping_timeout: Duration,
    ) {
        let mut ping_sent: Option<Instant> = None;
        let mut ping_id = 0u64;
        loop {
            let next = match tokio::time::timeout(ping_interval, reader.next()).await {
                Ok(next) => next,
                Err(_) => {
                    // Silent for a whole interval: probe, and give up on a peer that does
                    // not answer the probe in time.
                    match ping_sent {
                        Some(at) if at.elapsed() >= ping_timeout => {
                            self.fail("peer did not answer PING", None);
                            return;
                        }
                        Some(_) => {}
                        None => {
                            ping_id += 1;
                            ping_sent = Some(Instant::now());
                            let _ = self.tx.send(Message::Ping { id: ping_id });
                        }
                    }
                    continue;
                }
            };
            ping_sent = None;
            match next {
                Ok(Some(Message::Response(resp))) => {
                    let call = self.pending.lock().remove(&resp.id);
                    if let Some(call) = call {
                        self.in_flight.fetch_sub(1, Ordering::Relaxed);
                        let _ = call.tx.send(Ok(resp));
                    }
                    // No entry: the caller gave up (and sent CANCEL); the answer is dropped.
                }
                Ok(Some(Message::Pong { .. })) => {}
                Ok(Some(Message::Ping { id })) => {
                    let _ = self.tx.send(Message::Pong { id });
                }
                Ok(Some(Message::GoAway { last_id })) => self.go_away(last_id),
                Ok(Some(Message::Error(e))) => {
                    let error = if e.code == ErrorCode::PROTOCOL_MISMATCH {
                        RpcError::ProtocolMismatch {
                            detail: e.message.clone(),
                        }
                    } else if e.code == ErrorCode::FRAME_TOO_LARGE {
                        RpcError::ProtocolMismatch {
                            detail: format!("server refused a frame: {}", e.message),
                        }
                    } else {
                        RpcError::ProtocolMismatch {
                            detail: e.message.clone(),
                        }
                    };
                    self.fail(&e.message, Some(error));
                    return;
                }
                Ok(Some(other)) => {
                    self.fail(
                        &format!("unexpected {} from the server", other.kind()),
                        None,
                    );
                    return;
                }
                Ok(None) => {
                    self.fail("server closed the connection", None);
                    return;
                }
                Err(CodecError::Io(e)) => {
                    self.fail(&format!("read failed: {e}"), None);
                    return;
                }
                Err(e) => {
                    self.fail(&format!("bad frame from the server: {e}"), None);
                    return;
                }
            }
        }
    }

    /// The server will run nothing above `last_id`: fail those calls as not run, and take
    /// no new ones here.
    fn go_away(&self, last_id: u64) {
        let refused: Vec<PendingCall> = {
            let mut pending = self.pending.lock();
            let _ =
                self.state
                    .compare_exchange(OPEN, DRAINING, Ordering::AcqRel, Ordering::Acquire);
            let ids: Vec<u64> = pending.keys().copied().filter(|id| *id > last_id).collect();
            ids.into_iter()
                .filter_map(|id| pending.remove(&id))
                .collect()
        };
        for call in refused {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = call.tx.send(Err(RpcError::Draining));
        }
    }

    /// A caller gave up on `id`: forget it and tell the server.
    fn abandon(&self, id: u64) {
        if self.pending.lock().remove(&id).is_some() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = self.tx.send(Message::Cancel { id });
        }
    }

    /// Entries in the pending map (for tests of leaks).
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.lock().len()
    }
}

/// A call in flight on a connection. Dropped before its answer arrives, it removes its
/// entry and sends CANCEL.
pub(crate) struct CallGuard {
    conn: Arc<MuxConn>,
    id: u64,
    rx: Option<oneshot::Receiver<Answer>>,
}

impl CallGuard {
    /// Waits for the answer.
    pub(crate) async fn answer(mut self) -> Answer {
        let rx = self.rx.as_mut().expect("awaited once");
        let answer = rx
            .await
            .unwrap_or(Err(RpcError::ConnectionLost { written: true }));
        self.rx = None;
        answer
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.rx.is_some() {
            self.conn.abandon(self.id);
        }
    }
}
