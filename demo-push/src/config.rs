//! Configuration: defaults that just work, overridden by a TOML file, then by environment
//! variables and flags (the binary's `--help` lists them).
//!
//! ```toml
//! data_dir = "./longlink-data"
//! http_listen = "127.0.0.1:7800"
//! # database = "mysql://root@127.0.0.1:3306/test"   # default: SQLite under data_dir
//!
//! [[apps]]
//! name = "demo"
//! api_key = "change-me"
//! webhook = "http://127.0.0.1:9000/hook"
//! upstream_routes = { orders = "http://127.0.0.1:9001/orders" }   # by (app, type)
//!
//! [room]
//! ws_listen = "127.0.0.1:7801"
//! tcp_listen = "127.0.0.1:7802"
//! heartbeats = { 2g = 300, 3g = 300, 4g = 360, 5g = 360, wifi = 480 }
//!
//! [hub]
//! max_attempts = 5
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::center::AppConfig;
use crate::hub::HubConfig;
use crate::room::{Heartbeats, RoomConfig};

/// The whole system's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the SQLite store, the generated secret and the generated API key live.
    pub data_dir: PathBuf,
    /// The center's (HTTP API, dispatcher, page) listen address.
    pub http_listen: SocketAddr,
    /// The host clients use to reach the rooms (default: the rooms' listen IP).
    pub public_host: Option<String>,
    /// The message store's DSN (default: `sqlite://<data_dir>/push.db`).
    pub database: Option<String>,
    /// Most connections to the message store.
    pub database_max_open: usize,
    /// The token secret (default: generated once and kept in `<data_dir>/token-secret`).
    pub token_secret: Option<String>,
    /// Apps and their API keys (default: one app `demo` with a key generated once and kept
    /// in `<data_dir>/demo-api-key`).
    pub apps: Vec<AppConfig>,
    /// Serve the development web page at `/` (it hands out the first app's API key and
    /// user tokens: keep it off where others can reach the center).
    pub dev_page: bool,
    /// How often stored messages past their TTL are marked expired, in seconds.
    pub sweep_interval_secs: u64,
    /// Largest request body the center reads.
    pub max_request_bytes: usize,
    /// The room.
    pub room: RoomSection,
    /// Push behaviour.
    pub hub: HubSection,
    /// The cluster mode (each service its own process).
    pub cluster: ClusterSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./longlink-data"),
            http_listen: "127.0.0.1:7800".parse().expect("an address"),
            public_host: None,
            database: None,
            database_max_open: 8,
            token_secret: None,
            apps: Vec::new(),
            dev_page: true,
            sweep_interval_secs: 60,
            max_request_bytes: 256 * 1024,
            room: RoomSection::default(),
            hub: HubSection::default(),
            cluster: ClusterSection::default(),
        }
    }
}

