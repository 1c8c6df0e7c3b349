//! One client connection, from accept to close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use longlink_codec::push::{AuthReply, Kick, PushMessage, Reconnect, UpstreamReply};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::ip_limit::IpSlot;
use super::link::CLOSE_POLICY;
use super::link::{Form, Inbound, Link, LinkError};
use super::socket::{HandshakeError, Socket, TlsSocket};
use super::wheel::Deadline;
use super::{Closing, ConnHandle, Identity, Outbox, RoomInner, close_code, frame_error, refusal};
use crate::metrics::inc;
use crate::model::{ConnId, Session, now_ms};

/// Most queued messages written per flush.
const MAX_COALESCE: usize = 64;

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listening {
    /// WebSocket (`ws://`, or `wss://` with TLS).
    WebSocket,
    /// Push frames back to back (over TLS, or not).
    Tcp,
}

pub(super) async fn accept(
    room: Arc<RoomInner>,
    listener: TcpListener,
    kind: Listening,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on a full fd table. The
                // connections already open are served meanwhile.
                inc(&room.metrics.accept_errors);
                tracing::warn!(error = %e, "room accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = room.ip_limit.admit(peer.ip()) else {
            inc(&room.metrics.ip_limited);
            // Over TLS the answer would cost a handshake (what a flood wants): closed.
            if tls.is_none() {
                refuse_over_limit(&room, stream, kind);
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let room = Arc::clone(&room);
        let tls = tls.clone();
        tokio::spawn(async move {
            let link = if kind == Listening::Tcp && tls.is_none() {
                Link::tcp(Socket::Plain(stream), None, room.config.max_frame_bytes)
            } else {
                let Ok(handshake) = room.handshakes.acquire().await else {
                    return;
                };
                // Boxed: the handshake's state is freed once done, not kept in every
                // connection's task.
                let deadline = tokio::time::Instant::now() + room.config.auth_timeout;
                match Box::pin(open(&room, stream, peer, kind, tls, handshake, deadline)).await {
                    Some(link) => link,
                    None => return,
                }
            };
            run(room, link, peer, slot).await;
        });
    }
}

/// The TLS handshake (with `tls`) and, on a WebSocket port, its HTTP requests (the
/// WebSocket upgrade, or the SSE fallback's), the first by `deadline`; `None` (counted,
/// logged) when they failed or the connection was done without becoming a link.
async fn open(
    room: &Arc<RoomInner>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    kind: Listening,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake: tokio::sync::SemaphorePermit<'_>,
    deadline: tokio::time::Instant,
) -> Option<Link> {
    let (socket, early) = match tls {
        None => (Socket::Plain(stream), None),
        Some(config) => {
            let handshake = TlsSocket::accept(stream, config);
            match tokio::time::timeout_at(deadline, handshake).await {
                Ok(Ok((tls, early))) => {
                    inc(&room.metrics.tls_handshakes);
                    (Socket::Tls(tls), early)
                }
                Ok(Err(HandshakeError::NotTls { first, stream })) => {
                    inc(&room.metrics.tls_not_tls);
                    tracing::debug!(%peer, first, "plaintext client on a TLS port");
                    not_tls(Socket::Plain(stream), kind).await;
                    return None;
                }
                Ok(Err(e)) => {
                    inc(&room.metrics.tls_handshake_failures);
                    tracing::debug!(%peer, kind = e.kind(), error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    inc(&room.metrics.tls_handshake_failures);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    let max = room.config.max_frame_bytes;
    if kind == Listening::Tcp {
        return Some(Link::tcp(socket, early, max));
    }
    super::http_conn::serve(room, socket, early, handshake, deadline, peer).await
}

/// Tells a plaintext client on a TLS port, in plaintext, that the port speaks TLS: an HTTP
/// 400 on the `wss://` port, a push ERROR 400 on the TCP+TLS one.
async fn not_tls(mut socket: Socket, kind: Listening) {
    match kind {
        Listening::WebSocket => {
            let head =
                super::upgrade::refusal_head(400, "this port speaks TLS: connect with wss://");
            super::upgrade::refuse(&mut socket, &head).await;
        }
        Listening::Tcp => {
            let error = PushMessage::Error(longlink_codec::push::ErrorMessage {
                code: 400,
                reason: "this port speaks TLS: connect with TLS".into(),
            });
            let mut frame = bytes::BytesMut::new();
            if error.encode(0, &mut frame).is_ok() {
                super::upgrade::refuse_with(&mut socket, &frame).await;
            }
        }
    }
}

/// Tells a client over the per-IP limit why it is refused — a push ERROR 429 on raw TCP,
/// an HTTP 429 on WebSocket — then closes. At most [`MAX_REFUSING`] such answers are in
/// progress at once (each lasts at most about a second); beyond, the socket is closed
/// without a word rather than let refusals pile up.
fn refuse_over_limit(room: &Arc<RoomInner>, stream: tokio::net::TcpStream, kind: Listening) {
    let Ok(permit) = Arc::clone(&room.refusing).try_acquire_owned() else {
        return;
    };
    let reason = format!(
        "too many connections from this address (at most {})",
        room.config.max_conns_per_ip
    );
    tokio::spawn(async move {
        let _permit = permit;
        let mut socket = Socket::Plain(stream);
        if kind == Listening::WebSocket {
            let head = super::upgrade::refusal_head(429, &reason);
            super::upgrade::refuse(&mut socket, &head).await;
        } else {
            let error =
                PushMessage::Error(longlink_codec::push::ErrorMessage { code: 429, reason });
            let mut frame = bytes::BytesMut::new();
            if error.encode(0, &mut frame).is_ok() {
                super::upgrade::refuse_with(&mut socket, &frame).await;
            }
        }
    });
}

/// Refusals over the per-IP limit answered at once, at most.
pub(crate) const MAX_REFUSING: usize = 64;

/// Removes the connection from the registry (and the wheel) however the session ends.
struct Registered {
    room: Arc<RoomInner>,
    id: ConnId,
    uid: Option<String>,
    deadline: Arc<Deadline>,
    /// Already removed.
    gone: bool,
}

impl Registered {
    /// Leaves the registry now (the connection is done before its task ends).
    fn forget(&mut self) {
        self.remove();
        self.gone = true;
    }

    fn remove(&mut self) {
        if self.gone {
            return;
        }
        self.deadline.set(u64::MAX);
        self.room.conn_shard(self.id).lock().remove(&self.id);
        if let Some(uid) = &self.uid {
            let mut users = self.room.user_shard(uid).lock();
            if let Some(ids) = users.get_mut(uid) {
                ids.retain(|c| *c != self.id);
                if ids.is_empty() {
                    users.remove(uid);
                }
            }
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.remove();
    }
}

async fn run(room: Arc<RoomInner>, mut link: Link, peer: SocketAddr, _slot: IpSlot) {
    inc(&room.metrics.connections_accepted);
    let id = room
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let deadline = Arc::new(Deadline::default());
    deadline.set(room.wheel.now_ms() + room.config.auth_timeout.as_millis() as u64);
    let handle = Arc::new(ConnHandle {
        outbox: Mutex::new(Outbox::default()),
        ready: Notify::new(),
        closer: Notify::new(),
        closing: Mutex::new(None),
        identity: RwLock::new(None),
        token_deadline: std::sync::atomic::AtomicU64::new(u64::MAX),
        refreshes: std::sync::atomic::AtomicU64::new(0),
    });
    room.conn_shard(id).lock().insert(id, Arc::clone(&handle));
    room.wheel.insert(id, Arc::clone(&deadline));
    let mut registered = Registered {
        room: Arc::clone(&room),
        id,
        uid: None,
        deadline: Arc::clone(&deadline),
        gone: false,
    };

    // The handshake lives in its own allocation, freed once it is done: the task keeps
    // only what an open connection needs (a smaller future for every idle connection).
    let Some(Authenticated {
        mut session,
        form,
        interval,
    }) = Box::pin(authenticate(
        &room,
        &mut link,
        &handle,
        &mut registered,
        id,
        &deadline,
        peer,
    ))
    .await
    else {
        // An SSE client still waiting for its answer is told (closed before it opened).
        Box::pin(link.abandon()).await;
        return;
    };

    let outcome = serve(
        &room,
        &mut link,
        &handle,
        &mut session,
        form,
        interval,
        &deadline,
        id,
    )
    .await;
    {
        let mut outbox = handle.outbox.lock();
        outbox.closed = true;
        outbox.clear();
    }
    let close = outcome.as_ref().map(Closing::ws_code);
    match outcome {
        Some(Closing::Kick(reason)) => {
            let _ = link.feed_message(0, &PushMessage::Kick(Kick { reason }), form);
        }
        Some(Closing::Reconnect { reason, after_ms }) => {
            let _ = link.feed_message(
                0,
                &PushMessage::Reconnect(Reconnect { reason, after_ms }),
                form,
            );
        }
        Some(Closing::Expired) => {
            let error = PushMessage::Error(longlink_codec::push::ErrorMessage {
                code: 401,
                reason: format!(
                    "the token expired and no refresh came within {} s",
                    room.config.token_expiry.grace.as_secs()
                ),
            });
            let _ = link.feed_message(0, &error, form);
        }
        Some(Closing::Timeout | Closing::Slow | Closing::Broken(_)) | None => {}
    }
    match close {
        Some(code) => link.close_with(code).await,
        None => link.close().await,
    }
    drop(registered);
    room.metrics.connections.dec();
    room.events.disconnected(session).await;
}

/// Refuses the AUTH and closes; `status` is the HTTP status an SSE client is answered
/// with (401 a bad token, 403 apps it may not have, 503 keys that could not be fetched,
/// 400 not an AUTH).
async fn refuse(link: &mut Link, seq: u32, reason: &str, status: u16) {
    let reply = PushMessage::AuthReply(AuthReply {
        ok: false,
        reason: Some(reason.to_owned()),
        heartbeat_secs: 0,
        session: None,
    });
    link.refuse(seq, &reply, status).await;
}

/// What the handshake hands the open connection.
struct Authenticated {
    session: Session,
    form: Form,
    interval: u64,
}

/// AUTH within the deadline, the token checked, the connection made findable and reported,
/// AUTH OK sent. `None`: the connection is done (refused, gone, or AUTH OK not written —
/// then it was reported disconnected already).
async fn authenticate(
    room: &Arc<RoomInner>,
    link: &mut Link,
    handle: &ConnHandle,
    registered: &mut Registered,
    id: ConnId,
    deadline: &Arc<Deadline>,
    peer: SocketAddr,
) -> Option<Authenticated> {
    // AUTH first, within the deadline (the wheel closes a connection that never sends it).
    let first = loop {
        let first = tokio::select! {
            first = link.recv() => first,
            () = handle.closer.notified() => return None,
        };
        match first {
            // A WebSocket ping before AUTH: answer it and wait on.
            Ok(Some(Inbound::Control)) => {
                if link.flush().await.is_err() {
                    return None;
                }
            }
            other => break other,
        }
    };
    let (seq, auth, form) = match first {
        Ok(Some(Inbound::Message(seq, PushMessage::Auth(auth), form))) => (seq, auth, form),
        Ok(Some(Inbound::Message(..))) => {
            inc(&room.metrics.auth_failures);
            refuse(link, 0, "the first message must be auth", 400).await;
            return None;
        }
        Ok(None) | Ok(Some(Inbound::Control)) | Err(LinkError::Io(_)) => return None,
        Err(LinkError::Protocol(e)) => {
            inc(&room.metrics.protocol_errors);
            // In the form the unreadable message came in (JSON for a text frame).
            let form = link.last_form();
            let _ = link.feed_message(0, &frame_error(&e), form);
            link.close_with(close_code(&e)).await;
            return None;
        }
    };
    let token = match room
        .verifier
        .verify(&auth.token, &auth.uid, &auth.device)
        .await
    {
        Ok(token) => token,
        Err(e) => {
            inc(&room.metrics.auth_failures);
            tracing::debug!(%peer, uid = auth.uid, error = %e, "auth refused");
            let status = match e {
                crate::token::TokenError::KeysUnavailable { .. } => 503,
                _ => 401,
            };
            refuse(link, seq, &e.to_string(), status).await;
            return None;
        }
    };
    let mut apps = auth.apps.clone();
    apps.sort();
    apps.dedup();
    if let Some(app) = apps.iter().find(|a| !token.allows_app(a)) {
        inc(&room.metrics.auth_failures);
        let reason = format!("the token does not allow app {app:?}");
        refuse(link, seq, &reason, 403).await;
        return None;
    }
    if apps.len() > room.config.max_apps_per_conn {
        // Refused, not truncated: a client must not believe it receives an app it does not.
        inc(&room.metrics.auth_failures);
        let reason = format!(
            "{} apps: a connection subscribes at most {}",
            apps.len(),
            room.config.max_apps_per_conn
        );
        refuse(link, seq, &reason, 403).await;
        return None;
    }
    let interval = room.config.heartbeats.for_net(auth.net);
    *handle.identity.write() = Some(Identity {
        uid: auth.uid.clone(),
        device: auth.device.clone(),
        apps: apps.clone(),
        allowed: token.apps.clone().map(Vec::into_boxed_slice),
    });
    let token_deadline = room.token_deadline(&token);
    handle
        .token_deadline
        .store(token_deadline, std::sync::atomic::Ordering::Relaxed);
    room.user_shard(&auth.uid)
        .lock()
        .entry(auth.uid.clone())
        .or_default()
        .push(id);
    registered.uid = Some(auth.uid.clone());
    // Reported only once the connection is findable (the hub's redelivery relies on it).
    let session = Session {
        uid: auth.uid.clone(),
        device: auth.device.clone(),
        room: room.config.name.clone(),
        conn: id,
        net: auth.net,
        apps,
        since_ms: now_ms(),
    };
    // The heartbeat window may be shorter than what is left of the AUTH deadline (and
    // the token may run out sooner still).
    let alive = (room.wheel.now_ms() + 2 * interval * 1000).min(token_deadline);
    room.wheel.reschedule(id, deadline, alive);
    let reply = PushMessage::AuthReply(AuthReply {
        ok: true,
        reason: None,
        heartbeat_secs: interval as u32,
        session: Some(link.bind(room, id)),
    });
    // Registered before the client hears AUTH OK: once it has, a push finds it (in the
    // cluster the register must know it first).
    room.metrics.connections.inc();
    let conn = super::Connection {
        room: Arc::clone(room),
        id,
    };
    room.events.connected(session.clone(), conn).await;
    if link.feed_message(seq, &reply, form).is_err() || link.flush().await.is_err() {
        registered.forget();
        room.metrics.connections.dec();
        room.events.disconnected(session).await;
        return None;
    }
    Some(Authenticated {
        session,
        form,
        interval,
    })
}

/// The authenticated connection's loop; returns why the room closed it (`None`: the
/// client left or broke the protocol). `session` follows the connection's subscriptions.
#[allow(clippy::too_many_arguments)]
async fn serve(
    room: &Arc<RoomInner>,
    link: &mut Link,
    handle: &ConnHandle,
    session: &mut Session,
    form: Form,
    interval: u64,
    deadline: &Arc<Deadline>,
    id: ConnId,
) -> Option<Closing> {
    loop {
        tokio::select! {
            incoming = link.recv() => {
                let (seq, message) = match incoming {
                    Ok(Some(Inbound::Message(seq, message, _))) => (seq, message),
                    Ok(Some(Inbound::Control)) => {
                        // A WebSocket ping answered: the pong goes out now.
                        if link.flush().await.is_err() {
                            return None;
                        }
                        continue;
                    }
                    Ok(None) | Err(LinkError::Io(_)) => return None,
                    Err(LinkError::Protocol(e)) => {
                        // A bad or oversized frame closes this connection only.
                        inc(&room.metrics.protocol_errors);
                        let _ = link.feed_message(0, &frame_error(&e), form);
                        return Some(Closing::Broken(close_code(&e)));
                    }
                };
                // Heard from: alive for two more heartbeat intervals (or until the token
                // runs out).
                let token_deadline = handle.token_deadline.load(std::sync::atomic::Ordering::Relaxed);
                deadline.set((room.wheel.now_ms() + 2 * interval * 1000).min(token_deadline));
                match message {
                    PushMessage::Heartbeat => {
                        if link.feed_message(seq, &PushMessage::HeartbeatReply, form).is_err() {
                            return None;
                        }
                    }
                    PushMessage::Ack(ack) => {
                        crate::metrics::add(&room.metrics.acks, ack.ids.len() as u64);
                        room.events.acked(session, ack.ids);
                    }
                    PushMessage::Upstream(upstream) => {
                        let subscribed = handle.identity.read().as_ref().is_some_and(|i| i.apps.contains(&upstream.app));
                        let reply = if subscribed {
                            inc(&room.metrics.upstream);
                            room.events.upstream(session, upstream).await
                        } else {
                            UpstreamReply { ok: false, reason: Some(format!("not subscribed to app {:?}", upstream.app)) }
                        };
                        if link.feed_message(seq, &PushMessage::UpstreamReply(reply), form).is_err() {
                            return None;
                        }
                    }
                    PushMessage::Subscribe(sub) => {
                        // Boxed: its state stays out of every idle connection's task.
                        let changed = Box::pin(subscribe(room, link, handle, session, seq, form, id, sub.apps)).await;
                        if changed.is_err() {
                            return None;
                        }
                    }
                    PushMessage::Unsubscribe(sub) => {
                        Box::pin(unsubscribe(room, handle, session, id, sub.apps)).await;
                    }
                    PushMessage::Refresh(refresh) => {
                        let (mut answer, close) = Box::pin(refresh_token(room, handle, session, interval, deadline, id, refresh.token)).await;
                        if let (PushMessage::AuthReply(reply), Some(key)) = (&mut answer, link.sse_key()) {
                            // An SSE session keeps the key its POSTs use.
                            if reply.ok {
                                reply.session = Some(key.to_owned());
                            }
                        }
                        if link.feed_message(seq, &answer, form).is_err() {
                            return None;
                        }
                        if close {
                            return Some(Closing::Broken(CLOSE_POLICY));
                        }
                    }
                    other => {
                        inc(&room.metrics.protocol_errors);
                        let reason = format!("a client may not send {}", other.op());
                        let _ = link.feed_message(seq, &refusal(reason), form);
                        return Some(Closing::Broken(CLOSE_POLICY));
                    }
                }
                if link.flush().await.is_err() {
                    return None;
                }
            }
            () = handle.ready.notified() => {
                // Coalesce: what is queued goes out in one write (up to MAX_COALESCE).
                let mut sent = 0u64;
                while (sent as usize) < MAX_COALESCE {
                    let next = handle.outbox.lock().pop();
                    let Some(payload) = next else { break };
                    link.feed(&payload, form);
                    sent += 1;
                }
                if link.flush().await.is_err() {
                    return None;
                }
                crate::metrics::add(&room.metrics.messages_out, sent);
                let mut outbox = handle.outbox.lock();
                if !outbox.is_empty() {
                    // More than one write's worth: come back for the rest.
                    handle.ready.notify_one();
                } else {
                    // Drained: an idle connection keeps no queue.
                    outbox.shrink_if_drained();
                }
            }
            () = handle.closer.notified() => {
                return handle.closing.lock().take();
            }
        }
    }
}

/// SUBSCRIBE: adds `apps` (all or nothing: past the limit, or naming an invalid app, an
/// ERROR says why and nothing changes), then tells the courier. `Err`: the link failed.
#[allow(clippy::too_many_arguments)]
async fn subscribe(
    room: &Arc<RoomInner>,
    link: &mut Link,
    handle: &ConnHandle,
    session: &mut Session,
    seq: u32,
    form: Form,
    id: ConnId,
    apps: Vec<String>,
) -> Result<(), ()> {
    let mut added: Vec<String> = apps
        .into_iter()
        .filter(|a| !session.apps.contains(a))
        .collect();
    added.sort();
    added.dedup();
    let not_allowed = {
        let identity = handle.identity.read();
        added
            .iter()
            .find(|a| identity.as_ref().is_some_and(|i| !i.allows(a)))
            .cloned()
    };
    let refusal_reason = if let Some(app) = not_allowed {
        Some(format!("the token does not allow app {app:?}"))
    } else if session.apps.len() + added.len() > room.config.max_apps_per_conn {
        Some(format!(
            "subscribing {} more apps would make {}: a connection subscribes at most {}",
            added.len(),
            session.apps.len() + added.len(),
            room.config.max_apps_per_conn
        ))
    } else {
        added
            .iter()
            .find_map(|a| crate::model::check_name("app", a).err())
            .map(|e| e.to_string())
    };
    if let Some(reason) = refusal_reason {
        return link.feed_message(seq, &refusal(reason), form).map_err(drop);
    }
    if added.is_empty() {
        return Ok(());
    }
    session.apps.extend(added.iter().cloned());
    session.apps.sort();
    if let Some(i) = handle.identity.write().as_mut() {
        i.apps = session.apps.clone();
    }
    let conn = super::Connection {
        room: Arc::clone(room),
        id,
    };
    room.events.resubscribed(session, &added, &[], conn).await;
    Ok(())
}

/// REFRESH: a new token for the connection's user (and device). Taken, it replaces the
/// token the connection holds (its expiry, the apps it allows); refused, the connection
/// keeps the one it has. The answer is an AUTH_REPLY, or an ERROR past the rate; `true`:
/// close the connection after it ([`RefreshGate`]).
async fn refresh_token(
    room: &Arc<RoomInner>,
    handle: &ConnHandle,
    session: &Session,
    interval: u64,
    deadline: &Arc<Deadline>,
    id: ConnId,
    token: String,
) -> (PushMessage, bool) {
    let mut gate = RefreshGate::load(&handle.refreshes);
    let admitted = gate.admit(room.wheel.now_ms());
    gate.store(&handle.refreshes);
    if !admitted {
        // Each REFRESH costs a signature check: a client needs one per token lifetime.
        inc(&room.metrics.token_refresh_failures);
        let reason = format!("more than {MAX_REFRESHES} REFRESHes in 10 s");
        return (refusal(reason), true);
    }
    let reply = check_refresh(room, handle, session, interval, deadline, id, token).await;
    let mut gate = RefreshGate::load(&handle.refreshes);
    let close = gate.answered(reply.ok);
    gate.store(&handle.refreshes);
    (PushMessage::AuthReply(reply), close)
}

/// The new token checked and, if good, taken.
async fn check_refresh(
    room: &Arc<RoomInner>,
    handle: &ConnHandle,
    session: &Session,
    interval: u64,
    deadline: &Arc<Deadline>,
    id: ConnId,
    token: String,
) -> AuthReply {
    let refused = |reason: String| {
        inc(&room.metrics.token_refresh_failures);
        AuthReply {
            ok: false,
            reason: Some(reason),
            heartbeat_secs: interval as u32,
            session: None,
        }
    };
    let verified = match room
        .verifier
        .verify(&token, &session.uid, &session.device)
        .await
    {
        Ok(verified) => verified,
        Err(e) => return refused(e.to_string()),
    };
    if let Some(app) = session.apps.iter().find(|a| !verified.allows_app(a)) {
        return refused(format!(
            "the new token does not allow app {app:?}, which this connection subscribes"
        ));
    }
    if let Some(i) = handle.identity.write().as_mut() {
        i.allowed = verified.apps.clone().map(Vec::into_boxed_slice);
    }
    let token_deadline = room.token_deadline(&verified);
    handle
        .token_deadline
        .store(token_deadline, std::sync::atomic::Ordering::Relaxed);
    // The new token may run out sooner than the old one: refiled if earlier.
    let alive = (room.wheel.now_ms() + 2 * interval * 1000).min(token_deadline);
    room.wheel.reschedule(id, deadline, alive);
    inc(&room.metrics.token_refreshes);
    AuthReply {
        ok: true,
        reason: None,
        heartbeat_secs: interval as u32,
        session: Some(format!("{}:{}", room.config.name, session.conn)),
    }
}

/// The REFRESHes one connection may send: [`MAX_REFRESHES`] per [`REFRESH_WINDOW_MS`],
/// and the connection is closed after [`MAX_REFRESH_FAILURES`] refused in a row (each
/// costs a signature check; a client needs one per token lifetime).
#[derive(Default)]
struct RefreshGate {
    /// When the current window began (wheel ms).
    window_ms: u64,
    /// REFRESHes in it.
    in_window: u8,
    /// Refused in a row.
    failures: u8,
}

/// REFRESHes a connection may send per [`REFRESH_WINDOW_MS`].
const MAX_REFRESHES: u8 = 4;
/// The window of [`MAX_REFRESHES`].
const REFRESH_WINDOW_MS: u64 = 10_000;
/// REFRESHes refused in a row before the connection is closed.
const MAX_REFRESH_FAILURES: u8 = 3;

impl RefreshGate {
    /// Unpacked from the connection's word: window start in the low 48 bits (wheel ms:
    /// 8,900 years), then the two counts.
    fn load(word: &std::sync::atomic::AtomicU64) -> RefreshGate {
        let bits = word.load(std::sync::atomic::Ordering::Relaxed);
        RefreshGate {
            window_ms: bits & ((1 << 48) - 1),
            in_window: (bits >> 48) as u8,
            failures: (bits >> 56) as u8,
        }
    }

    fn store(&self, word: &std::sync::atomic::AtomicU64) {
        let bits = (self.window_ms & ((1 << 48) - 1))
            | u64::from(self.in_window) << 48
            | u64::from(self.failures) << 56;
        word.store(bits, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a REFRESH arriving at `now_ms` may be checked.
    fn admit(&mut self, now_ms: u64) -> bool {
        if self.in_window == 0 || now_ms.saturating_sub(self.window_ms) >= REFRESH_WINDOW_MS {
            self.window_ms = now_ms;
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        self.in_window <= MAX_REFRESHES
    }

    /// Records the answer; `true`: too many refused, close.
    fn answered(&mut self, ok: bool) -> bool {
        self.failures = if ok {
            0
        } else {
            self.failures.saturating_add(1)
        };
        self.failures >= MAX_REFRESH_FAILURES
    }
}

/// UNSUBSCRIBE: removes `apps`, then tells the courier.
async fn unsubscribe(
    room: &Arc<RoomInner>,
    handle: &ConnHandle,
    session: &mut Session,
    id: ConnId,
    apps: Vec<String>,
) {
    let removed: Vec<String> = session
        .apps
        .iter()
        .filter(|a| apps.contains(a))
        .cloned()
        .collect();
    if removed.is_empty() {
        return;
    }
    session.apps.retain(|a| !removed.contains(a));
    if let Some(i) = handle.identity.write().as_mut() {
        i.apps = session.apps.clone();
    }
    let conn = super::Connection {
        room: Arc::clone(room),
        id,
    };
    room.events.resubscribed(session, &[], &removed, conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_are_bounded_per_window_and_refusals_in_a_row_close() {
        let mut gate = RefreshGate::default();
        for _ in 0..MAX_REFRESHES {
            assert!(gate.admit(5_000));
        }
        assert!(!gate.admit(5_999), "a fifth in the window");
        assert!(gate.admit(5_000 + REFRESH_WINDOW_MS), "a new window");
        assert!(!gate.answered(false) && !gate.answered(false));
        assert!(!gate.answered(true), "an accepted one resets the count");
        assert!(!gate.answered(false) && !gate.answered(false));
        assert!(gate.answered(false), "three refused in a row");
        let word = std::sync::atomic::AtomicU64::new(0);
        gate.store(&word);
        let back = RefreshGate::load(&word);
        assert_eq!(
            (back.window_ms, back.in_window, back.failures),
            (gate.window_ms, gate.in_window, gate.failures)
        );
    }
    use crate::metrics::Metrics;
    use crate::room::{Room, RoomConfig, RoomEvents};
    use crate::token::Tokens;
    use longlink_codec::push::{Upstream, UpstreamReply};

    struct Nothing;

    #[async_trait::async_trait]
    impl RoomEvents for Nothing {
        async fn connected(&self, _: Session, _: crate::room::Connection) {}
        async fn resubscribed(
            &self,
            _: &Session,
            _: &[String],
            _: &[String],
            _: crate::room::Connection,
        ) {
        }
        async fn disconnected(&self, _: Session) {}
        fn acked(&self, _: &Session, _: Vec<u64>) {}
        async fn upstream(&self, _: &Session, _: Upstream) -> UpstreamReply {
            UpstreamReply {
                ok: true,
                reason: None,
            }
        }
    }

    /// An SSE link for `uid` on one end of a loopback pair (the client's end returned).
    async fn sse_session(
        room: &Room,
        token: &str,
    ) -> (
        Link,
        tokio::net::TcpStream,
        SocketAddr,
        super::super::ip_limit::IpSlot,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let auth = PushMessage::Auth(longlink_codec::push::Auth {
            uid: "u".into(),
            device: "d".into(),
            net: longlink_codec::push::Net::Wifi,
            token: token.into(),
            apps: vec!["demo".into()],
        });
        let slot = room.inner.sse.reserve().unwrap();
        let sse = super::super::sse::SseLink::new((1, auth), slot);
        let ip = room.inner.ip_limit.admit(peer.ip()).unwrap();
        (
            Link::sse(Socket::Plain(server), sse, 1 << 16),
            client,
            peer,
            ip,
        )
    }

    #[tokio::test]
    async fn an_sse_session_dropped_at_any_await_leaves_no_key_and_no_place() {
        let tokens = Tokens::new(b"k");
        let token = tokens.issue("u", Duration::from_secs(60));
        let room = Room::new(
            RoomConfig::default(),
            crate::token::Verifier::hmac_only(tokens),
            Arc::new(Nothing),
            Arc::new(Metrics::default()),
        );
        // Dropped after 0, 1, 2… polls: before the AUTH is checked, while it is, once the
        // key is bound and the stream open.
        for polls in 0..6 {
            let (link, client, peer, ip) = sse_session(&room, &token).await;
            let mut task = Box::pin(run(Arc::clone(&room.inner), link, peer, ip));
            for _ in 0..polls {
                let polled = tokio::time::timeout(Duration::ZERO, &mut task).await;
                assert!(polled.is_err(), "the session is still open");
                tokio::task::yield_now().await;
            }
            drop(task);
            assert_eq!(
                (
                    room.inner.sse.keys(),
                    room.inner.sse.open(),
                    room.connections()
                ),
                (0, 0, 0),
                "after {polls} polls"
            );
            drop(client);
        }
        // Once streaming for sure: the AUTH OK was read by the client.
        let (link, mut client, peer, ip) = sse_session(&room, &token).await;
        let mut task = Box::pin(run(Arc::clone(&room.inner), link, peer, ip));
        let mut seen = Vec::new();
        loop {
            let mut chunk = [0u8; 512];
            tokio::select! {
                _ = &mut task => panic!("the session ended"),
                n = tokio::io::AsyncReadExt::read(&mut client, &mut chunk) => {
                    seen.extend_from_slice(&chunk[..n.unwrap()]);
                }
            }
            if String::from_utf8_lossy(&seen).contains("\"session\"") {
                break;
            }
        }
        assert_eq!((room.inner.sse.keys(), room.connections()), (1, 1));
        drop(task);
        assert_eq!(
            (
                room.inner.sse.keys(),
                room.inner.sse.open(),
                room.connections()
            ),
            (0, 0, 0)
        );
    }

    #[tokio::test]
    async fn a_connection_task_is_small() {
        let room = Room::new(
            RoomConfig::default(),
            crate::token::Verifier::hmac_only(Tokens::new(b"k")),
            Arc::new(Nothing),
            Arc::new(Metrics::default()),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let slot = room.inner.ip_limit.admit(peer.ip()).unwrap();
        let link = Link::tcp(Socket::Plain(server), None, 1 << 16);
        let future = run(Arc::clone(&room.inner), link, peer, slot);
        let size = std::mem::size_of_val(&future);
        // Every open connection's task holds this; the handshake's state is boxed apart
        // (it was 1,968 bytes with the handshake inline, 1,544 before the socket could be
        // TLS: a `TcpStream` in an enum is 24 bytes more than the two split halves; 8 more
        // for the SSE link's box, its state boxed apart like the handshake's).
        assert!(size <= 1632, "the connection future grew to {size} bytes");
        drop(client);
    }
}
