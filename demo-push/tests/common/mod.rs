//! Helpers shared by the end-to-end tests: a system on ephemeral ports, an HTTP client, a
//! raw frame-level connection, and a client-library connection that waits for events.
#![allow(dead_code, unreachable_pub)]

pub mod cluster;
pub mod fleet;
pub mod netns;
pub mod proxy;
pub mod redis_cluster;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use longlink_codec::push::{Auth, Net, PushCodec, PushMessage};
use longlink_push::center::AppConfig;
use longlink_push::config::Config;
use longlink_push::room::Heartbeats;
use longlink_push::system::System;
use longlink_push::token::Tokens;
use longlink_push_client::{Client, ClientConfig, Event, Transport};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub const KEY: &str = "demo-key-0123456789abcdef";
pub const OTHER_KEY: &str = "other-key-0123456789abcdef";
/// Long enough for a loaded CI machine, short enough to fail fast.
pub const WAIT: Duration = Duration::from_secs(10);

/// A system on ephemeral ports under a temporary data dir, two apps (`demo`, `other`).
pub struct TestSystem {
    pub system: System,
    pub dir: tempfile::TempDir,
    http: Http,
    /// The CA a TLS system's certificate chains to.
    pub ca: Option<std::path::PathBuf>,
}

/// The tests' HTTP client: plain HTTP, or HTTPS trusting a test CA.
pub type Http = HttpClient<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// rustls client settings trusting the CA certificates in the PEM file `ca` (none: no
/// root at all).
pub fn trusting(ca: Option<&std::path::Path>) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        for cert in <rustls_pki_types::CertificateDer<'_> as rustls_pki_types::pem::PemObject>::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(longlink_push::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// An HTTP client for tests; HTTPS trusting `ca`.
pub fn http_client(ca: Option<&std::path::Path>) -> Http {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*trusting(ca)).clone())
        .https_or_http()
        .enable_http1()
        .build();
    HttpClient::builder(TokioExecutor::new()).build(connector)
}

impl TestSystem {
    /// The room's plaintext WebSocket address.
    pub fn ws(&self) -> SocketAddr {
        self.system
            .ws
            .expect("the plaintext WebSocket listener is on")
    }

    /// The room's plaintext TCP address.
    pub fn tcp(&self) -> SocketAddr {
        self.system.tcp.expect("the plaintext TCP listener is on")
    }
}

pub fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_owned(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    c.room.ws_listen = "127.0.0.1:0".parse().unwrap();
    c.room.tcp_listen = "127.0.0.1:0".parse().unwrap();
    c.room.tick = Duration::from_millis(50);
    c.room.heartbeats = Heartbeats {
        g2: 3,
        g3: 3,
        g4: 3,
        g5: 3,
        wifi: 3,
    };
    c.apps = vec![
        AppConfig {
            name: "demo".into(),
            api_key: KEY.into(),
            webhook: None,
            upstream_routes: Default::default(),
        },
        AppConfig {
            name: "other".into(),
            api_key: OTHER_KEY.into(),
            webhook: None,
            upstream_routes: Default::default(),
        },
    ];
    c
}