/// How the services of a cluster find each other and their stores.
///
/// ```toml
/// [cluster]
/// redis = "redis://127.0.0.1:6379/0"
/// register = ["10.0.0.5:7810", "10.0.0.6:7810"]
/// saver = "10.0.0.5:7811"
/// coordinator = "10.0.0.5:7812"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Redis (register, membership, the saver's hot pending state).
    pub redis: String,
    /// Prefix of every Redis key (several clusters can share one Redis).
    pub redis_prefix: String,
    /// Register services' RPC addresses (any of them answers).
    pub register: Vec<String>,
    /// The saver service's RPC address.
    pub saver: String,
    /// The coordinator service's RPC address.
    pub coordinator: String,
    /// Where this process's RPC server listens (register, saver, coordinator, room).
    pub rpc_listen: SocketAddr,
    /// The address others reach this process's RPC server at (default: `rpc_listen`).
    pub rpc_public: Option<String>,
    /// The dispatcher service's HTTP listen address.
    pub dispatcher_listen: SocketAddr,
    /// How internal calls travel: `multiplexed`, `pooled` or `short`.
    pub rpc_strategy: String,
    /// Deadline of an internal call, in milliseconds.
    pub rpc_timeout_ms: u64,
    /// Calls in flight to one service before more are refused at once (overload).
    pub rpc_max_in_flight: usize,
    /// A register session lives this long unless its room refreshes it.
    pub session_ttl_secs: u64,
    /// How often a room checks whether the register lost its state (and re-flushes).
    pub epoch_check_ms: u64,
    /// After the register lost its state, lookups also ask every room this long.
    pub settle_ms: u64,
    /// How often a room announces itself.
    pub announce_ms: u64,
    /// A room not heard from for this long leaves routing.
    pub room_ttl_ms: u64,
    /// A disconnected session waits this long for a quick reconnect to the same room.
    pub grace_ms: u64,
    /// A draining room spreads its clients' reconnects over this window.
    pub drain_window_ms: u64,
    /// Connections a room takes before the dispatcher stops sending users to it.
    pub room_capacity: usize,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            redis: "redis://127.0.0.1:6379/0".into(),
            redis_prefix: "llpush:".into(),
            register: vec!["127.0.0.1:7810".into()],
            saver: "127.0.0.1:7811".into(),
            coordinator: "127.0.0.1:7812".into(),
            rpc_listen: "127.0.0.1:7813".parse().expect("an address"),
            rpc_public: None,
            dispatcher_listen: "127.0.0.1:7809".parse().expect("an address"),
            rpc_strategy: "multiplexed".into(),
            rpc_timeout_ms: 2000,
            rpc_max_in_flight: 4096,
            session_ttl_secs: 90,
            epoch_check_ms: 1000,
            settle_ms: 5000,
            announce_ms: 1000,
            room_ttl_ms: 3500,
            grace_ms: 10_000,
            drain_window_ms: 10_000,
            room_capacity: 19_000,
        }
    }
}

impl ClusterSection {
    /// The RPC strategy, checked.
    pub fn strategy(&self) -> Result<longlink_rpc::Strategy, ConfigError> {
        match self.rpc_strategy.as_str() {
            "multiplexed" => Ok(longlink_rpc::Strategy::Multiplexed { conns: 1 }),
            "pooled" => Ok(longlink_rpc::Strategy::Pooled { max_conns: 64 }),
            "short" => Ok(longlink_rpc::Strategy::Short),
            other => Err(ConfigError::Invalid(format!(
                "cluster.rpc_strategy must be multiplexed, pooled or short, not {other:?}"
            ))),
        }
    }

    /// The address others reach this process's RPC server at.
    pub fn rpc_public(&self) -> String {
        self.rpc_public
            .clone()
            .unwrap_or_else(|| self.rpc_listen.to_string())
    }
}

/// The room's settings, as configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomSection {
    /// The room's name.
    pub name: String,
    /// WebSocket listen address.
    pub ws_listen: SocketAddr,
    /// Raw TCP listen address.
    pub tcp_listen: SocketAddr,
    /// Heartbeat intervals by network type, in seconds.
    pub heartbeats: Heartbeats,
    /// Seconds a new connection has to AUTH.
    pub auth_timeout_secs: u64,
    /// Connections per client IP.
    pub max_conns_per_ip: usize,
    /// Messages queued per connection before it counts as too slow.
    pub send_queue: usize,
    /// Largest frame a client may send.
    pub max_frame_bytes: usize,
    /// The heartbeat wheel's tick, in milliseconds.
    pub tick_ms: u64,
}

impl Default for RoomSection {
    fn default() -> Self {
        let d = RoomConfig::default();
        RoomSection {
            name: d.name,
            ws_listen: d.ws_listen,
            tcp_listen: d.tcp_listen,
            heartbeats: d.heartbeats,
            auth_timeout_secs: d.auth_timeout.as_secs(),
            max_conns_per_ip: d.max_conns_per_ip,
            send_queue: d.send_queue,
            max_frame_bytes: d.max_frame_bytes,
            tick_ms: d.tick.as_millis() as u64,
        }
    }
}

impl RoomSection {
    /// As the room takes it.
    pub fn to_room_config(&self) -> RoomConfig {
        RoomConfig {
            name: self.name.clone(),
            ws_listen: self.ws_listen,
            tcp_listen: self.tcp_listen,
            heartbeats: self.heartbeats.clone(),
            auth_timeout: Duration::from_secs(self.auth_timeout_secs.max(1)),
            max_conns_per_ip: self.max_conns_per_ip,
            send_queue: self.send_queue,
            max_frame_bytes: self.max_frame_bytes,
            max_apps_per_conn: RoomConfig::default().max_apps_per_conn,
            tick: Duration::from_millis(self.tick_ms.max(10)),
        }
    }
}

