//! One server connection: handshake, dispatch, limits, cancellation, backpressure, drain.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use longlink_codec::CodecError;
use longlink_codec::rpc::{
    self as wire, ErrorCode, ErrorFrame, Features, Flags, Hello, Message, RpcCodec, Status,
};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::AbortHandle;
use tower_service::Service;

use super::stats::Counters;
use super::{Shared, shutdown_begun};
use crate::stream::{self, ReadHalf, WriteHalf};
use crate::trace::{Side, TraceContext};
use crate::wire::{FrameReader, WriteObserver, wire_len, write_loop};
use crate::{Request, Response};
use tracing::Instrument;

/// Bytes queued for the socket; over the limit, the reader stops reading. Shared with the
/// writer, which must not hold the sender (or the channel would never close).
#[derive(Default)]
struct Budget {
    queued_bytes: AtomicUsize,
    written: Notify,
}

/// What the connection's tasks share.
struct ConnState {
    tx: mpsc::UnboundedSender<Message>,
    codec: RpcCodec,
    budget: Arc<Budget>,
    /// Handlers running, by request id, so CANCEL can abort them.
    inflight: Arc<Mutex<HashMap<u64, AbortHandle>>>,
    /// Signalled when `inflight` becomes empty (for draining).
    idle: Notify,
}

impl ConnState {
    fn send(&self, message: Message) {
        self.budget
            .queued_bytes
            .fetch_add(wire_len(&message, &self.codec), Ordering::Relaxed);
        // A closed channel means the writer is gone (socket failed): nothing to tell.
        let _ = self.tx.send(message);
    }

    fn respond(&self, id: u64, status: Status, flags: Flags, body: Bytes) {
        self.send(Message::Response(wire::Response {
            id,
            status,
            flags,
            body,
        }));
    }

    fn finish(&self, id: u64) {
        let mut inflight = self.inflight.lock();
        inflight.remove(&id);
        if inflight.is_empty() {
            // Long-lived maps keep their peak capacity: give it back after a burst.
            if inflight.capacity() > 1024 {
                inflight.shrink_to_fit();
            }
            self.idle.notify_waiters();
        }
    }
}

struct Written(Arc<Budget>);

impl WriteObserver for Written {
    fn written(&mut self, bytes: usize) {
        let _ = self
            .0
            .queued_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(bytes))
            });
        self.0.written.notify_waiters();
    }
}

/// Tears the connection down if its task is dropped (server killed, or aborted): aborts
/// the handlers and the writer, which closes the socket. The orderly path finishes them
/// first, and then this finds nothing left to do.
struct Teardown {
    /// Not the whole `ConnState`: holding its sender would keep the writer alive.
    inflight: Arc<Mutex<HashMap<u64, AbortHandle>>>,
    writer: AbortHandle,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        for (_, handle) in self.inflight.lock().drain() {
            handle.abort();
        }
        self.writer.abort();
    }
}

/// Counts the connection open until it is dropped, on every exit path (a failed TLS
/// handshake, a task aborted with the server).
struct Open<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's halves: plain, or once its TLS handshake is done; `None` when the
/// handshake failed (counted) or a shutdown began during it.
async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: &mut watch::Receiver<Option<Duration>>,
) -> Option<(ReadHalf, WriteHalf)> {
    #[cfg(feature = "tls")]
    if let Some(config) = &shared.config.tls {
        return super::tls::accept(stream, peer, config, shared, shutdown)
            .await
            .map(stream::tls);
    }
    let _ = (peer, shared, shutdown);
    Some(stream::tcp(stream))
}

fn error_frame(code: ErrorCode, message: impl Into<String>) -> Message {
    Message::Error(ErrorFrame {
        code,
        message: message.into(),
    })
}

/// The ERR code for a decode failure, sent before closing.
fn error_code(e: &CodecError) -> ErrorCode {
    match e {
        CodecError::UnsupportedVersion { .. } => ErrorCode::PROTOCOL_MISMATCH,
        CodecError::FrameTooLarge { .. }
        | CodecError::MessageTooLarge { .. }
        | CodecError::PartialBytesExceeded { .. } => ErrorCode::FRAME_TOO_LARGE,
        _ => ErrorCode::MALFORMED,
    }
}

