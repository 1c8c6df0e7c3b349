//! One wiring per component, shared by every way of running it: `longlink-push all` calls
//! each of these with the in-process implementations of what the component depends on
//! ([`system`](crate::system)), a cluster process with the remote ones
//! ([`cluster::run`](crate::cluster::run)). Nothing is wired twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use longlink_pool::db::Db;

use crate::PushError;
use crate::center::{AppConfig, CenterParts, CenterState, DevPage};
use crate::config::{Config, ConfigError, load_or_generate};
use crate::coordinator::{AppHooks, Coordinator};
use crate::courier::{Courier, CourierParts};
use crate::dispatcher::Dispatcher;
use crate::metrics::{Metrics, Snapshot};
use crate::model::{IdGenerator, now_ms};
use crate::pusher::Pusher;
use crate::register::Register;
use crate::room::{Room, RoomAddrs};
use crate::rooms::{Directory, Fanout};
use crate::saver::{Saver, SqlSaver};
use crate::token::Tokens;

/// Why a component did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The message store, or a service it needs.
    #[error("message store: {0}")]
    Store(#[from] PushError),
    /// A listener could not bind.
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The token settings (`[tokens]`).
    #[error("tokens: {0}")]
    Tokens(#[from] crate::token::ConfigError),
}

/// The process's certificate (`[tls]`), watched for changes; `None` without `[tls]`.
pub fn tls(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<crate::tls::Certificates>>, StartError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let certs = crate::tls::Certificates::load(tls, Arc::clone(metrics))?;
    certs.watch(tls.reload_check);
    Ok(Some(certs))
}

/// The rustls config of the process's HTTPS listeners (center, dispatcher, metrics).
pub fn https(
    certs: Option<&Arc<crate::tls::Certificates>>,
) -> Result<Option<Arc<rustls::ServerConfig>>, StartError> {
    Ok(certs
        .map(|c| crate::tls::server_config(c, &[crate::tls::ALPN_HTTP1]))
        .transpose()?)
}

/// A bind error for `what` on `addr`.
pub fn bind_err(what: &'static str, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Bind { what, addr, source }
}

/// Secrets generated on this start (to print once).
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// The token secret, if generated now.
    pub token_secret: Option<crate::token::Secret>,
    /// The demo app's API key, if generated now.
    pub api_key: Option<crate::token::Secret>,
}

/// Fills in what `config` leaves to be generated (the token secret, a demo app with its
/// key, both kept under the data dir), checks it, and returns the tokens and what was
/// generated now. Every process of a cluster on one machine calls it on the same data dir,
/// so they share the secret and the key.
pub fn prepare(config: &mut Config) -> Result<(Tokens, Generated), StartError> {
    let mut generated = Generated::default();
    let secret = match config.token_secret.clone() {
        Some(s) => s,
        None => {
            let (s, new) = load_or_generate(&config.data_dir.join("token-secret"))?;
            let s = crate::token::Secret::from(s);
            if new {
                generated.token_secret = Some(s.clone());
            }
            s
        }
    };
    if config.apps.is_empty() {
        let (key, new) = load_or_generate(&config.data_dir.join("demo-api-key"))?;
        let key = crate::token::Secret::from(key);
        if new {
            generated.api_key = Some(key.clone());
        }
        config.apps.push(AppConfig {
            name: "demo".into(),
            api_key: key,
            webhook: None,
            upstream_routes: Default::default(),
        });
    }
    config.validate()?;
    if config.database.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ConfigError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    }
    Ok((Tokens::new(secret.as_bytes()), generated))
}