/// Push behaviour, as configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSection {
    /// Sends of a stored message without an ACK before it is given up (marked expired).
    pub max_attempts: u32,
    /// TTL when a push gives none, in seconds.
    pub default_ttl_secs: u64,
    /// Longest TTL, in seconds.
    pub max_ttl_secs: u64,
    /// Largest message body.
    pub max_body_bytes: usize,
    /// Most recipients of a multicast.
    pub max_multicast: usize,
    /// Broadcast deliveries per second per room.
    pub broadcast_rate: u32,
}

impl Default for HubSection {
    fn default() -> Self {
        let d = HubConfig::default();
        HubSection {
            max_attempts: d.max_attempts,
            default_ttl_secs: d.default_ttl.as_secs(),
            max_ttl_secs: d.max_ttl.as_secs(),
            max_body_bytes: d.max_body_bytes,
            max_multicast: d.max_multicast,
            broadcast_rate: d.broadcast_rate,
        }
    }
}

impl HubSection {
    /// As the hub takes it.
    pub fn to_hub_config(&self) -> HubConfig {
        HubConfig {
            max_attempts: self.max_attempts.max(1),
            default_ttl: Duration::from_secs(self.default_ttl_secs.max(1)),
            max_ttl: Duration::from_secs(self.max_ttl_secs.max(1)),
            max_body_bytes: self.max_body_bytes,
            max_multicast: self.max_multicast,
            broadcast_rate: self.broadcast_rate,
        }
    }
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why (with line and column).
        source: Box<toml::de::Error>,
    },
    /// The data directory or a generated file could not be written.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Reads TOML text over the defaults.
    ///
    /// ```
    /// let c = longlink_push::config::Config::from_toml("dev_page = false\n[hub]\nmax_attempts = 3").unwrap();
    /// assert_eq!((c.dev_page, c.hub.max_attempts), (false, 3));
    /// assert!(longlink_push::config::Config::from_toml("no_such_key = 1").is_err());
    /// ```
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for app in &self.apps {
            crate::model::check_name("app", &app.name)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if app.api_key.len() < 16 {
                return Err(ConfigError::Invalid(format!(
                    "app {:?}: api_key must be at least 16 characters",
                    app.name
                )));
            }
            if !names.insert(&app.name) || !keys.insert(&app.api_key) {
                return Err(ConfigError::Invalid(format!(
                    "app {:?}: names and API keys must be unique",
                    app.name
                )));
            }
            for hook in app.webhook.iter().chain(app.upstream_routes.values()) {
                let uri: http::Uri = hook.parse().map_err(|e| {
                    ConfigError::Invalid(format!("app {:?}: webhook {hook:?}: {e}", app.name))
                })?;
                if uri.scheme_str() != Some("http") {
                    return Err(ConfigError::Invalid(format!(
                        "app {:?}: webhook must be an http:// URL",
                        app.name
                    )));
                }
            }
        }
        if self.room.send_queue == 0 || self.room.max_conns_per_ip == 0 {
            return Err(ConfigError::Invalid(
                "room.send_queue and room.max_conns_per_ip must be at least 1".into(),
            ));
        }
        if self.hub.max_body_bytes > 16 << 20 {
            return Err(ConfigError::Invalid(
                "hub.max_body_bytes must be at most 16 MiB".into(),
            ));
        }
        Ok(())
    }

    /// The store's DSN.
    pub fn database_dsn(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("push.db").display()))
    }
}

/// A secret read from `path`, or generated (32 bytes from the OS's random source, hex) and written there with
/// owner-only permissions. Returns it and whether it was generated now.
pub fn load_or_generate(path: &Path) -> Result<(String, bool), ConfigError> {
    let err = |source| ConfigError::DataDir {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| err(std::io::Error::other(format!("no randomness: {e}"))))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(err)?;
    Ok((secret, true))
}