pub(super) async fn serve<S>(stream: TcpStream, peer: SocketAddr, svc: S, shared: Arc<Shared>)
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stats = &shared.stats;
    Counters::bump(&stats.connections_total);
    let open_now = stats.connections_open.fetch_add(1, Ordering::Relaxed) + 1;
    let _open = Open(&stats.connections_open);
    let _ = stream.set_nodelay(true);
    // Subscribed before anything is awaited, so that a shutdown that begins during the
    // handshake is seen, however early.
    let mut shutdown = shared.shutdown.subscribe();
    let Some((read_half, write_half)) = open(stream, peer, &shared, &mut shutdown).await else {
        return;
    };
    let codec = || RpcCodec::new().max_frame_bytes(shared.config.max_frame_bytes);
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Budget::default());
    let state = Arc::new(ConnState {
        tx,
        codec: codec(),
        budget: Arc::clone(&budget),
        inflight: Arc::new(Mutex::new(HashMap::new())),
        idle: Notify::new(),
    });
    let writer = tokio::spawn(write_loop(write_half, rx, codec(), Written(budget)));
    let teardown = Teardown {
        inflight: Arc::clone(&state.inflight),
        writer: writer.abort_handle(),
    };
    let mut reader = FrameReader::new(read_half, codec());

    if open_now as usize > shared.config.max_connections {
        state.send(error_frame(ErrorCode::OVERLOADED, "too many connections"));
    } else {
        run(&mut reader, &state, svc, &shared, peer, &mut shutdown).await;
    }

    // Abort what still runs (a closed connection cannot carry its answer), then let the
    // writer flush what is queued and close the socket: it ends when the last sender (ours
    // and the aborted handlers') is gone.
    for (_, handle) in state.inflight.lock().drain() {
        handle.abort();
    }
    drop(reader);
    drop(state);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    drop(teardown);
}

async fn run<S>(
    reader: &mut FrameReader<ReadHalf>,
    state: &Arc<ConnState>,
    svc: S,
    shared: &Arc<Shared>,
    peer: SocketAddr,
    shutdown: &mut watch::Receiver<Option<Duration>>,
) where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let config = &shared.config;
    let stats = &shared.stats;

    // HELLO first; a connection still waiting for it when shutdown begins closes at once.
    let hello = tokio::select! {
        biased;
        () = shutdown_begun(shutdown) => return,
        hello = tokio::time::timeout(config.handshake_timeout, reader.next()) => hello,
    };
    // What both sides take: the server uses these towards this client (compressed
    // answers), and the client learns them from the HELLO_ACK.
    let negotiated = match hello {
        Ok(Ok(Some(Message::Hello(client)))) => {
            let features = client.features & config.compression.offer();
            state.send(Message::HelloAck(Hello {
                max_frame_bytes: config.max_frame_bytes as u32,
                max_in_flight: config.max_concurrent_per_conn as u32,
                features,
            }));
            features
        }
        Ok(Err(e @ CodecError::UnsupportedVersion { .. })) => {
            Counters::bump(&stats.protocol_errors);
            state.send(error_frame(
                ErrorCode::PROTOCOL_MISMATCH,
                format!("{e}; this server speaks {}", wire::VERSION),
            ));
            return;
        }
        Ok(Ok(None)) | Ok(Err(CodecError::Io(_))) => return,
        Ok(Ok(Some(other))) => {
            Counters::bump(&stats.protocol_errors);
            state.send(error_frame(
                ErrorCode::PROTOCOL_VIOLATION,
                format!("expected HELLO, got {}", other.kind()),
            ));
            return;
        }
        Ok(Err(e)) => {
            Counters::bump(&stats.protocol_errors);
            state.send(error_frame(error_code(&e), e.to_string()));
            return;
        }
        Err(_) => return,
    };

    let per_conn = Arc::new(Semaphore::new(config.max_concurrent_per_conn));
    let waiters = Arc::new(AtomicUsize::new(0));
    // A shutdown seen while waiting for HELLO returned above; one that began since is
    // unseen and makes `changed` below fire.
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut last_id = 0u64;

    loop {
        // Backpressure: a client that does not read its answers stops being read.
        loop {
            let written = state.budget.written.notified();
            if state.budget.queued_bytes.load(Ordering::Relaxed) <= config.max_outgoing_bytes {
                break;
            }
            written.await;
        }
        if drain_deadline.is_some() && state.inflight.lock().is_empty() {
            return;
        }
        let idle = state.idle.notified();
        let next = tokio::select! {
            biased;
            changed = shutdown.changed(), if drain_deadline.is_none() => {
                let drain = if changed.is_ok() { *shutdown.borrow() } else { Some(Duration::ZERO) };
                if let Some(drain) = drain {
                    state.send(Message::GoAway { last_id });
                    drain_deadline = Some(tokio::time::Instant::now() + drain);
                }
                continue;
            }
            () = async { tokio::time::sleep_until(drain_deadline.unwrap_or_else(tokio::time::Instant::now)).await },
                if drain_deadline.is_some() => return,
            () = idle, if drain_deadline.is_some() => continue,
            next = tokio::time::timeout(config.idle_timeout, reader.next()) => next,
        };
        let message = match next {
            Err(_) => {
                tracing::debug!(%peer, "closing idle connection");
                return;
            }
            Ok(Ok(Some(message))) => message,
            Ok(Ok(None)) => return,
            Ok(Err(CodecError::Io(_))) => return,
            Ok(Err(e)) => {
                Counters::bump(&stats.protocol_errors);
                tracing::debug!(%peer, error = %e, "closing connection after a bad frame");
                state.send(error_frame(error_code(&e), e.to_string()));
                return;
            }
        };
        match message {
            Message::Request(req) => {
                Counters::bump(&stats.requests);
                last_id = last_id.max(req.id);
                if drain_deadline.is_some() {
                    Counters::bump(&stats.draining_refused);
                    state.respond(
                        req.id,
                        Status::DRAINING,
                        Flags::NOT_PROCESSED | Flags::RETRYABLE,
                        Bytes::from_static(b"server is draining"),
                    );
                    continue;
                }
                dispatch(
                    req,
                    Instant::now(),
                    negotiated,
                    state,
                    &svc,
                    shared,
                    &per_conn,
                    &waiters,
                );
            }
            Message::Cancel { id } => {
                if let Some(handle) = state.inflight.lock().remove(&id) {
                    handle.abort();
                    Counters::bump(&stats.cancelled);
                }
                // Aborted handlers never call `finish`: wake a drain that waits for idle.
                if state.inflight.lock().is_empty() {
                    state.idle.notify_waiters();
                }
            }
            Message::Ping { id } => state.send(Message::Pong { id }),
            Message::Pong { .. } | Message::GoAway { .. } | Message::Credit { .. } => {}
            other => {
                Counters::bump(&stats.protocol_errors);
                state.send(error_frame(
                    ErrorCode::PROTOCOL_VIOLATION,
                    format!("unexpected {} from a client", other.kind()),
                ));
                return;
            }
        }
    }
}

