#![doc = include_str!("../README.md")]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![forbid(unsafe_code)]

mod api;
mod dedup;
mod http;
mod refresh;
mod sse;
mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use longlink_codec::CodecError;
use longlink_codec::push::{
    Ack, Auth, Deliver, ErrorMessage, Net, Payload, PushMessage, Refresh, Subscribe, Upstream,
    UpstreamReply,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use self::api::{ApiError, CenterApi, Pushed};
pub use self::dedup::Dedup;
pub use self::refresh::{TokenFuture, TokenSource};
use self::transport::Conn;
use longlink_codec::push::{Dispatch, RoomAddress};

/// How the client reaches a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Raw TCP with push frames (the native apps' way).
    #[default]
    Tcp,
    /// WebSocket with one push frame per binary message.
    WebSocket,
    /// The fallback for networks that let only plain HTTP through: the room's messages
    /// as server-sent events (`POST /sse` on the room's WebSocket port), the client's as
    /// HTTP POSTs (`/sse/{session}`), in the JSON form. The same session, ACKs and
    /// redelivery as the other transports.
    Sse,
}

/// A client's settings. Its `Debug` shows no token.
#[derive(Clone)]
pub struct ClientConfig {
    /// The center's base URL (dispatcher and notify pull), e.g. `http://127.0.0.1:7800`.
    pub center: String,
    /// More centers (or dispatchers) with the same API: a dispatch that `center` does not
    /// answer goes to these in turn, and the next dispatch starts at the one that last
    /// answered ([`ClientConfig::also_at`]).
    pub also: Vec<String>,
    /// The user.
    pub uid: String,
    /// This device.
    pub device: String,
    /// The network type (picks the heartbeat interval).
    pub net: Net,
    /// Apps to receive messages for.
    pub apps: Vec<String>,
    /// The token the business backend issued for `uid`.
    pub token: String,
    /// TCP, WebSocket or SSE.
    pub transport: Transport,
    /// ACK every message as soon as it arrives (otherwise call [`Client::ack`]).
    pub auto_ack: bool,
    /// First reconnect delay; doubles per failure (with full jitter) up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Largest frame accepted from the room.
    pub max_frame_bytes: usize,
    /// Message ids remembered to drop duplicates.
    pub dedup_window: usize,
    /// Events buffered for the application before the client stops reading.
    pub event_buffer: usize,
    /// TLS for an `https://` center and rooms that speak TLS (`wss://`, TCP+TLS): the
    /// roots to trust, and anything else rustls takes (the ALPN protocols are set per
    /// connection). [`ClientConfig::trust_pem`] builds one trusting a CA in PEM.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Where new tokens come from ([`ClientConfig::refresh`]); none: the client keeps
    /// `token` and stops with [`Event::Refused`] once a room refuses it.
    pub refresh: Option<TokenSource>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("center", &self.center)
            .field("uid", &self.uid)
            .field("device", &self.device)
            .field("net", &self.net)
            .field("apps", &self.apps)
            .field("token", &"<redacted>")
            .field("transport", &self.transport)
            .field("auto_ack", &self.auto_ack)
            .field("tls", &self.tls.is_some())
            .field("refresh", &self.refresh.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults: device `default`, Wi-Fi, app `demo`, TCP, auto-ACK.
    pub fn new(center: &str, uid: &str, token: &str) -> ClientConfig {
        ClientConfig {
            center: center.trim_end_matches('/').to_owned(),
            also: Vec::new(),
            uid: uid.to_owned(),
            device: "default".to_owned(),
            net: Net::Wifi,
            apps: vec!["demo".to_owned()],
            token: token.to_owned(),
            transport: Transport::Tcp,
            auto_ack: true,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            max_frame_bytes: 1 << 20,
            dedup_window: 4096,
            event_buffer: 1024,
            tls: None,
            refresh: None,
        }
    }

    /// Dispatches through `centers` too when `center` does not answer (several centers or
    /// dispatchers: none of them a single point of failure for reconnecting clients).
    pub fn also_at<S: AsRef<str>>(mut self, centers: impl IntoIterator<Item = S>) -> ClientConfig {
        self.also.extend(
            centers
                .into_iter()
                .map(|c| c.as_ref().trim_end_matches('/').to_owned()),
        );
        self
    }

    /// Gets new tokens from `source`: before the token expires (sent to the room in a
    /// REFRESH, the connection stays), before reconnecting with an expired one, and once
    /// when a room refuses one.
    pub fn refresh(mut self, source: TokenSource) -> ClientConfig {
        self.refresh = Some(source);
        self
    }

    /// TLS trusting the CA certificates in `pem` (a private or development CA, such as the
    /// one `longlink-push all --tls-self-signed` writes) and nothing else.
    pub fn trust_pem(mut self, pem: &[u8]) -> Result<ClientConfig, ClientError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ClientError::Tls(format!("CA file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Tls("no certificate in the CA file".into()));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        self.tls = Some(Arc::new(config));
        Ok(self)
    }
}

/// What happened on the client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Authenticated on a room.
    Connected {
        /// The room's name.
        room: String,
        /// The address connected to.
        address: String,
        /// The heartbeat interval the room asked for.
        heartbeat_secs: u32,
    },
    /// A message, the first time it arrives.
    Message(Deliver),
    /// A message seen before (redelivered); already ACKed again if auto-ACK is on.
    Duplicate(u64),
    /// The room closed the session with a reason; the client stops.
    Kicked(String),
    /// The room refused the AUTH (bad or expired token); the client stops.
    Refused(String),
    /// The connection ended; the client reconnects after `retry_in`.
    Disconnected {
        /// What ended it.
        reason: String,
        /// When the client tries again.
        retry_in: Duration,
    },
    /// The room reported an error.
    Error(ErrorMessage),
    /// A new token from the [`TokenSource`] was accepted by the room (on the open
    /// connection, or at the next AUTH).
    TokenRefreshed {
        /// When the new token expires (Unix seconds), if it says.
        expires_at: Option<u64>,
    },
    /// Getting a new token failed, or the room refused the new one; the client keeps the
    /// connection and its current token and tries again shortly.
    RefreshFailed(String),
}

/// What went wrong in the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A frame could not be read or written.
    #[error("frame: {0}")]
    Codec(#[from] CodecError),
    /// The room broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// TLS failed (a certificate not trusted or for another host, no TLS configured for a
    /// TLS address, a handshake refused).
    #[error("tls: {0}")]
    Tls(String),
    /// An HTTP call failed.
    #[error("http: {0}")]
    Http(String),
    /// The client has stopped (kicked, refused or closed).
    #[error("the client has stopped")]
    Stopped,
    /// Not connected now; the request was not sent.
    #[error("not connected: nothing was sent")]
    NotConnected,
    /// The connection closed before the room answered; the request may have been taken.
    #[error("the connection closed before the answer; the request may have been taken")]
    ConnectionLost,
}

enum Command {
    Ack(Vec<u64>),
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
    Upstream(
        Upstream,
        oneshot::Sender<Result<UpstreamReply, ClientError>>,
    ),
    SetNet(Net),
}

/// A running client. Dropping it closes the connection.
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
    center: String,
    uid: String,
    token: Arc<Mutex<String>>,
    http: http::HttpClient,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("center", &self.center)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Starts connecting in the background; events arrive on [`next_event`](Client::next_event).
    pub fn start(config: ClientConfig) -> Client {
        let (commands, command_rx) = mpsc::channel(256);
        let (event_tx, events) = mpsc::channel(config.event_buffer.max(1));
        let (center, uid) = (config.center.clone(), config.uid.clone());
        let token = Arc::new(Mutex::new(config.token.clone()));
        let http = http::client(config.tls.as_ref());
        let runner = Runner::new(config, Arc::clone(&token), event_tx, command_rx);
        let task = tokio::spawn(runner.run());
        Client {
            commands,
            events,
            task,
            center,
            uid,
            token,
            http,
        }
    }

