//! The room: the gateway that holds clients' long connections (WebSocket and raw TCP),
//! authenticates them, keeps their heartbeats, and writes the messages the rest of the
//! system hands it.
//!
//! Connections live in 32 shards (each its own lock, as goim's buckets); one timing wheel
//! keeps every connection's deadline; each connection has a bounded send queue, and a
//! connection too slow to drain it is closed (its stored messages are redelivered when it
//! comes back).

mod http;
mod http_conn;
mod ip_limit;
pub mod link;
mod outbox;
mod session;
mod socket;
mod sse;
mod trim;
mod upgrade;
mod wheel;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use longlink_codec::push::{Net, PushMessage, Upstream, UpstreamReply};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use self::ip_limit::IpLimit;
use self::outbox::Outbox;
use self::wheel::Wheel;
use crate::frame::Frame;
use crate::metrics::{Computed, Metrics, Sample, inc};
use crate::model::{ConnId, Session};
use crate::rooms::{Gateway, Reached};
use crate::token::{TokenKind, Verified, Verifier};

/// What a room tells the rest of the system, and asks of it (the room's [`Courier`] in
/// every deployment).
///
/// [`Courier`]: crate::courier::Courier
#[async_trait]
pub trait RoomEvents: Send + Sync + 'static {
    /// A client authenticated; `session` is findable in the room (a push reaches it from
    /// now on), and `conn` writes to it. Deliver what it is owed.
    async fn connected(&self, session: Session, conn: Connection);
    /// A connection's apps changed (SUBSCRIBE / UNSUBSCRIBE): `session` lists them now;
    /// `added` and `removed` say what changed. `conn` writes to it.
    async fn resubscribed(
        &self,
        session: &Session,
        added: &[String],
        removed: &[String],
        conn: Connection,
    );
    /// A client's connection closed (`session` with its apps at the end).
    async fn disconnected(&self, session: Session);
    /// A client acknowledged messages. Must not block (queue the work).
    fn acked(&self, session: &Session, ids: Vec<u64>);
    /// A client sent upstream data for an app it subscribed to.
    async fn upstream(&self, session: &Session, upstream: Upstream) -> UpstreamReply;
}

/// One open connection of a room, to write to from outside its task (redelivery).
#[derive(Clone)]
pub struct Connection {
    room: Arc<RoomInner>,
    id: ConnId,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("id", &self.id).finish()
    }
}

impl Connection {
    /// Queues `frame`; `false` if the connection is gone or too slow (closed for it).
    pub fn send(&self, frame: &Arc<Frame>) -> bool {
        match self.room.conn(self.id) {
            Some(handle) => self.room.offer(&handle, frame),
            None => false,
        }
    }

    /// The connection's id on its room.
    pub fn id(&self) -> ConnId {
        self.id
    }
}

/// Heartbeat intervals by network type: the server tells each client its interval on AUTH
/// and drops a client silent for two of them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeats {
    /// 2G, in seconds.
    #[serde(rename = "2g")]
    pub g2: u64,
    /// 3G.
    #[serde(rename = "3g")]
    pub g3: u64,
    /// 4G.
    #[serde(rename = "4g")]
    pub g4: u64,
    /// 5G.
    #[serde(rename = "5g")]
    pub g5: u64,
    /// Wi-Fi.
    pub wifi: u64,
}

impl Default for Heartbeats {
    fn default() -> Self {
        // Mobile radios are expensive to wake: long intervals on cellular, longer on Wi-Fi
        // (the seed system's figures).
        Heartbeats {
            g2: 300,
            g3: 300,
            g4: 360,
            g5: 360,
            wifi: 480,
        }
    }
}

impl Heartbeats {
    /// The interval for `net`, in seconds.
    pub fn for_net(&self, net: Net) -> u64 {
        match net {
            Net::G2 => self.g2,
            Net::G3 => self.g3,
            Net::G4 => self.g4,
            Net::G5 => self.g5,
            Net::Wifi => self.wifi,
        }
        .max(1)
    }
}

