//! Every service in one process: the `all` subcommand, and what end-to-end tests start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use longlink_pool::db::Db;

use crate::center::{AppConfig, CenterState, DevPage};
use crate::config::{Config, ConfigError, load_or_generate};
use crate::coordinator::{AppHooks, Coordinator};
use crate::dispatcher::{Dispatcher, RoomAddress};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::register::MemoryRegister;
use crate::room::Room;
use crate::saver::SqlSaver;
use crate::token::Tokens;

/// Why the system did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The message store.
    #[error("message store: {0}")]
    Store(#[from] crate::PushError),
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
}

/// Secrets generated on this start (to print once).
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// The token secret, if generated now.
    pub token_secret: Option<String>,
    /// The demo app's API key, if generated now.
    pub api_key: Option<String>,
}

/// Fills in what `config` leaves to be generated (the token secret, a demo app with its
/// key, both kept under the data dir), checks it, and returns the secret and what was
/// generated now. Every service process of a cluster on one machine calls it on the same
/// data dir, so they share the secret and the key.
pub fn prepare(config: &mut Config) -> Result<(String, Generated), StartError> {
    let mut generated = Generated::default();
    let secret = match config.token_secret.clone() {
        Some(s) => s,
        None => {
            let (s, new) = load_or_generate(&config.data_dir.join("token-secret"))?;
            if new {
                generated.token_secret = Some(s.clone());
            }
            s
        }
    };
    if config.apps.is_empty() {
        let (key, new) = load_or_generate(&config.data_dir.join("demo-api-key"))?;
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
    Ok((secret, generated))
}

/// A running system.
#[derive(Debug)]
pub struct System {
    /// The center's address (API, dispatcher, page).
    pub http: SocketAddr,
    /// The room's WebSocket address.
    pub ws: SocketAddr,
    /// The room's raw TCP address.
    pub tcp: SocketAddr,
    /// The apps, with their keys.
    pub apps: Vec<AppConfig>,
    /// Issues tokens clients can use.
    pub tokens: Tokens,
    /// What this start generated.
    pub generated: Generated,
    /// The hub.
    pub hub: Arc<Hub>,
    /// The room.
    pub room: Room,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    db: Db,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl System {
    /// Starts every service on `config`: opens the store (SQLite under the data dir by
    /// default), binds the room and the center, and starts the TTL sweep.
    pub async fn start(mut config: Config) -> Result<System, StartError> {
        let (secret, generated) = prepare(&mut config)?;
        let tokens = Tokens::new(secret.as_bytes());
        let metrics = Arc::new(Metrics::default());
        let db = Db::builder()
            .max_open(config.database_max_open.max(1))
            .max_idle(config.database_max_open.max(1))
            .open(&config.database_dsn())
            .map_err(crate::PushError::from)?;
        let saver = Arc::new(SqlSaver::open(db.clone()).await?);
        let webhooks = config
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
        let coordinator = Coordinator::new(webhooks, Arc::clone(&metrics));
        let hub = Hub::new(
            Arc::new(MemoryRegister::default()),
            saver,
            Arc::new(coordinator),
            config.hub.to_hub_config(),
            Arc::clone(&metrics),
        )
        .await?;
        let room_config = config.room.to_room_config();
        let room = Room::new(
            room_config.clone(),
            tokens.clone(),
            Arc::clone(&hub) as Arc<dyn crate::room::RoomEvents>,
            Arc::clone(&metrics),
        );
        hub.attach_room(room.clone());
        let addrs = room.start().await.map_err(|source| StartError::Bind {
            what: "the room",
            addr: room_config.ws_listen,
            source,
        })?;
        let host = config
            .public_host
            .clone()
            .unwrap_or_else(|| addrs.ws.ip().to_string());
        let dispatcher = Dispatcher::new(
            vec![RoomAddress {
                name: room.name().to_owned(),
                ws: format!("ws://{host}:{}/", addrs.ws.port()),
                tcp: format!("{host}:{}", addrs.tcp.port()),
            }],
            config.room.heartbeats.clone(),
        );
        let mut state = CenterState::new(
            Arc::clone(&hub),
            &config.apps,
            tokens.clone(),
            Arc::new(dispatcher),
            Arc::clone(&metrics),
        )
        .with_db(db.clone())
        .with_room(room.clone());
        if config.dev_page {
            if !config.http_listen.ip().is_loopback() {
                tracing::warn!(
                    "the development page is on and the center listens beyond loopback: \
                     anyone who reaches it gets the API key"
                );
            }
            state = state.with_dev_page(DevPage {
                app: config.apps[0].clone(),
                token_ttl: Duration::from_secs(24 * 3600),
            });
        }
        let router = crate::center::router(Arc::new(state), config.max_request_bytes);
        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| StartError::Bind {
                what: "the center",
                addr: config.http_listen,
                source,
            })?;
        let http = listener.local_addr().map_err(|source| StartError::Bind {
            what: "the center",
            addr: config.http_listen,
            source,
        })?;
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the center stopped");
            }
        }));
        let sweep_every = Duration::from_secs(config.sweep_interval_secs.max(1));
        let weak = Arc::downgrade(&hub);
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(sweep_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(hub) = weak.upgrade() else { return };
                if let Err(e) = hub.sweep().await {
                    tracing::warn!(error = %e, "expiry sweep failed");
                }
            }
        }));
        Ok(System {
            http,
            ws: addrs.ws,
            tcp: addrs.tcp,
            apps: config.apps,
            tokens,
            generated,
            hub,
            room,
            metrics,
            db,
            tasks,
        })
    }

    /// The message store's pool.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The center's base URL.
    pub fn center_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Tells clients to reconnect within `window` (spread out), gives them a moment to
    /// hear it, and stops the center and the store.
    pub async fn shutdown(self, window: Duration) {
        self.room.drain("server shutting down", window);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for task in &self.tasks {
            task.abort();
        }
        self.db.close();
    }
}