/// Admits a request (or refuses it at once) and runs its handler in a task of its own.
#[allow(clippy::too_many_arguments)] // the connection's parts, borrowed from `run`
fn dispatch<S>(
    req: wire::Request,
    arrived: Instant,
    negotiated: Features,
    state: &Arc<ConnState>,
    svc: &S,
    shared: &Arc<Shared>,
    per_conn: &Arc<Semaphore>,
    waiters: &Arc<AtomicUsize>,
) where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let id = req.id;
    let admitted = Arc::clone(per_conn)
        .try_acquire_owned()
        .ok()
        .and_then(|conn| {
            Arc::clone(&shared.global)
                .try_acquire_owned()
                .ok()
                .map(|global| (conn, global))
        });
    let must_wait = admitted.is_none();
    if must_wait {
        let waiting = waiters.fetch_add(1, Ordering::Relaxed);
        if waiting >= shared.config.max_waiters {
            waiters.fetch_sub(1, Ordering::Relaxed);
            Counters::bump(&shared.stats.rejected);
            state.respond(
                id,
                Status::REJECTED,
                Flags::NOT_PROCESSED | Flags::RETRYABLE,
                Bytes::from_static(b"over the server's concurrency limit"),
            );
            return;
        }
    }
    let task_state = Arc::clone(state);
    let task_shared = Arc::clone(shared);
    let task_per_conn = Arc::clone(per_conn);
    let task_waiters = Arc::clone(waiters);
    let mut svc = svc.clone();
    // The lock is held across the spawn so the task cannot finish (and remove its entry)
    // before the entry exists.
    let mut inflight = state.inflight.lock();
    let handle = tokio::spawn(async move {
        let state = task_state;
        let latency = &task_shared.latency;
        let deadline = req.deadline.map(|d| arrived + d);
        let _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit) = match admitted {
            Some(permits) => permits,
            None => {
                let wait = async {
                    let conn = task_per_conn.acquire_owned().await.expect("never closed");
                    let global = Arc::clone(&task_shared.global)
                        .acquire_owned()
                        .await
                        .expect("never closed");
                    (conn, global)
                };
                let permits = match deadline {
                    Some(at) => tokio::time::timeout_at(at.into(), wait).await.ok(),
                    None => Some(wait.await),
                };
                task_waiters.fetch_sub(1, Ordering::Relaxed);
                match (permits, deadline) {
                    (Some(p), _) => p,
                    (None, at) => {
                        // Only a deadline ends the wait, and its timer fired at `at`.
                        let waited =
                            at.map_or(Duration::ZERO, |at| at.saturating_duration_since(arrived));
                        latency.get(req.method).queue.record(waited);
                        Counters::bump(&task_shared.stats.deadline_dropped);
                        state.respond(
                            id,
                            Status::DEADLINE_EXCEEDED,
                            Flags::NOT_PROCESSED,
                            Bytes::from_static(b"deadline passed while queued"),
                        );
                        state.finish(id);
                        return;
                    }
                }
            }
        };
        // One clock read for the queue, the handler's start and the deadline check.
        let started = Instant::now();
        if deadline.is_some_and(|at| started >= at) {
            latency.get(req.method).queue.record(started - arrived);
            Counters::bump(&task_shared.stats.deadline_dropped);
            state.respond(
                id,
                Status::DEADLINE_EXCEEDED,
                Flags::NOT_PROCESSED,
                Bytes::from_static(b"deadline passed before dispatch"),
            );
            state.finish(id);
            return;
        }
        // Decompressed once admitted — the concurrency limits bound how many bodies are
        // being inflated at once — and here in the handler's task, not the reader's.
        let body = if req.compressed {
            let max = state.codec.get_max_message_bytes();
            match task_shared
                .config
                .compression
                .decompress(negotiated, &req.body, max)
            {
                Ok(body) => body,
                Err(refusal) => {
                    // The handler does not run: the same bytes would fail again, so
                    // not retryable, but nothing was done.
                    state.respond(
                        id,
                        Status::BAD_REQUEST,
                        Flags::NOT_PROCESSED,
                        Bytes::from(refusal.to_string()),
                    );
                    state.finish(id);
                    return;
                }
            }
        } else {
            req.body
        };
        let method = req.method;
        let trace = TraceContext::from_metadata(&req.metadata);
        let request = Request {
            method,
            body,
            deadline,
            metadata: req.metadata,
        };
        let call = traced(trace, method, async {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
            svc.call(request).await
        });
        let outcome = match deadline {
            Some(at) => tokio::time::timeout_at(at.into(), call).await.ok(),
            None => Some(call.await),
        };
        // Recorded before the answer is queued, so a caller that has its answer sees it
        // counted. An unknown method goes to `other`: ids at random cannot fill the table.
        let finished = Instant::now();
        let timings = match &outcome {
            Some(Ok(resp)) if resp.status == Status::UNKNOWN_METHOD => latency.other(),
            _ => latency.get(method),
        };
        timings.queue.record(started - arrived);
        timings.run.record(finished - started);
        match outcome {
            Some(Ok(resp)) => {
                // The server alone says whether a body is compressed.
                let flags = resp.flags.without(Flags::COMPRESSED);
                let (body, compressed) = task_shared
                    .config
                    .compression
                    .compress(negotiated, resp.body);
                let flags = if compressed {
                    flags | Flags::COMPRESSED
                } else {
                    flags
                };
                state.respond(id, resp.status, flags, body)
            }
            Some(Err(e)) => {
                let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                state.respond(
                    id,
                    Status::INTERNAL,
                    Flags::NONE,
                    Bytes::from(e.to_string()),
                );
            }
            None => {
                Counters::bump(&task_shared.stats.deadline_abandoned);
                state.respond(
                    id,
                    Status::DEADLINE_EXCEEDED,
                    Flags::NONE,
                    Bytes::from_static(b"deadline passed in the handler"),
                )
            }
        }
        state.finish(id);
    });
    inflight.insert(id, handle.abort_handle());
}

/// Runs a handler inside the trace its request carried (`trace` is the caller's span), if any: in an `rpc.server` span,
/// with the span's context current so the calls it makes continue the trace.
async fn traced<F: std::future::Future>(
    trace: Option<TraceContext>,
    method: u32,
    handler: F,
) -> F::Output {
    match trace {
        Some(parent) => {
            let (span, cx) = TraceContext::open(Side::Server, method, &parent);
            let logged = async move {
                tracing::debug!("traced call");
                handler.await
            };
            cx.scope(logged).instrument(span).await
        }
        None => handler.await,
    }
}