/// A room's settings (the `[room]` section of the configuration).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomConfig {
    /// The room's name (how the register and dispatcher know it).
    pub name: String,
    /// WebSocket listen address.
    pub ws_listen: SocketAddr,
    /// Raw TCP listen address.
    pub tcp_listen: SocketAddr,
    /// `wss://` listen address (with `[tls]`).
    pub wss_listen: SocketAddr,
    /// TCP+TLS listen address (with `[tls]`).
    pub tls_listen: SocketAddr,
    /// Whether the plaintext listeners (`ws_listen`, `tcp_listen`) are on. Default: on,
    /// unless `[tls]` is set and one of them listens beyond loopback (then only the TLS
    /// listeners take clients).
    pub plaintext: Option<bool>,
    /// Heartbeat intervals by network type, in seconds.
    pub heartbeats: Heartbeats,
    /// Time a new connection has to upgrade (WebSocket) and AUTH.
    #[serde(rename = "auth_timeout_secs", with = "crate::serde_duration::secs")]
    pub auth_timeout: Duration,
    /// Connections per client address.
    pub max_conns_per_ip: usize,
    /// Messages queued per connection before it counts as too slow.
    pub send_queue: usize,
    /// Largest frame (or JSON text) accepted from a client.
    pub max_frame_bytes: usize,
    /// Apps one connection may subscribe.
    pub max_apps_per_conn: usize,
    /// The timing wheel's tick.
    #[serde(rename = "tick_ms", with = "crate::serde_duration::millis")]
    pub tick: Duration,
    /// What happens when a connection's token expires.
    pub token_expiry: TokenExpiry,
    /// SSE streams open at once, at most (each is a connection too, under the per-IP
    /// limit); `POST /sse` past it is answered `429`.
    pub max_sse_sessions: usize,
    /// Messages POSTed to one SSE session and not yet read by it, at most; a POST past it
    /// is answered `429`.
    pub sse_inbox: usize,
}

/// What happens when a connection's token expires (`[room.token_expiry]`): the connection
/// is closed `grace` after its token's expiry unless a REFRESH brought a new one; off for
/// HMAC tokens and on for JWTs by default (an HMAC token is often issued for the life of
/// an app install; a JWT is short-lived by design).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenExpiry {
    /// Close connections whose HMAC token expired.
    pub hmac: bool,
    /// Close connections whose JWT expired.
    pub jwt: bool,
    /// How long after the expiry a REFRESH is still taken.
    #[serde(rename = "grace_secs", with = "crate::serde_duration::secs")]
    pub grace: Duration,
}

impl Default for TokenExpiry {
    fn default() -> Self {
        TokenExpiry {
            hmac: false,
            jwt: true,
            grace: Duration::from_secs(60),
        }
    }
}

impl TokenExpiry {
    /// Whether a connection holding `token` is closed once it expires.
    pub fn enforced(&self, token: &Verified) -> bool {
        match token.kind {
            TokenKind::Hmac => self.hmac,
            _ => self.jwt,
        }
    }
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: "room-1".into(),
            ws_listen: "127.0.0.1:7801".parse().expect("an address"),
            tcp_listen: "127.0.0.1:7802".parse().expect("an address"),
            wss_listen: "127.0.0.1:7803".parse().expect("an address"),
            tls_listen: "127.0.0.1:7804".parse().expect("an address"),
            plaintext: None,
            heartbeats: Heartbeats::default(),
            auth_timeout: Duration::from_secs(10),
            max_conns_per_ip: 1024,
            send_queue: 256,
            max_frame_bytes: longlink_codec::push::DEFAULT_MAX_FRAME_BYTES,
            max_apps_per_conn: 16,
            tick: Duration::from_secs(1),
            token_expiry: TokenExpiry::default(),
            max_sse_sessions: 10_000,
            sse_inbox: 64,
        }
    }
}

