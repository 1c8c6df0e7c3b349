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
//! [push]
//! max_attempts = 5
//! ```
//!
//! Each section deserializes straight into the settings of the component that takes it
//! ([`RoomConfig`], [`PushConfig`], [`ClusterConfig`]); durations are `Duration`s, written
//! in the file in the unit their key names (`auth_timeout_secs`, `tick_ms`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::center::AppConfig;
use crate::metrics::RpcLatency;
pub use crate::pusher::PushConfig;
use crate::remote::RpcOptions;
pub use crate::room::RoomConfig;

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
    pub token_secret: Option<crate::token::Secret>,
    /// Apps and their API keys (default: one app `demo` with a key generated once and kept
    /// in `<data_dir>/demo-api-key`).
    pub apps: Vec<AppConfig>,
    /// Serve the development web page at `/` (it hands out the first app's API key and
    /// user tokens: keep it off where others can reach the center).
    pub dev_page: bool,
    /// How often stored messages past their TTL are marked expired.
    #[serde(rename = "sweep_interval_secs", with = "crate::serde_duration::secs")]
    pub sweep_interval: Duration,
    /// Largest request body the center reads.
    pub max_request_bytes: usize,
    /// Which tokens rooms take besides the HMAC ones (`[tokens.jwt]`: JWTs, see
    /// `docs/tokens.md`).
    pub tokens: crate::token::TokensConfig,
    /// The certificate and key of every TLS listener (`[tls]`; none: plaintext only).
    pub tls: Option<crate::tls::TlsConfig>,
    /// The room.
    pub room: RoomConfig,
    /// Push behaviour (`[push]`; `[hub]` is read too, its old name).
    #[serde(alias = "hub")]
    pub push: PushConfig,
    /// The cluster mode (each service its own process).
    pub cluster: ClusterConfig,
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
            sweep_interval: Duration::from_secs(60),
            max_request_bytes: 256 * 1024,
            tokens: crate::token::TokensConfig::default(),
            tls: None,
            room: RoomConfig::default(),
            push: PushConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// How internal calls travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpcStrategy {
    /// One connection per target, many calls on it at once (the default).
    #[default]
    Multiplexed,
    /// Up to 64 connections per target, one call on each at a time.
    Pooled,
    /// A connection per call.
    Short,
}

impl RpcStrategy {
    /// As longlink-rpc takes it.
    pub fn strategy(self) -> longlink_rpc::Strategy {
        match self {
            RpcStrategy::Multiplexed => longlink_rpc::Strategy::Multiplexed { conns: 1 },
            RpcStrategy::Pooled => longlink_rpc::Strategy::Pooled { max_conns: 64 },
            RpcStrategy::Short => longlink_rpc::Strategy::Short,
        }
    }
}