pub async fn start() -> TestSystem {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestSystem {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    tweak(&mut c);
    let ca = c
        .tls
        .as_ref()
        .map(|t| t.cert.parent().unwrap().join("ca.pem"))
        .filter(|ca| ca.exists());
    let system = System::start(c).await.expect("the system starts");
    TestSystem {
        system,
        dir,
        http: http_client(ca.as_deref()),
        ca,
    }
}

/// What every end-to-end scenario needs of a running system: the single process
/// ([`TestSystem`]) or a cluster of processes ([`cluster::TestCluster`]).
pub trait Harness: Sync {
    /// The center's base URL.
    fn center_url(&self) -> String;
    /// Issues tokens with the system's secret.
    fn tokens(&self) -> &Tokens;
    /// The HTTP client.
    fn http(&self) -> &Http;
    /// TLS settings for clients (trusting the system's CA), when it speaks TLS.
    fn client_tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        None
    }
    /// Tells the connections of `uid` to reconnect (the room drains).
    fn drain_user(&self, uid: &str) -> impl std::future::Future<Output = ()> + Send;
    /// A counter summed over the processes that count it.
    fn metric(&self, name: &str) -> impl std::future::Future<Output = u64> + Send;
    /// The transport its clients use (what [`Over`] sets).
    fn transport(&self) -> Transport {
        Transport::Tcp
    }

    fn token(&self, uid: &str) -> String {
        self.tokens().issue(uid, Duration::from_secs(600))
    }

    /// A client-library connection for `uid` with `tweak` applied to its config.
    fn client_with(&self, uid: &str, tweak: impl FnOnce(&mut ClientConfig)) -> Client {
        let mut c = ClientConfig::new(&self.center_url(), uid, &self.token(uid));
        c.backoff_min = Duration::from_millis(20);
        c.backoff_max = Duration::from_millis(200);
        c.tls = self.client_tls();
        c.transport = self.transport();
        tweak(&mut c);
        Client::start(c)
    }

    fn client(&self, uid: &str) -> Client {
        self.client_with(uid, |_| {})
    }

    /// A client that is online (its Connected event consumed).
    fn online(&self, uid: &str) -> impl std::future::Future<Output = Client> + Send {
        async move {
            let mut client = self.client(uid);
            connected(&mut client).await;
            client
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> impl std::future::Future<Output = (u16, Value)> + Send {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.center_url()));
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let http = self.http().clone();
        async move {
            let response = tokio::time::timeout(WAIT, http.request(req))
                .await
                .expect("the center answers")
                .unwrap();
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            (status, value)
        }
    }

    fn request_with_type(
        &self,
        method: &str,
        path: &str,
        key: &str,
        content_type: &str,
        body: &[u8],
    ) -> impl std::future::Future<Output = (u16, Value)> + Send {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.center_url()))
            .header("x-api-key", key)
            .header("content-type", content_type)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        let http = self.http().clone();
        async move {
            let response = http.request(req).await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }
    }

    fn post(
        &self,
        path: &str,
        key: &str,
        body: Value,
    ) -> impl std::future::Future<Output = (u16, Value)> + Send {
        self.request("POST", path, Some(key), Some(body.to_string().into_bytes()))
    }

    fn get(&self, path: &str, key: &str) -> impl std::future::Future<Output = (u16, Value)> + Send {
        self.request("GET", path, Some(key), None)
    }

    /// Pushes as `demo`, asserting success; returns the message id.
    fn push(&self, kind: &str, body: Value) -> impl std::future::Future<Output = u64> + Send {
        async move {
            let (status, answer) = self.post(&format!("/push/{kind}"), KEY, body).await;
            assert_eq!(status, 200, "{answer}");
            answer["id"].as_u64().unwrap()
        }
    }

    /// Waits until `uid`'s status for message `id` is `status`.
    fn wait_status(
        &self,
        id: u64,
        uid: &str,
        status: &str,
    ) -> impl std::future::Future<Output = Value> + Send {
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let (code, answer) = self.get(&format!("/messages/{id}"), KEY).await;
                assert_eq!(code, 200, "{answer}");
                let recipient = answer["recipients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["uid"] == uid)
                    .cloned()
                    .unwrap_or(Value::Null);
                if recipient["status"] == status {
                    return recipient;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "message {id} for {uid} never became {status}: {answer}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Waits until message `id` was sent to `uid` at least `n` times (whatever its status).
    fn wait_attempts(
        &self,
        id: u64,
        uid: &str,
        n: u64,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let (_, answer) = self.get(&format!("/messages/{id}"), KEY).await;
                let attempts = answer["recipients"]
                    .as_array()
                    .and_then(|r| r.iter().find(|r| r["uid"] == uid))
                    .and_then(|r| r["attempts"].as_u64())
                    .unwrap_or(0);
                if attempts >= n {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "message {id} was never sent {n} times to {uid}: {answer}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Waits until `uid` has `n` sessions in `demo`.
    fn wait_sessions(&self, uid: &str, n: usize) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let (_, answer) = self.get(&format!("/users/{uid}"), KEY).await;
                if answer["sessions"].as_array().map(Vec::len) == Some(n) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{uid} never had {n} sessions: {answer}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Starts a system for a scenario: [`Single`] (one process) or [`Cluster`] (processes).
pub trait Starter {
    type System: Harness + Send + Sync;
    fn start_with(
        tweak: impl FnOnce(&mut Config) + Send,
    ) -> impl std::future::Future<Output = Self::System> + Send;
    fn start() -> impl std::future::Future<Output = Self::System> + Send {
        Self::start_with(|_| {})
    }
}

/// The single process.
pub struct Single;

impl Starter for Single {
    type System = TestSystem;
    async fn start_with(tweak: impl FnOnce(&mut Config) + Send) -> TestSystem {
        start_with(tweak).await
    }
}

/// A 2-room cluster of processes.
pub struct Cluster;

impl Starter for Cluster {
    type System = cluster::TestCluster;
    async fn start_with(tweak: impl FnOnce(&mut Config) + Send) -> cluster::TestCluster {
        cluster::start_with(tweak).await
    }
}

/// A system whose clients use `transport` (the scenarios' systems are [`Over`] one).
pub struct Over<H> {
    pub inner: H,
    pub transport: Transport,
}

impl<H> std::ops::Deref for Over<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.inner
    }
}

impl<H: Harness + Send> Harness for Over<H> {
    fn center_url(&self) -> String {
        self.inner.center_url()
    }
    fn tokens(&self) -> &Tokens {
        self.inner.tokens()
    }
    fn http(&self) -> &Http {
        self.inner.http()
    }
    fn client_tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.inner.client_tls()
    }
    fn drain_user(&self, uid: &str) -> impl std::future::Future<Output = ()> + Send {
        self.inner.drain_user(uid)
    }
    fn metric(&self, name: &str) -> impl std::future::Future<Output = u64> + Send {
        self.inner.metric(name)
    }
    fn transport(&self) -> Transport {
        self.transport
    }
}

/// [`Single`] or [`Cluster`] (`S`) whose clients use the SSE fallback.
pub struct Sse<S>(std::marker::PhantomData<S>);

impl<S: Starter> Starter for Sse<S>
where
    S::System: Send,
{
    type System = Over<S::System>;
    async fn start_with(tweak: impl FnOnce(&mut Config) + Send) -> Over<S::System> {
        Over {
            inner: S::start_with(tweak).await,
            transport: Transport::Sse,
        }
    }
}

/// Runs each named scenario (`async fn name<S: Starter>()`) against the single process
/// (module `single_process`) and against a cluster (module `cluster`).
#[allow(unused_macros)]
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod single_process {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name::<super::common::Single>().await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name::<super::common::Cluster>().await
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_modes;

/// [`both_modes!`] over the transport the clients use by default (TCP), and again over
/// the SSE fallback (modules `single_process_sse`, `cluster_sse`): one scenario body, every
/// transport.
#[allow(unused_macros)]
macro_rules! every_transport {
    ($($name:ident),* $(,)?) => {
        $crate::common::both_modes! { $($name),* }
        mod single_process_sse {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name::<super::common::Sse<super::common::Single>>().await
                }
            )*
        }
        mod cluster_sse {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name::<super::common::Sse<super::common::Cluster>>().await
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use every_transport;

/// One value of a Prometheus text page.
pub fn metric_in(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(|v| v.trim().parse().unwrap())
}

impl Harness for TestSystem {
    fn center_url(&self) -> String {
        self.system.center_url()
    }

    fn tokens(&self) -> &Tokens {
        &self.system.tokens
    }

    fn http(&self) -> &Http {
        &self.http
    }

    fn client_tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.ca.as_deref().map(|ca| trusting(Some(ca)))
    }

    async fn drain_user(&self, _uid: &str) {
        // The only room: its clients come back to it (a drained room refuses new SSE
        // sessions with 503, as it should before it exits).
        self.system
            .room
            .reconnect_all("test", Duration::from_millis(10));
    }

    async fn metric(&self, name: &str) -> u64 {
        let (_, text) = self.request("GET", "/metrics", None, None).await;
        metric_in(text.as_str().unwrap(), name).unwrap_or_else(|| panic!("no metric {name}"))
    }
}

/// The next event, or a panic after [`WAIT`].
pub async fn event(client: &mut Client) -> Event {
    tokio::time::timeout(WAIT, client.next_event())
        .await
        .expect("an event in time")
        .expect("the client is running")
}

pub async fn connected(client: &mut Client) {
    match event(client).await {
        Event::Connected { .. } => {}
        other => panic!("expected Connected, got {other:?}"),
    }
}

/// The next message (skipping duplicates and reconnects): (id, body).
pub async fn message(client: &mut Client) -> (u64, String) {
    loop {
        match event(client).await {
            Event::Message(m) => {
                return (m.id, m.body.as_str().unwrap_or_default().to_owned());
            }
            Event::Duplicate(_) | Event::Connected { .. } | Event::Disconnected { .. } => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Asserts nothing but heartbeat noise arrives for `d`.
pub async fn quiet(client: &mut Client, d: Duration) {
    if let Ok(Some(event)) = tokio::time::timeout(d, client.next_event()).await {
        panic!("expected nothing, got {event:?}");
    }
}

/// A frame-level connection to the room's TCP port (or its TCP+TLS port).
pub struct Raw<S = TcpStream> {
    pub framed: Framed<S, PushCodec>,
}

/// The TCP+TLS port's stream as a test client holds it.
pub type TlsRaw = Raw<tokio_rustls::client::TlsStream<TcpStream>>;

impl TlsRaw {
    /// A TLS connection to `addr` checking the certificate for `name`, offering ALPN
    /// `longlink-push`.
    pub async fn tls(
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<TlsRaw, std::io::Error> {
        let mut config = (*config).clone();
        config.alpn_protocols = vec![longlink_push::tls::ALPN_PUSH.to_vec()];
        let stream = TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, stream)
            .await?;
        Ok(Raw {
            framed: Framed::new(tls, PushCodec::new().max_frame_bytes(1 << 20)),
        })
    }
}

impl TlsRaw {
    /// Whether this connection's handshake was full or resumed.
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        self.framed.get_ref().get_ref().1.handshake_kind()
    }
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw::connect_from(addr, "127.0.0.1").await
    }

    pub async fn connect_from(addr: SocketAddr, source: &str) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        Raw {
            framed: Framed::new(stream, PushCodec::new().max_frame_bytes(1 << 20)),
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Raw<S> {
    pub async fn send(&mut self, message: &PushMessage) {
        self.framed
            .send(message.to_frame(1).unwrap())
            .await
            .unwrap();
    }

    pub async fn auth(&mut self, uid: &str, token: &str) -> PushMessage {
        self.send(&PushMessage::Auth(Auth {
            uid: uid.into(),
            device: "raw".into(),
            net: Net::Wifi,
            token: token.into(),
            apps: vec!["demo".into()],
        }))
        .await;
        self.recv().await.expect("an auth reply")
    }

    /// The next message; `None` when the room closed the connection.
    pub async fn recv(&mut self) -> Option<PushMessage> {
        match tokio::time::timeout(WAIT, self.framed.next())
            .await
            .expect("the room answers or closes in time")
        {
            Some(Ok(frame)) => Some(PushMessage::from_frame(&frame).unwrap()),
            Some(Err(_)) | None => None,
        }
    }

    /// Reads until the room closes the connection; returns what came before.
    pub async fn until_closed(&mut self) -> Vec<PushMessage> {
        let mut got = Vec::new();
        while let Some(m) = self.recv().await {
            got.push(m);
        }
        got
    }
}

/// Deletes the keys of the machine's Redis (database 0) that start with `prefix`: what a
/// test left under its own prefix.
pub async fn delete_redis_keys(prefix: &str) {
    let client = redis::Client::open("redis://127.0.0.1:6379/0").expect("a Redis URL");
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}