/// The message store: the pool on the configured DSN (SQLite under the data dir by
/// default) and its schema; the pool's counters go on the page of `metrics`. With `wait`,
/// a store that is not reachable yet is waited for (a cluster's saver starts before its
/// database); otherwise the error is returned.
pub async fn message_store(
    config: &Config,
    wait: bool,
    metrics: &Metrics,
) -> Result<(Db, SqlSaver), StartError> {
    let db = Db::builder()
        .max_open(config.database_max_open.max(1))
        .max_idle(config.database_max_open.max(1))
        .open(&config.database_dsn())
        .map_err(PushError::from)?;
    {
        let db = db.clone();
        metrics.add_family(Snapshot::new("db", move || db.stats().samples().to_vec()));
    }
    loop {
        match SqlSaver::open(db.clone()).await {
            Ok(saver) => return Ok((db, saver)),
            Err(e) if wait => {
                tracing::warn!(error = %e, "the message store is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The saver's sweep: every `every`, stored messages past their TTL are marked expired.
/// It stops when the last other reference to `saver` is gone.
pub fn sweep(saver: &Arc<dyn Saver>, every: Duration, metrics: Arc<Metrics>) {
    let weak = Arc::downgrade(saver);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(saver) = weak.upgrade() else { return };
            match saver.sweep(now_ms()).await {
                Ok(n) => crate::metrics::add(&metrics.expired, n),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
        }
    });
}

/// The coordinator, posting to the configured apps' webhooks.
pub fn coordinator(config: &Config, metrics: Arc<Metrics>) -> Coordinator {
    let webhooks: HashMap<String, AppHooks> = config
        .apps
        .iter()
        .map(|a| {
            let hooks = AppHooks {
                webhook: a.webhook.clone(),
                upstream: a.upstream_routes.clone().into_iter().collect(),
            };
            (a.name.clone(), hooks)
        })
        .collect();
    Coordinator::new(webhooks, metrics)
}

/// A started room: the gateway and its courier.
#[derive(Debug)]
pub struct RoomNode {
    /// The room.
    pub room: Room,
    /// Where it listens.
    pub addrs: RoomAddrs,
    /// What handles its events.
    pub courier: Arc<Courier>,
}

impl RoomNode {
    /// Where clients reach the room (with `public_host`, if set): its TLS listeners when
    /// it has them, the plaintext ones otherwise.
    pub fn client_addrs(&self, config: &Config) -> ClientAddrs {
        let a = &self.addrs;
        let (ws, tcp, tls) = match (a.wss, a.tls, a.ws, a.tcp) {
            (Some(ws), Some(tcp), ..) => (ws, tcp, true),
            (_, _, Some(ws), Some(tcp)) => (ws, tcp, false),
            _ => unreachable!("a started room listens somewhere"),
        };
        let host = config.public_host.clone().unwrap_or_else(|| match ws.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
        ClientAddrs {
            ws: format!("{}://{host}:{}/", if tls { "wss" } else { "ws" }, ws.port()),
            tcp: format!("{host}:{}", tcp.port()),
            tcp_tls: tls,
        }
    }
}

/// Where clients reach a room, as the dispatcher tells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddrs {
    /// The WebSocket URL (`ws://` or `wss://`).
    pub ws: String,
    /// The raw TCP `host:port`.
    pub tcp: String,
    /// `tcp` speaks TLS.
    pub tcp_tls: bool,
}

/// A room with its courier over `parts`, listening where the configuration says (its TLS
/// listeners serving `tls`).
pub async fn room(
    config: &Config,
    tokens: Tokens,
    parts: CourierParts,
    tls: Option<Arc<crate::tls::Certificates>>,
) -> Result<RoomNode, StartError> {
    let metrics = Arc::clone(&parts.metrics);
    let courier = Courier::start(parts);
    let verifier = crate::token::Verifier::new(tokens, &config.tokens)?;
    let room = Room::new(
        config.room.clone(),
        verifier,
        Arc::clone(&courier) as Arc<dyn crate::room::RoomEvents>,
        metrics,
    );
    let addrs = room
        .start_with(tls)
        .await
        .map_err(bind_err("the room", config.room.ws_listen))?;
    Ok(RoomNode {
        room,
        addrs,
        courier,
    })
}

/// What the center depends on.
#[derive(Debug)]
pub struct CenterDeps {
    /// Sessions and groups.
    pub register: Arc<dyn Register>,
    /// Messages.
    pub saver: Arc<dyn Saver>,
    /// The rooms.
    pub directory: Arc<dyn Directory>,
    /// The ids it issues.
    pub ids: Arc<IdGenerator>,
    /// The process's metrics (its page is served at `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Broadcast pacing shared with other centers (cluster); `None`: this center alone.
    pub pacing: Option<crate::pacing::SharedPacing>,
}

/// A started center: the HTTP API, the dispatcher's route and the push engine.
#[derive(Debug)]
pub struct CenterNode {
    /// The push engine.
    pub pusher: Arc<Pusher>,
    /// Where the API listens.
    pub http: SocketAddr,
    /// It speaks HTTPS.
    pub https: bool,
    /// The server's task: it ends once `stop` is cancelled and the requests in flight
    /// are answered.
    pub task: tokio::task::JoinHandle<()>,
    /// Stops taking connections and requests (a graceful stop).
    pub stop: tokio_util::sync::CancellationToken,
    /// Set before `stop`: `/healthz` answers 503 `draining` meanwhile.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// The center over `deps`, listening on `config.http_listen` (HTTPS with `tls`).
pub async fn center(
    config: &Config,
    tokens: Tokens,
    deps: CenterDeps,
    tls: Option<&Arc<crate::tls::Certificates>>,
) -> Result<CenterNode, StartError> {
    let https = https(tls)?;
    let https_on = https.is_some();
    let fanout = Fanout::new(
        Arc::clone(&deps.directory),
        Arc::clone(&deps.register),
        Arc::clone(&deps.metrics),
    );
    let mut pusher = Pusher::new(
        Arc::clone(&deps.register),
        Arc::clone(&deps.saver),
        fanout,
        deps.ids,
        config.push.clone(),
        Arc::clone(&deps.metrics),
    );
    if let Some(pacing) = deps.pacing {
        pusher = pusher.with_shared_pacing(pacing);
    }
    let pusher = Arc::new(pusher);
    let dispatcher = Dispatcher::new(
        deps.directory,
        Arc::clone(&deps.register),
        config.room.heartbeats.clone(),
    );
    let dev = config.dev_page.then(|| {
        if !config.http_listen.ip().is_loopback() {
            tracing::warn!(
                "the development page is on and the center listens beyond loopback: \
                 anyone who reaches it gets the API key"
            );
        }
        DevPage {
            app: config.apps[0].clone(),
            token_ttl: Duration::from_secs(24 * 3600),
        }
    });
    let pusher_metrics = Arc::clone(&deps.metrics);
    let state = CenterState::new(CenterParts {
        pusher: Arc::clone(&pusher),
        metrics: deps.metrics,
        register: deps.register,
        saver: deps.saver,
        dispatcher,
        apps: config.apps.clone(),
        tokens,
        dev,
    });
    let draining = state.draining();
    let router = crate::center::router(Arc::new(state), config.max_request_bytes);
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(bind_err("the center", config.http_listen))?;
    let http = listener
        .local_addr()
        .map_err(bind_err("the center", config.http_listen))?;
    let metrics = Arc::clone(&pusher_metrics);
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = crate::tls::https::serve(listener, router, https, metrics, stopped).await {
            tracing::error!(error = %e, "the center stopped");
        }
    });
    Ok(CenterNode {
        pusher,
        http,
        https: https_on,
        task,
        stop,
        draining,
    })
}