/// Why the room closes a connection; the client is told where a frame exists for it.
#[derive(Debug, Clone)]
pub(crate) enum Closing {
    Kick(String),
    Reconnect {
        reason: String,
        after_ms: u32,
    },
    Timeout,
    /// The token expired and no REFRESH replaced it within the grace.
    Expired,
    Slow,
    /// The client broke the protocol (an ERROR went out); the WebSocket close code.
    Broken(u16),
}

impl Closing {
    /// The WebSocket close status it ends with (RFC 6455 §7.4.1): 1000 normal (after a
    /// KICK, or a silent client), 1001 going away (a drain: RECONNECT), 1008 policy (too
    /// slow to read its messages), or the protocol error's own code.
    pub(crate) fn ws_code(&self) -> u16 {
        match self {
            Closing::Kick(_) | Closing::Timeout => link::CLOSE_NORMAL,
            Closing::Reconnect { .. } => link::CLOSE_GOING_AWAY,
            Closing::Slow | Closing::Expired => link::CLOSE_POLICY,
            Closing::Broken(code) => *code,
        }
    }
}

/// The WebSocket close status for a frame the room could not read: 1009 for one too large,
/// 1002 for broken WebSocket framing, 1007 for a message whose content does not decode.
pub(crate) fn close_code(e: &longlink_codec::CodecError) -> u16 {
    use longlink_codec::CodecError;
    match e {
        CodecError::FrameTooLarge { .. } | CodecError::MessageTooLarge { .. } => {
            link::CLOSE_TOO_BIG
        }
        CodecError::Malformed {
            what: "websocket frame",
            ..
        } => link::CLOSE_PROTOCOL,
        _ => link::CLOSE_INVALID_DATA,
    }
}

/// A connection as the room's registry sees it.
pub(crate) struct ConnHandle {
    outbox: Mutex<Outbox>,
    /// Something was queued.
    ready: Notify,
    closer: Notify,
    closing: Mutex<Option<Closing>>,
    /// Set at AUTH.
    identity: RwLock<Option<Identity>>,
    /// When the token stops being good (wheel ms, its grace included); `u64::MAX`: never
    /// (or not enforced).
    token_deadline: std::sync::atomic::AtomicU64,
    /// The REFRESHes it sent lately (`session::RefreshGate`, packed; only the
    /// connection's own task touches it).
    refreshes: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Clone)]
pub(crate) struct Identity {
    uid: String,
    device: String,
    apps: Vec<String>,
    /// The apps the token lets it subscribe (`None`: any).
    allowed: Option<Box<[String]>>,
}

impl Identity {
    fn allows(&self, app: &str) -> bool {
        self.allowed
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|a| a == app))
    }
}

impl ConnHandle {
    fn close(&self, why: Closing) {
        let mut closing = self.closing.lock();
        if closing.is_none() {
            *closing = Some(why);
            self.closer.notify_one();
        }
    }
}

const SHARDS: usize = 32;

/// A shard of the connection registry.
type ConnShard = Mutex<HashMap<ConnId, Arc<ConnHandle>>>;
/// A shard of the uid → connections index.
type UserShard = Mutex<HashMap<String, Vec<ConnId>>>;

pub(crate) struct RoomInner {
    config: RoomConfig,
    verifier: Verifier,
    events: Arc<dyn RoomEvents>,
    metrics: Arc<Metrics>,
    conns: Box<[ConnShard]>,
    users: Box<[UserShard]>,
    hasher: RandomState,
    next_conn: AtomicU64,
    wheel: Wheel,
    ip_limit: Arc<IpLimit>,
    /// Bounds the WebSocket upgrades and AUTHs in progress.
    handshakes: Semaphore,
    /// Bounds the refusals (over the per-IP limit) being answered.
    refusing: Arc<Semaphore>,
    /// Set once the room drains: it takes no new users.
    draining: std::sync::atomic::AtomicBool,
    /// The SSE fallback's sessions (keys to inboxes), bounded.
    sse: Arc<sse::SseSessions>,
}