    /// The next event; `None` once the client has stopped and every event was read.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// ACKs messages (when auto-ACK is off).
    pub async fn ack(&self, ids: Vec<u64>) -> Result<(), ClientError> {
        self.commands
            .send(Command::Ack(ids))
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Sends data upstream to `app`'s business server and waits for the room's answer.
    pub async fn upstream(
        &self,
        app: &str,
        kind: &str,
        body: impl Into<Payload>,
    ) -> Result<UpstreamReply, ClientError> {
        let (tx, rx) = oneshot::channel();
        let upstream = Upstream {
            app: app.to_owned(),
            kind: kind.to_owned(),
            body: body.into(),
        };
        self.commands
            .send(Command::Upstream(upstream, tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::ConnectionLost)?
    }

    /// Receives `apps` too from now on (and on every reconnect). The room refuses a
    /// subscription that would pass its limit of apps per connection with an
    /// [`Event::Error`]; the apps stay as they were.
    pub async fn subscribe(&self, apps: Vec<String>) -> Result<(), ClientError> {
        self.commands
            .send(Command::Subscribe(apps))
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Stops receiving `apps` (now and on every reconnect).
    pub async fn unsubscribe(&self, apps: Vec<String>) -> Result<(), ClientError> {
        self.commands
            .send(Command::Unsubscribe(apps))
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// The network type changed: reconnect with the rooms and heartbeat for `net`.
    pub async fn set_net(&self, net: Net) -> Result<(), ClientError> {
        self.commands
            .send(Command::SetNet(net))
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Pulls the body of a `notify` message from the center.
    pub async fn pull(&self, id: u64) -> Result<Bytes, ClientError> {
        let url = format!(
            "{}/messages/{id}/body?uid={}&token={}",
            self.center,
            http::encode(&self.uid),
            http::encode(&current(&self.token))
        );
        match http::get(&self.http, &url).await? {
            (200, body) => Ok(body),
            (status, body) => Err(ClientError::Http(format!(
                "pull {id}: {status} {}",
                String::from_utf8_lossy(&body)
            ))),
        }
    }
}

/// The token in use now.
fn current(token: &Mutex<String>) -> String {
    token.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// How long after a failed refresh the client asks its [`TokenSource`] again.
const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// The least time between two refreshes on one connection when the token in use already
/// looks expired by this device's clock (a clock running fast, or a backend handing out a
/// cached token near its end): the room accepted it, so its clock says otherwise.
const REFRESH_FLOOR: Duration = Duration::from_secs(60);

/// A task aborted when dropped (the token source's call, when the client goes away).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a failed address is remembered (named to the dispatcher, tried last).
const FORGET_FAILURES_AFTER: Duration = Duration::from_secs(60);

/// Why a session ended, and what to do next.
enum Next {
    /// Reconnect after this long.
    Retry(Duration, String),
    /// Stop for good.
    Stop,
}

/// The background task.
struct Runner {
    config: ClientConfig,
    events: mpsc::Sender<Event>,
    commands: mpsc::Receiver<Command>,
    http: http::HttpClient,
    /// TLS for TCP+TLS rooms (ALPN `longlink-push`).
    push_tls: Option<Arc<rustls::ClientConfig>>,
    /// TLS for `wss://` rooms (ALPN `http/1.1`).
    ws_tls: Option<Arc<rustls::ClientConfig>>,
    /// Rooms per network type, as the dispatcher last answered.
    rooms: HashMap<Net, Vec<RoomAddress>>,
    /// Which of `center` and `also` answered the last dispatch (0: `center`).
    dispatch_at: usize,
    /// Addresses that failed since the last good connection, and when.
    failed: Vec<(String, Instant)>,
    dedup: Dedup,
    failures: u32,
    seq: u32,
    /// The token in use, shared with [`Client::pull`].
    token: Arc<Mutex<String>>,
    /// AUTHs refused in a row (with a [`TokenSource`], one refusal is retried with a new
    /// token; two stop the client).
    refusals: u32,
    /// A REFRESH sent on this connection: its seq and the token it carries.
    refresh_sent: Option<(u32, String)>,
    /// When to ask the [`TokenSource`] next, on this connection.
    refresh_at: Option<Instant>,
}

impl Runner {
    fn new(
        config: ClientConfig,
        token: Arc<Mutex<String>>,
        events: mpsc::Sender<Event>,
        commands: mpsc::Receiver<Command>,
    ) -> Runner {
        let tls = config.tls.clone();
        Runner {
            dedup: Dedup::new(config.dedup_window),
            config,
            events,
            commands,
            http: http::client(tls.as_ref()),
            push_tls: tls
                .as_ref()
                .map(|c| transport::with_alpn(c, b"longlink-push")),
            ws_tls: tls.as_ref().map(|c| transport::with_alpn(c, b"http/1.1")),
            rooms: HashMap::new(),
            dispatch_at: 0,
            failed: Vec::new(),
            failures: 0,
            seq: 0,
            token,
            refusals: 0,
            refresh_sent: None,
            refresh_at: None,
        }
    }

    fn set_token(&self, token: String) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token;
    }

    /// A token from the source, within the connect timeout.
    async fn fetch_token(source: TokenSource) -> Result<String, String> {
        match tokio::time::timeout(Duration::from_secs(10), source.fetch()).await {
            Ok(Ok(token)) if token.is_empty() => Err("the token source gave an empty token".into()),
            Ok(result) => result,
            Err(_) => Err("the token source did not answer within 10 s".into()),
        }
    }

    /// A new token before connecting, when the current one has expired. `Err`: why
    /// connecting now is pointless.
    async fn fresh_token(&mut self) -> Result<(), String> {
        let Some(source) = self.config.refresh.clone() else {
            return Ok(());
        };
        if !refresh::stale(&current(&self.token), refresh::unix_now()) {
            return Ok(());
        }
        match Self::fetch_token(source).await {
            Ok(token) => {
                self.set_token(token);
                Ok(())
            }
            Err(e) => {
                let _ = self.events.send(Event::RefreshFailed(e.clone())).await;
                Err(format!("no fresh token: {e}"))
            }
        }
    }

    /// When to refresh on a connection just authenticated with the current token.
    fn schedule_refresh(&mut self) {
        self.refresh_sent = None;
        self.refresh_at = match (&self.config.refresh, refresh::expiry(&current(&self.token))) {
            (Some(_), Some(expires_at)) => {
                let due = refresh::refresh_in(expires_at, refresh::unix_now());
                // Due at once for a token the room has just accepted: not again for a while.
                Some(Instant::now() + if due.is_zero() { REFRESH_FLOOR } else { due })
            }
            _ => None,
        };
    }

    fn backoff(&mut self) -> Duration {
        let exp = self.failures.min(16);
        self.failures += 1;
        let cap = self
            .config
            .backoff_min
            .saturating_mul(1 << exp)
            .min(self.config.backoff_max);
        // Full jitter: a crowd that lost its room does not come back in step.
        let min = self.config.backoff_min.as_millis() as u64;
        Duration::from_millis(fastrand::u64(min..=(cap.as_millis() as u64).max(min)))
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    async fn run(mut self) {
        loop {
            let next = match self.connect().await {
                Ok(conn) => self.session(conn).await,
                Err(next) => next,
            };
            match next {
                Next::Stop => return,
                Next::Retry(after, reason) => {
                    let event = Event::Disconnected {
                        reason,
                        retry_in: after,
                    };
                    if self.events.send(event).await.is_err() {
                        return;
                    }
                    // Commands that arrive while away: ACKs wait in the room's store
                    // (the messages come again), upstream fails at once.
                    let deadline = Instant::now() + after;
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(deadline) => break,
                            command = self.commands.recv() => match command {
                                None => return,
                                Some(Command::Upstream(_, reply)) => {
                                    let _ = reply.send(Err(ClientError::NotConnected));
                                }
                                Some(Command::SetNet(net)) => self.config.net = net,
                                Some(Command::Subscribe(apps)) => self.subscribe_apps(apps),
                                Some(Command::Unsubscribe(apps)) => self.config.apps.retain(|a| !apps.contains(a)),
                                Some(Command::Ack(_)) => {}
                            },
                        }
                    }
                }
            }
        }
    }

    /// The rooms to try, from the cache or the dispatcher: `center`, or while it does not
    /// answer the next of `also`.
    async fn dispatch(&mut self) -> Result<Vec<RoomAddress>, String> {
        if let Some(rooms) = self.rooms.get(&self.config.net) {
            return Ok(rooms.clone());
        }
        let count = 1 + self.config.also.len();
        let mut last = String::new();
        for i in self.dispatch_at..self.dispatch_at + count {
            let at = i % count;
            let center = if at == 0 {
                self.config.center.clone()
            } else {
                self.config.also[at - 1].clone()
            };
            match self.dispatch_from(&center).await {
                Ok(rooms) => {
                    self.dispatch_at = at;
                    self.rooms.insert(self.config.net, rooms.clone());
                    return Ok(rooms);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn dispatch_from(&self, center: &str) -> Result<Vec<RoomAddress>, String> {
        let url = format!(
            "{}/dispatch?uid={}&net={}&failed={}",
            center,
            http::encode(&self.config.uid),
            self.config.net,
            http::encode(
                &self
                    .failed
                    .iter()
                    .map(|(a, _)| a.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        );
        let (status, body) = http::get(&self.http, &url)
            .await
            .map_err(|e| format!("dispatch: {e}"))?;
        if status != 200 {
            return Err(format!(
                "dispatch: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let dispatch: Dispatch =
            serde_json::from_slice(&body).map_err(|e| format!("dispatch answer: {e}"))?;
        if dispatch.rooms.is_empty() {
            return Err("dispatch: no rooms".into());
        }
        Ok(dispatch.rooms)
    }

    /// Connects to the first room that answers and authenticates.
    async fn connect(&mut self) -> Result<(Conn, String, String, u32), Next> {
        match self.try_connect().await {
            Ok(connected) => Ok(connected),
            Err(None) => Err(Next::Stop),
            Err(Some(reason)) => Err(Next::Retry(self.backoff(), reason)),
        }
    }

    /// `Err(None)`: refused for good; `Err(Some(reason))`: try again later.
    async fn try_connect(&mut self) -> Result<(Conn, String, String, u32), Option<String>> {
        self.forget_old_failures();
        self.fresh_token().await.map_err(Some)?;
        let rooms = self.dispatch().await.map_err(Some)?;
        // An address that has not failed lately first; when every one has (the only room
        // restarting, say), the one that failed longest ago, again — after the backoff,
        // never giving up.
        let room = rooms
            .iter()
            .find(|r| !self.has_failed(&self.address(r)))
            .or_else(|| {
                rooms.iter().min_by_key(|r| {
                    let address = self.address(r);
                    self.failed
                        .iter()
                        .find(|(a, _)| *a == address)
                        .map(|(_, at)| *at)
                })
            })
            .expect("a dispatch answer lists at least one room");
        let address = self.address(room);
        let name = room.name.clone();
        let tcp_tls = room.tcp_tls;
        let connected = tokio::time::timeout(Duration::from_secs(10), async {
            let max = self.config.max_frame_bytes;
            match self.config.transport {
                Transport::Tcp if tcp_tls => match &self.push_tls {
                    Some(tls) => Conn::tcp(&address, Some(tls), max).await,
                    None => Err(ClientError::Tls(
                        "the room speaks TLS: set ClientConfig::tls".into(),
                    )),
                },
                Transport::Tcp => Conn::tcp(&address, None, max).await,
                Transport::WebSocket => Conn::ws(&address, self.ws_tls.as_ref(), max).await,
                Transport::Sse => Conn::sse(&address, self.config.tls.as_ref(), max),
            }
        })
        .await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(Some(self.failed_at(address, e.to_string()))),
            Err(_) => return Err(Some(self.failed_at(address, "connect timed out".into()))),
        };
        let auth = PushMessage::Auth(Auth {
            uid: self.config.uid.clone(),
            device: self.config.device.clone(),
            net: self.config.net,
            token: current(&self.token),
            apps: self.config.apps.clone(),
        });
        let seq = self.next_seq();
        if let Err(e) = conn.send(seq, &auth).await {
            return Err(Some(self.failed_at(address, e.to_string())));
        }
        let reply = tokio::time::timeout(Duration::from_secs(10), conn.recv()).await;
        match reply {
            Ok(Ok(Some(messages))) => match messages.into_iter().next() {
                Some((_, PushMessage::AuthReply(r))) if r.ok => {
                    if self.refusals > 0 {
                        self.refusals = 0;
                        let expires_at = refresh::expiry(&current(&self.token));
                        let _ = self.events.send(Event::TokenRefreshed { expires_at }).await;
                    }
                    Ok((conn, name, address, r.heartbeat_secs))
                }
                Some((_, PushMessage::AuthReply(r))) => {
                    let reason = r.reason.unwrap_or_else(|| "refused".into());
                    self.refused(reason).await
                }
                other => Err(Some(
                    self.failed_at(address, format!("expected auth_reply, got {other:?}")),
                )),
            },
            Ok(Ok(None)) => Err(Some(self.failed_at(address, "closed during auth".into()))),
            Ok(Err(e)) => Err(Some(self.failed_at(address, e.to_string()))),
            Err(_) => Err(Some(self.failed_at(address, "auth timed out".into()))),
        }
    }

    /// The room refused the AUTH. A bad or expired token does not get better by retrying:
    /// with a [`TokenSource`] the client tries once more with a new token, then stops.
    async fn refused(
        &mut self,
        reason: String,
    ) -> Result<(Conn, String, String, u32), Option<String>> {
        self.refusals += 1;
        if let Some(source) = self.config.refresh.clone().filter(|_| self.refusals == 1) {
            match Self::fetch_token(source).await {
                Ok(token) => {
                    self.set_token(token);
                    self.failures = 0;
                    return Err(Some(format!("refused ({reason}); again with a new token")));
                }
                Err(e) => {
                    // The backend may be down or swamped (every client refused at once
                    // after a secret rotation): ask it again after the backoff.
                    self.refusals = 0;
                    let _ = self.events.send(Event::RefreshFailed(e.clone())).await;
                    return Err(Some(format!("refused ({reason}); no new token: {e}")));
                }
            }
        }
        let _ = self.events.send(Event::Refused(reason)).await;
        Err(None)
    }

    /// Adds `apps` to those the next AUTH names.
    fn subscribe_apps(&mut self, apps: Vec<String>) {
        for app in apps {
            if !self.config.apps.contains(&app) {
                self.config.apps.push(app);
            }
        }
    }

    fn address(&self, room: &RoomAddress) -> String {
        match self.config.transport {
            Transport::Tcp => room.tcp.clone(),
            Transport::WebSocket | Transport::Sse => room.ws.clone(),
        }
    }

    /// Records a failed address: the next dispatch names it, so it goes last.
    fn failed_at(&mut self, address: String, reason: String) -> String {
        let text = format!("{address}: {reason}");
        self.failed.retain(|(a, _)| *a != address);
        self.failed.push((address, Instant::now()));
        self.rooms.remove(&self.config.net);
        text
    }

    fn has_failed(&self, address: &str) -> bool {
        self.failed.iter().any(|(a, _)| a == address)
    }

    /// A failure older than [`FORGET_FAILURES_AFTER`] no longer counts: the room may be
    /// back, and the dispatcher may list it first again.
    fn forget_old_failures(&mut self) {
        self.failed
            .retain(|(_, at)| at.elapsed() < FORGET_FAILURES_AFTER);
    }

    /// One authenticated session, until it ends.
    async fn session(
        &mut self,
        (mut conn, room, address, heartbeat_secs): (Conn, String, String, u32),
    ) -> Next {
        self.failures = 0;
        self.failed.clear();
        self.schedule_refresh();
        let connected = Event::Connected {
            room,
            address: address.clone(),
            heartbeat_secs,
        };
        if self.events.send(connected).await.is_err() {
            return Next::Stop;
        }
        let interval = Duration::from_secs(u64::from(heartbeat_secs.max(1)));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + interval, interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut waiting: HashMap<u32, oneshot::Sender<Result<UpstreamReply, ClientError>>> =
            HashMap::new();
        // The token source's call in progress: the session goes on while it runs.
        let mut fetching: Option<AbortOnDrop<Result<String, String>>> = None;
        // One timer for the session, moved when the refresh time changes (not a new one
        // per message received).
        let refresh_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(refresh_timer);
        let mut timer_at = None;
        let end = loop {
            if self.refresh_at != timer_at {
                timer_at = self.refresh_at;
                if let Some(at) = timer_at {
                    refresh_timer.as_mut().reset(at);
                }
            }
            let refresh_armed =
                self.refresh_at.is_some() && fetching.is_none() && self.refresh_sent.is_none();
            tokio::select! {
                () = &mut refresh_timer, if refresh_armed => {
                    self.refresh_at = None;
                    if let Some(source) = self.config.refresh.clone() {
                        fetching = Some(AbortOnDrop(tokio::spawn(Self::fetch_token(source))));
                    }
                }
                fetched = async { (&mut fetching.as_mut().expect("guarded by is_some").0).await }, if fetching.is_some() => {
                    fetching = None;
                    let token = match fetched {
                        Ok(result) => result,
                        Err(e) => Err(format!("the token source failed: {e}")),
                    };
                    match token {
                        Ok(token) => {
                            let seq = self.next_seq();
                            let refresh = PushMessage::Refresh(Refresh { token: token.clone() });
                            if let Err(e) = conn.send(seq, &refresh).await {
                                break Next::Retry(self.backoff(), e.to_string());
                            }
                            self.refresh_sent = Some((seq, token));
                        }
                        Err(e) => {
                            self.refresh_at = Some(Instant::now() + REFRESH_RETRY);
                            if self.events.send(Event::RefreshFailed(e)).await.is_err() {
                                break Next::Stop;
                            }
                        }
                    }
                }
                _ = heartbeat.tick() => {
                    // The room drops a client silent for two intervals; the client gives
                    // up on a room silent for as long.
                    if last_heard.elapsed() > 2 * interval + Duration::from_secs(1) {
                        break Next::Retry(self.backoff(), "the room stopped answering heartbeats".into());
                    }
                    let seq = self.next_seq();
                    if let Err(e) = conn.send(seq, &PushMessage::Heartbeat).await {
                        break Next::Retry(self.backoff(), e.to_string());
                    }
                }
                received = conn.recv() => {
                    let messages = match received {
                        Ok(Some(messages)) => messages,
                        Ok(None) => break Next::Retry(self.backoff(), format!("{address} closed the connection")),
                        Err(e) => break Next::Retry(self.backoff(), e.to_string()),
                    };
                    last_heard = Instant::now();
                    let mut acks = Vec::new();
                    let mut end = None;
                    for (seq, message) in messages {
                        match self.on_message(seq, message, &mut acks, &mut waiting).await {
                            Ok(()) => {}
                            Err(next) => {
                                end = Some(next);
                                break;
                            }
                        }
                    }
                    if !acks.is_empty() {
                        let seq = self.next_seq();
                        if let Err(e) = conn.send(seq, &PushMessage::Ack(Ack { ids: acks })).await {
                            break Next::Retry(self.backoff(), e.to_string());
                        }
                    }
                    if let Some(next) = end {
                        break next;
                    }
                }
                command = self.commands.recv() => {
                    let sent = match command {
                        None => break Next::Stop,
                        Some(Command::Ack(ids)) => conn.send(self.next_seq(), &PushMessage::Ack(Ack { ids })).await,
                        Some(Command::Subscribe(apps)) => {
                            self.subscribe_apps(apps.clone());
                            conn.send(self.next_seq(), &PushMessage::Subscribe(Subscribe { apps })).await
                        }
                        Some(Command::Unsubscribe(apps)) => {
                            self.config.apps.retain(|a| !apps.contains(a));
                            conn.send(self.next_seq(), &PushMessage::Unsubscribe(Subscribe { apps })).await
                        }
                        Some(Command::Upstream(upstream, reply)) => {
                            if waiting.len() >= 256 {
                                let _ = reply.send(Err(ClientError::Protocol("more than 256 upstream requests waiting".into())));
                                Ok(())
                            } else {
                                let seq = self.next_seq();
                                waiting.insert(seq, reply);
                                conn.send(seq, &PushMessage::Upstream(upstream)).await
                            }
                        }
                        Some(Command::SetNet(net)) => {
                            if net == self.config.net {
                                Ok(())
                            } else {
                                // A new network: new rooms, a new heartbeat.
                                self.config.net = net;
                                break Next::Retry(Duration::ZERO, format!("network changed to {net}"));
                            }
                        }
                    };
                    if let Err(e) = sent {
                        break Next::Retry(self.backoff(), e.to_string());
                    }
                }
            }
        };
        for (_, reply) in waiting.drain() {
            let _ = reply.send(Err(ClientError::ConnectionLost));
        }
        drop(fetching);
        self.refresh_sent = None;
        self.refresh_at = None;
        end
    }

    async fn on_message(
        &mut self,
        seq: u32,
        message: PushMessage,
        acks: &mut Vec<u64>,
        waiting: &mut HashMap<u32, oneshot::Sender<Result<UpstreamReply, ClientError>>>,
    ) -> Result<(), Next> {
        let event = match message {
            PushMessage::Message(m) => {
                let stored = m.mode != longlink_codec::push::DeliveryMode::AtMostOnce;
                if stored && self.config.auto_ack {
                    acks.push(m.id);
                }
                if self.dedup.first_time(m.id) {
                    Event::Message(m)
                } else {
                    Event::Duplicate(m.id)
                }
            }
            PushMessage::HeartbeatReply => return Ok(()),
            PushMessage::AuthReply(r) => match self.refresh_sent.take() {
                // The answer to our REFRESH carries its seq.
                Some((sent, token)) if sent == seq && r.ok => {
                    let expires_at = refresh::expiry(&token);
                    self.set_token(token);
                    self.schedule_refresh();
                    Event::TokenRefreshed { expires_at }
                }
                Some((sent, _)) if sent == seq => {
                    self.refresh_at = Some(Instant::now() + REFRESH_RETRY);
                    Event::RefreshFailed(format!(
                        "the room refused the new token: {}",
                        r.reason.unwrap_or_else(|| "refused".into())
                    ))
                }
                other => {
                    self.refresh_sent = other;
                    return Ok(());
                }
            },
            PushMessage::UpstreamReply(r) => {
                // The reply carries the request's seq.
                if let Some(reply) = waiting.remove(&seq) {
                    let _ = reply.send(Ok(r));
                }
                return Ok(());
            }
            PushMessage::Kick(k) => {
                let _ = self.events.send(Event::Kicked(k.reason)).await;
                return Err(Next::Stop);
            }
            PushMessage::Reconnect(r) => {
                self.rooms.clear();
                return Err(Next::Retry(
                    Duration::from_millis(u64::from(r.after_ms)),
                    format!("the room asked to reconnect: {}", r.reason),
                ));
            }
            PushMessage::Error(e) => Event::Error(e),
            other => {
                return Err(Next::Retry(
                    self.backoff(),
                    format!("the room sent {}", other.op()),
                ));
            }
        };
        if self.events.send(event).await.is_err() {
            return Err(Next::Stop);
        }
        Ok(())
    }
}