/// How the services of a cluster find each other and their stores (`[cluster]`).
///
/// ```toml
/// [cluster]
/// redis = "redis://127.0.0.1:6379/0"
/// # redis_cluster = ["redis://10.0.0.7:7000", "redis://10.0.0.8:7000"]   # instead of `redis`
/// register = ["10.0.0.5:7810", "10.0.0.6:7810"]
/// saver = "10.0.0.5:7811"
/// coordinator = "10.0.0.5:7812"
///
/// [cluster.tls]   # optional: TLS (mutual by default) on every cluster RPC connection
/// ca = "/etc/longlink/cluster-ca.pem"
/// cert = "/etc/longlink/node.pem"
/// key = "/etc/longlink/node-key.pem"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Redis (register, membership, the saver's hot pending state).
    pub redis: String,
    /// A Redis Cluster's seed nodes (`redis://host:port`, any of its nodes; the others are
    /// found from them). When it lists any, every Redis user takes the cluster instead of
    /// `redis`. Empty (a single Redis) by default.
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub redis_cluster: Vec<String>,
    /// Prefix of every Redis key (several clusters can share one Redis).
    pub redis_prefix: String,
    /// Register services' RPC addresses (calls go to any; one that fails without running a
    /// call sends it to the next).
    #[serde(deserialize_with = "one_or_many")]
    pub register: Vec<String>,
    /// The saver services' RPC addresses (one, or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub saver: Vec<String>,
    /// The coordinator services' RPC addresses (one, or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub coordinator: Vec<String>,
    /// Where this process's RPC server listens (register, saver, coordinator, room).
    pub rpc_listen: SocketAddr,
    /// The address others reach this process's RPC server at (default: `rpc_listen`).
    pub rpc_public: Option<String>,
    /// The dispatcher service's HTTP listen address.
    pub dispatcher_listen: SocketAddr,
    /// How internal calls travel: `multiplexed`, `pooled` or `short`.
    pub rpc_strategy: RpcStrategy,
    /// Deadline of an internal call.
    #[serde(rename = "rpc_timeout_ms", with = "crate::serde_duration::millis")]
    pub rpc_timeout: Duration,
    /// Calls in flight to one service before more are refused at once (overload).
    pub rpc_max_in_flight: usize,
    /// A register session lives this long unless its room refreshes it.
    #[serde(rename = "session_ttl_secs", with = "crate::serde_duration::secs")]
    pub session_ttl: Duration,
    /// How often a room checks whether the register lost its state (and re-flushes).
    #[serde(rename = "epoch_check_ms", with = "crate::serde_duration::millis")]
    pub epoch_check: Duration,
    /// After the register lost its state, lookups also ask every room this long.
    #[serde(rename = "settle_ms", with = "crate::serde_duration::millis")]
    pub settle: Duration,
    /// How often a room announces itself.
    #[serde(rename = "announce_ms", with = "crate::serde_duration::millis")]
    pub announce: Duration,
    /// A room not heard from for this long leaves routing.
    #[serde(rename = "room_ttl_ms", with = "crate::serde_duration::millis")]
    pub room_ttl: Duration,
    /// A disconnected session waits this long for a quick reconnect to the same room.
    #[serde(rename = "grace_ms", with = "crate::serde_duration::millis")]
    pub grace: Duration,
    /// A draining room spreads its clients' reconnects over this window.
    #[serde(rename = "drain_window_ms", with = "crate::serde_duration::millis")]
    pub drain_window: Duration,
    /// Connections a room takes before the dispatcher stops sending users to it.
    pub room_capacity: usize,
    /// A center's id lane is leased in Redis for this long, renewed every fifth of it; a
    /// center that cannot renew it for this long stops issuing ids (pushes answer 503).
    #[serde(rename = "id_lease_ms", with = "crate::serde_duration::millis")]
    pub id_lease: Duration,
    /// The saver prunes an index entry MySQL no longer owes only once its message is this
    /// old: a younger one's store may still be committing (entries are written first).
    #[serde(
        rename = "index_prune_after_ms",
        with = "crate::serde_duration::millis"
    )]
    pub index_prune_after: Duration,
    /// TLS on every cluster RPC connection (`[cluster.tls]`; none: plaintext): each RPC
    /// server serves it, each RPC client speaks it, mutual by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::ClusterTlsConfig>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: "redis://127.0.0.1:6379/0".into(),
            redis_cluster: Vec::new(),
            redis_prefix: "llpush:".into(),
            register: vec!["127.0.0.1:7810".into()],
            saver: vec!["127.0.0.1:7811".into()],
            coordinator: vec!["127.0.0.1:7812".into()],
            rpc_listen: "127.0.0.1:7813".parse().expect("an address"),
            rpc_public: None,
            dispatcher_listen: "127.0.0.1:7809".parse().expect("an address"),
            rpc_strategy: RpcStrategy::Multiplexed,
            rpc_timeout: Duration::from_millis(2000),
            rpc_max_in_flight: 4096,
            session_ttl: Duration::from_secs(90),
            epoch_check: Duration::from_millis(1000),
            settle: Duration::from_millis(5000),
            announce: Duration::from_millis(1000),
            room_ttl: Duration::from_millis(3500),
            grace: Duration::from_millis(10_000),
            drain_window: Duration::from_millis(10_000),
            room_capacity: 19_000,
            id_lease: Duration::from_millis(30_000),
            index_prune_after: Duration::from_millis(60_000),
            tls: None,
        }
    }
}