/// A room. Cheap to clone.
#[derive(Clone)]
pub struct Room {
    inner: Arc<RoomInner>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("name", &self.inner.config.name)
            .field("connections", &self.connections())
            .finish()
    }
}

/// The addresses a started room listens on (`None`: that listener is off).
#[derive(Debug, Clone, Copy)]
pub struct RoomAddrs {
    /// WebSocket (`ws://`).
    pub ws: Option<SocketAddr>,
    /// Raw TCP.
    pub tcp: Option<SocketAddr>,
    /// WebSocket over TLS (`wss://`).
    pub wss: Option<SocketAddr>,
    /// Raw TCP over TLS.
    pub tls: Option<SocketAddr>,
}

impl RoomConfig {
    /// Whether the plaintext listeners are on when TLS is (`tls`) or is not configured.
    pub fn plaintext_on(&self, tls: bool) -> bool {
        self.plaintext.unwrap_or_else(|| {
            !tls || (self.ws_listen.ip().is_loopback() && self.tcp_listen.ip().is_loopback())
        })
    }
}

impl Room {
    /// A room; nothing listens until [`start`](Room::start). Its gauges go on the page of
    /// `metrics`.
    pub fn new(
        config: RoomConfig,
        verifier: Verifier,
        events: Arc<dyn RoomEvents>,
        metrics: Arc<Metrics>,
    ) -> Room {
        let wheel = Wheel::new(config.tick, 600);
        let room = Room {
            inner: Arc::new(RoomInner {
                ip_limit: IpLimit::new(config.max_conns_per_ip),
                verifier,
                events,
                metrics,
                conns: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                users: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                hasher: RandomState::new(),
                next_conn: AtomicU64::new(1),
                wheel,
                handshakes: Semaphore::new(1024),
                refusing: Arc::new(Semaphore::new(session::MAX_REFUSING)),
                draining: std::sync::atomic::AtomicBool::new(false),
                sse: sse::SseSessions::new(config.max_sse_sessions, config.sse_inbox),
                config,
            }),
        };
        let weak = Arc::downgrade(&room.inner);
        room.inner.metrics.add_family(Computed::gauge(
            "wheel_entries",
            "Heartbeat-wheel entries (open connections, and closed ones until their slot comes up)",
            move || {
                weak.upgrade()
                    .map(|r| {
                        vec![Sample::labelled(
                            "room",
                            r.config.name.clone(),
                            r.wheel.len() as f64,
                        )]
                    })
                    .unwrap_or_default()
            },
        ));
        for (name, help, read) in [
            (
                "sse_sessions",
                "SSE streams open (authenticating or authenticated)",
                sse::SseSessions::open as fn(&sse::SseSessions) -> usize,
            ),
            (
                "sse_session_keys",
                "SSE session keys that POSTs can reach",
                sse::SseSessions::keys,
            ),
            (
                "sse_sessions_max",
                "SSE streams a room takes at once",
                sse::SseSessions::max_sessions,
            ),
        ] {
            let weak = Arc::downgrade(&room.inner);
            room.inner
                .metrics
                .add_family(Computed::gauge(name, help, move || {
                    weak.upgrade()
                        .map(|r| {
                            vec![Sample::labelled(
                                "room",
                                r.config.name.clone(),
                                read(&r.sse) as f64,
                            )]
                        })
                        .unwrap_or_default()
                }));
        }
        room
    }

    /// SSE session keys in the room's map (sessions that POSTs can reach).
    pub fn sse_sessions(&self) -> usize {
        self.inner.sse.keys()
    }

    /// Binds the plaintext listeners and starts accepting, and the wheel's ticker.
    pub async fn start(&self) -> std::io::Result<RoomAddrs> {
        self.start_with(None).await
    }

    /// Binds the listeners and starts accepting, and the wheel's ticker: with `tls`, the
    /// `wss://` and TCP+TLS listeners serving its certificate (the plaintext ones as
    /// [`RoomConfig::plaintext`] says).
    pub async fn start_with(
        &self,
        tls: Option<Arc<crate::tls::Certificates>>,
    ) -> std::io::Result<RoomAddrs> {
        // Every connection is a file: take all the process may have.
        match crate::fdlimit::raise() {
            Ok(limit) => {
                let metrics = &self.inner.metrics;
                metrics.fd_limit.set(limit.soft as i64);
                metrics.capacity.set(limit.connection_capacity() as i64);
                tracing::info!(soft = limit.soft, hard = limit.hard, "open-file limit");
            }
            Err(e) => tracing::warn!(error = %e, "could not read or raise the open-file limit"),
        }
        let config = &self.inner.config;
        let mut addrs = RoomAddrs {
            ws: None,
            tcp: None,
            wss: None,
            tls: None,
        };
        let mut listeners = Vec::new();
        if config.plaintext_on(tls.is_some()) {
            let ws = TcpListener::bind(config.ws_listen).await?;
            let tcp = TcpListener::bind(config.tcp_listen).await?;
            addrs.ws = Some(ws.local_addr()?);
            addrs.tcp = Some(tcp.local_addr()?);
            listeners.push((ws, session::Listening::WebSocket, None));
            listeners.push((tcp, session::Listening::Tcp, None));
        }
        if let Some(certs) = &tls {
            let invalid = |e: crate::tls::TlsError| std::io::Error::other(e.to_string());
            let http =
                crate::tls::server_config(certs, &[crate::tls::ALPN_HTTP1]).map_err(invalid)?;
            let push =
                crate::tls::server_config(certs, &[crate::tls::ALPN_PUSH]).map_err(invalid)?;
            let wss = TcpListener::bind(config.wss_listen).await?;
            let tcp = TcpListener::bind(config.tls_listen).await?;
            addrs.wss = Some(wss.local_addr()?);
            addrs.tls = Some(tcp.local_addr()?);
            listeners.push((wss, session::Listening::WebSocket, Some(http)));
            listeners.push((tcp, session::Listening::Tcp, Some(push)));
        }
        for (listener, kind, tls) in listeners {
            tokio::spawn(session::accept(
                Arc::clone(&self.inner),
                listener,
                kind,
                tls,
            ));
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let tick = weak
                .upgrade()
                .map(|r| r.wheel.tick())
                .unwrap_or(Duration::from_secs(1));
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut trimmer = trim::Trimmer::default();
            let mut last_check = tokio::time::Instant::now();
            loop {
                ticks.tick().await;
                let Some(room) = weak.upgrade() else { return };
                let fired = room.wheel.advance();
                // Read after `advance` (which reads its own): a token deadline it fired is
                // at or before this `now`, so it closes as expired, not as a timeout.
                let now = room.wheel.now_ms();
                for conn in fired {
                    if let Some(handle) = room.conn(conn) {
                        let token_deadline = handle
                            .token_deadline
                            .load(std::sync::atomic::Ordering::Relaxed);
                        if token_deadline <= now {
                            inc(&room.metrics.token_expired);
                            handle.close(Closing::Expired);
                        } else {
                            inc(&room.metrics.heartbeat_timeouts);
                            handle.close(Closing::Timeout);
                        }
                    }
                }
                if last_check.elapsed() >= Duration::from_secs(1) {
                    last_check = tokio::time::Instant::now();
                    let accepted = room.metrics.connections_accepted.get();
                    let open = room.metrics.connections.get().max(0) as u64;
                    if trimmer.should_trim(accepted, open) {
                        trim::trim(&room).await;
                    }
                }
            }
        });
        Ok(addrs)
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Connections authenticated and open.
    pub fn connections(&self) -> usize {
        self.inner
            .users
            .iter()
            .map(|s| s.lock().values().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// Queues `frame` for `uid`'s connections that subscribe `app` (and are `device`, if
    /// given). Returns how many took it. A connection whose queue is full is closed as too
    /// slow.
    pub fn deliver_to_user(
        &self,
        uid: &str,
        app: &str,
        device: Option<&str>,
        frame: &Arc<Frame>,
    ) -> usize {
        let ids = self.inner.user_conns(uid);
        let mut delivered = 0;
        for id in ids {
            let Some(handle) = self.inner.conn(id) else {
                continue;
            };
            let matches = handle.identity.read().as_ref().is_some_and(|i| {
                i.apps.iter().any(|a| a == app) && device.is_none_or(|d| d == i.device)
            });
            if matches && self.inner.offer(&handle, frame) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Queues `frame` for every connection subscribing `app`; returns the deliveries made
    /// and, with `want_users` (a stored message needs its delivery records), the users
    /// reached, each once. An at-most-once broadcast skips collecting them: that is a
    /// string per connection, sorted, and sent back over RPC in a cluster.
    pub fn broadcast_to(
        &self,
        app: &str,
        frame: &Arc<Frame>,
        want_users: bool,
    ) -> (Vec<String>, usize) {
        let mut users = Vec::new();
        let mut delivered = 0;
        let mut handles: Vec<Arc<ConnHandle>> = Vec::new();
        for shard in self.inner.conns.iter() {
            handles.clear();
            handles.extend(shard.lock().values().cloned());
            for handle in &handles {
                let uid = match handle.identity.read().as_ref() {
                    Some(i) if i.apps.iter().any(|a| a == app) => want_users.then(|| i.uid.clone()),
                    _ => continue,
                };
                if self.inner.offer(handle, frame) {
                    delivered += 1;
                    users.extend(uid);
                }
            }
        }
        users.sort_unstable();
        users.dedup();
        (users, delivered)
    }

    /// The users online in `app` now.
    pub fn users_in(&self, app: &str) -> Vec<String> {
        let mut users = Vec::new();
        for shard in self.inner.conns.iter() {
            for handle in shard.lock().values() {
                if let Some(i) = handle
                    .identity
                    .read()
                    .as_ref()
                    .filter(|i| i.apps.iter().any(|a| a == app))
                {
                    users.push(i.uid.clone());
                }
            }
        }
        users.sort();
        users.dedup();
        users
    }

    /// Closes `uid`'s connections that subscribe `app` with a KICK carrying `reason`;
    /// returns how many.
    pub fn kick(&self, uid: &str, app: &str, reason: &str) -> usize {
        let ids = self.inner.user_conns(uid);
        let mut kicked = 0;
        for id in ids {
            let Some(handle) = self.inner.conn(id) else {
                continue;
            };
            let in_app = handle
                .identity
                .read()
                .as_ref()
                .is_some_and(|i| i.apps.iter().any(|a| a == app));
            if in_app {
                handle.close(Closing::Kick(reason.to_owned()));
                inc(&self.inner.metrics.kicked);
                kicked += 1;
            }
        }
        kicked
    }

    /// Whether the room drains (and takes no new users).
    pub fn is_draining(&self) -> bool {
        self.inner
            .draining
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Tells every connection to reconnect (elsewhere) after a delay spread over `window`,
    /// and closes it (a draining room).
    pub fn drain(&self, reason: &str, window: Duration) {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.reconnect_all(reason, window);
    }

    /// Tells every connection to reconnect after a delay spread over `window`, and
    /// closes it, without draining: the room takes them back (what a drain does to a
    /// single process whose room stays, and an operator's way to rebalance).
    pub fn reconnect_all(&self, reason: &str, window: Duration) {
        for shard in self.inner.conns.iter() {
            for handle in shard.lock().values() {
                let after_ms = fastrand::u64(..=window.as_millis() as u64) as u32;
                handle.close(Closing::Reconnect {
                    reason: reason.to_owned(),
                    after_ms,
                });
            }
        }
    }

    /// Timing-wheel entries (a bound check for tests and metrics).
    pub fn wheel_entries(&self) -> usize {
        self.inner.wheel.len()
    }
}

#[async_trait]
impl Gateway for Room {
    async fn deliver(
        &self,
        app: String,
        frame: Frame,
        uids: Vec<String>,
        device: Option<String>,
    ) -> Result<Reached, crate::PushError> {
        let frame = Arc::new(frame);
        let mut reached = Reached::default();
        for uid in uids {
            let n = self.deliver_to_user(&uid, &app, device.as_deref(), &frame);
            if n > 0 {
                reached.deliveries += n as u64;
                reached.users.push(uid);
            }
        }
        reached.busiest_room = reached.deliveries;
        Ok(reached)
    }

    async fn broadcast(
        &self,
        app: String,
        frame: Frame,
        users: bool,
    ) -> Result<Reached, crate::PushError> {
        let (users, deliveries) = self.broadcast_to(&app, &Arc::new(frame), users);
        Ok(Reached {
            users,
            deliveries: deliveries as u64,
            busiest_room: deliveries as u64,
            unreached: Vec::new(),
        })
    }

    async fn users_in(&self, app: String) -> Result<Vec<String>, crate::PushError> {
        Ok(Room::users_in(self, &app))
    }

    async fn kick(
        &self,
        uid: String,
        app: String,
        reason: String,
    ) -> Result<u64, crate::PushError> {
        Ok(Room::kick(self, &uid, &app, &reason) as u64)
    }

    async fn drain(&self, window_ms: u64) -> Result<(), crate::PushError> {
        Room::drain(self, "room draining", Duration::from_millis(window_ms));
        Ok(())
    }

    async fn load(&self) -> Result<crate::rooms::RoomLoad, crate::PushError> {
        Ok(crate::rooms::RoomLoad {
            name: self.name().to_owned(),
            connections: self.connections() as u64,
            draining: self.is_draining(),
        })
    }
}

impl RoomInner {
    /// The wheel deadline past which a connection holding `token` is closed, its grace
    /// included (`u64::MAX`: never).
    fn token_deadline(&self, token: &Verified) -> u64 {
        if !self.config.token_expiry.enforced(token) {
            return u64::MAX;
        }
        let now = crate::token::unix_now();
        let left = token.expires_at.saturating_sub(now).saturating_mul(1000);
        self.wheel
            .now_ms()
            .saturating_add(left)
            .saturating_add(self.config.token_expiry.grace.as_millis() as u64)
    }

    fn conn_shard(&self, id: ConnId) -> &ConnShard {
        &self.conns[id as usize % SHARDS]
    }

    fn user_shard(&self, uid: &str) -> &UserShard {
        &self.users[self.hasher.hash_one(uid) as usize % SHARDS]
    }

    fn conn(&self, id: ConnId) -> Option<Arc<ConnHandle>> {
        self.conn_shard(id).lock().get(&id).cloned()
    }

    fn user_conns(&self, uid: &str) -> Vec<ConnId> {
        self.user_shard(uid)
            .lock()
            .get(uid)
            .cloned()
            .unwrap_or_default()
    }

    /// Queues a frame; a full queue closes the connection as too slow.
    fn offer(&self, handle: &ConnHandle, frame: &Arc<Frame>) -> bool {
        let mut outbox = handle.outbox.lock();
        if outbox.closed {
            return false;
        }
        if outbox.len() >= self.config.send_queue.max(1) {
            drop(outbox);
            inc(&self.metrics.slow_consumers);
            handle.close(Closing::Slow);
            return false;
        }
        outbox.push(Arc::clone(frame));
        drop(outbox);
        handle.ready.notify_one();
        true
    }
}

/// The reply to a message a client may not send.
pub(crate) fn refusal(reason: impl Into<String>) -> PushMessage {
    PushMessage::Error(longlink_codec::push::ErrorMessage {
        code: 400,
        reason: reason.into(),
    })
}

/// The reply to a frame the room could not read: 413 for one over the size limit, 400
/// otherwise.
pub(crate) fn frame_error(e: &longlink_codec::CodecError) -> PushMessage {
    let code = match e {
        longlink_codec::CodecError::FrameTooLarge { .. } => 413,
        _ => 400,
    };
    PushMessage::Error(longlink_codec::push::ErrorMessage {
        code,
        reason: e.to_string(),
    })
}