impl ClusterConfig {
    /// How internal calls travel (reads the `[cluster.tls]` files, if set: call it once
    /// per process), their latency recorded into `latency` (the process's
    /// [`Metrics::rpc`](crate::metrics::Metrics::rpc)).
    pub fn rpc(&self, latency: &RpcLatency) -> Result<RpcOptions, crate::tls::TlsError> {
        Ok(RpcOptions {
            strategy: self.rpc_strategy.strategy(),
            timeout: self.rpc_timeout,
            max_in_flight: self.rpc_max_in_flight,
            tls: self.tls.as_ref().map(|t| t.client()).transpose()?,
            latency: latency.clone(),
        })
    }

    /// What this process's RPC server serves (`[cluster.tls]`; `None`: plaintext).
    pub fn rpc_server_tls(&self) -> Result<Option<longlink_rpc::TlsServer>, crate::tls::TlsError> {
        self.tls.as_ref().map(|t| t.server()).transpose()
    }

    /// The address others reach this process's RPC server at.
    pub fn rpc_public(&self) -> String {
        self.rpc_public
            .clone()
            .unwrap_or_else(|| self.rpc_listen.to_string())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (what, list) in [
            ("register", &self.register),
            ("saver", &self.saver),
            ("coordinator", &self.coordinator),
        ] {
            if list.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "cluster.{what} lists no address"
                )));
            }
        }
        for (what, d) in [
            ("rpc_timeout_ms", self.rpc_timeout),
            ("session_ttl_secs", self.session_ttl),
            ("epoch_check_ms", self.epoch_check),
            ("announce_ms", self.announce),
            ("room_ttl_ms", self.room_ttl),
            ("id_lease_ms", self.id_lease),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "cluster.{what} must be more than 0"
                )));
            }
        }
        Ok(())
    }
}

/// A string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
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
    /// let c = longlink_push::config::Config::from_toml("dev_page = false\n[push]\nmax_attempts = 3\n[room]\nauth_timeout_secs = 4").unwrap();
    /// assert_eq!((c.dev_page, c.push.max_attempts), (false, 3));
    /// assert_eq!(c.room.auth_timeout, std::time::Duration::from_secs(4));
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
            if !names.insert(&app.name) || !keys.insert(app.api_key.expose()) {
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
        if self.room.auth_timeout.is_zero() || self.room.tick < Duration::from_millis(10) {
            return Err(ConfigError::Invalid(
                "room.auth_timeout_secs must be at least 1 and room.tick_ms at least 10".into(),
            ));
        }
        let p = &self.push;
        if p.max_attempts == 0 || p.default_ttl.is_zero() || p.max_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "push.max_attempts, push.default_ttl_secs and push.max_ttl_secs must be at least 1"
                    .into(),
            ));
        }
        if p.max_body_bytes > 16 << 20 {
            return Err(ConfigError::Invalid(
                "push.max_body_bytes must be at most 16 MiB".into(),
            ));
        }
        if self.sweep_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "sweep_interval_secs must be at least 1".into(),
            ));
        }
        self.cluster.validate()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_cluster_seeds_are_read_as_a_list_or_one_and_default_to_none() {
        let c: Config =
            toml::from_str("[cluster]\nredis_cluster = [\"redis://a:7000\", \"redis://b:7000\"]\n")
                .unwrap();
        assert_eq!(
            c.cluster.redis_cluster,
            ["redis://a:7000", "redis://b:7000"]
        );
        let c: Config = toml::from_str("[cluster]\nredis_cluster = \"redis://a:7000\"\n").unwrap();
        assert_eq!(c.cluster.redis_cluster, ["redis://a:7000"]);
        assert!(Config::default().cluster.redis_cluster.is_empty());
        // Not written when empty: a single Redis's file stays as it was.
        assert!(
            !toml::to_string(&Config::default())
                .unwrap()
                .contains("redis_cluster")
        );
    }
}
