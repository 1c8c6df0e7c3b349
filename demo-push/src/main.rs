//! `longlink-push`: the push system's binary.
//!
//! - `longlink-push all`: every service in one process on embedded defaults (SQLite under
//!   `./longlink-data`); prints the page's URL.
//! - `longlink-push client --uid u1`: a command-line client that prints what arrives.
//! - `longlink-push token --uid u1`: issues a connection token with the configured secret.
//! - `longlink-push cluster --rooms 3`: a local cluster of processes on Redis and MariaDB.
//! - `longlink-push room|register|saver|coordinator|dispatcher|center`: one service of a
//!   cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use longlink_codec::push::Net;
use longlink_push::cluster;
use longlink_push::config::{Config, load_or_generate};
use longlink_push::system::System;
use longlink_push::token::Tokens;
use longlink_push_client::{Client, ClientConfig, Event, Transport};

#[derive(Parser, Debug)]
#[command(
    name = "longlink-push",
    version,
    about = "A long-connection push system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every service in one process (room, register, saver, coordinator, dispatcher, center).
    All(ServerArgs),
    /// Connect as a user and print the messages that arrive.
    Client(ClientArgs),
    /// Issue a connection token for a user (with the server's secret).
    Token(TokenArgs),
    /// A whole local cluster: each service its own child process, on Redis and MariaDB.
    Cluster(ClusterArgs),
    /// Cluster service: a room (WebSocket and TCP gateway).
    Room(ServerArgs),
    /// Cluster service: the register (sessions and groups in Redis).
    Register(ServerArgs),
    /// Cluster service: the saver (messages in MySQL/MariaDB).
    Saver(ServerArgs),
    /// Cluster service: the coordinator (webhooks).
    Coordinator(ServerArgs),
    /// Cluster service: the dispatcher (`GET /dispatch`).
    Dispatcher(ServerArgs),
    /// Cluster service: the center (HTTP API).
    Center(ServerArgs),
}

#[derive(Args, Debug)]
struct ClusterArgs {
    /// `restart --rolling`: restarts every process of the cluster running on `--data-dir`
    /// one by one.
    #[command(subcommand)]
    action: Option<ClusterAction>,
    /// Room processes.
    #[arg(long, default_value_t = 3)]
    rooms: usize,
    /// Instances of each of register, saver, coordinator and dispatcher (instance k ≥ 2 at
    /// +200+10(k−2)).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// Instances of the center (default: `--instances`).
    #[arg(long)]
    centers: Option<usize>,
    /// Ports count from here (center +0, dispatcher +9, register/saver/coordinator
    /// +10/+11/+12, room i at +20+4i).
    #[arg(long, default_value_t = 7800)]
    base_port: u16,
    /// The data directory every process shares (generated secret and API key).
    #[arg(long, default_value = "./longlink-data", global = true)]
    data_dir: PathBuf,
    /// The message store (MySQL/MariaDB).
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306/test")]
    database: String,
    /// Redis.
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis: String,
    /// A Redis Cluster instead of `--redis`: seed nodes (`redis://host:port`),
    /// comma-separated.
    #[arg(long, value_delimiter = ',')]
    redis_cluster: Vec<String>,
    /// A configuration file every process also reads.
    #[arg(long)]
    config: Option<PathBuf>,
    /// TLS on every listener with a development CA and certificate made under the data
    /// dir (rooms: wss:// at +100+2i, TCP+TLS at +101+2i), and mutual TLS on the cluster's
    /// RPC with the same certificate.
    #[arg(long)]
    tls_self_signed: bool,
}

/// What `cluster` does besides starting one.
#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Restarts every process of a running cluster in turn (services, then rooms), each
    /// drained with SIGTERM first; with two or more of each, no push is refused.
    Restart {
        /// One at a time (the only kind: all at once would refuse pushes).
        #[arg(long)]
        rolling: bool,
    },
}

/// Where configuration comes from: defaults, then `--config`, then env vars and flags.
#[derive(Args, Debug)]
struct ServerArgs {
    /// A TOML configuration file.
    #[arg(long, env = "LONGLINK_PUSH_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory (SQLite store, generated secret and API key).
    #[arg(long, env = "LONGLINK_PUSH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The center's listen address (API, dispatcher, page).
    #[arg(long, env = "LONGLINK_PUSH_HTTP")]
    http: Option<SocketAddr>,
    /// The room's WebSocket listen address.
    #[arg(long, env = "LONGLINK_PUSH_WS")]
    ws: Option<SocketAddr>,
    /// The room's raw TCP listen address.
    #[arg(long, env = "LONGLINK_PUSH_TCP")]
    tcp: Option<SocketAddr>,
    /// The room's `wss://` listen address (with TLS).
    #[arg(long, env = "LONGLINK_PUSH_WSS")]
    wss: Option<SocketAddr>,
    /// The room's TCP+TLS listen address (with TLS).
    #[arg(long, env = "LONGLINK_PUSH_TCP_TLS")]
    tcp_tls: Option<SocketAddr>,
    /// TLS: the certificate chain (PEM) every TLS listener serves.
    #[arg(long, env = "LONGLINK_PUSH_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS: its private key (PEM).
    #[arg(long, env = "LONGLINK_PUSH_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS with a development CA and certificate made under the data dir (printed: how
    /// to trust it); in a cluster service, its RPC too (`[cluster.tls]`, mutual).
    #[arg(
        long,
        env = "LONGLINK_PUSH_TLS_SELF_SIGNED",
        conflicts_with = "tls_cert"
    )]
    tls_self_signed: bool,
    /// The message store DSN (`sqlite://…`, `mysql://…`).
    #[arg(long, env = "LONGLINK_PUSH_DATABASE")]
    database: Option<String>,
    /// The host clients use to reach the room.
    #[arg(long, env = "LONGLINK_PUSH_PUBLIC_HOST")]
    public_host: Option<String>,
    /// Turn the development page off.
    #[arg(long, env = "LONGLINK_PUSH_NO_DEV_PAGE")]
    no_dev_page: bool,
    /// Cluster: this room's name.
    #[arg(long, env = "LONGLINK_PUSH_ROOM_NAME")]
    room_name: Option<String>,
    /// Cluster: this service's RPC listen address.
    #[arg(long, env = "LONGLINK_PUSH_RPC")]
    rpc: Option<SocketAddr>,
    /// Cluster: the RPC address others dial (default: the RPC listen address).
    #[arg(long, env = "LONGLINK_PUSH_RPC_PUBLIC")]
    rpc_public: Option<String>,
    /// Cluster: the dispatcher's HTTP listen address.
    #[arg(long, env = "LONGLINK_PUSH_DISPATCHER")]
    dispatcher: Option<SocketAddr>,
    /// Cluster: Redis URL.
    #[arg(long, env = "LONGLINK_PUSH_REDIS")]
    redis: Option<String>,
    /// Cluster: a Redis Cluster instead of `--redis`, its seed nodes (`redis://host:port`)
    /// comma-separated.
    #[arg(long, env = "LONGLINK_PUSH_REDIS_CLUSTER", value_delimiter = ',')]
    redis_cluster: Option<Vec<String>>,
    /// Cluster: the register services' RPC addresses, comma-separated.
    #[arg(long, env = "LONGLINK_PUSH_REGISTER", value_delimiter = ',')]
    register: Option<Vec<String>>,
    /// Cluster: the saver services' RPC addresses, comma-separated.
    #[arg(long, env = "LONGLINK_PUSH_SAVER", value_delimiter = ',')]
    saver: Option<Vec<String>>,
    /// Cluster: the coordinator services' RPC addresses, comma-separated.
    #[arg(long, env = "LONGLINK_PUSH_COORDINATOR", value_delimiter = ',')]
    coordinator: Option<Vec<String>>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "LONGLINK_PUSH_LOG", default_value = "info")]
    log: String,
}

impl ServerArgs {
    fn load(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        if let Some(v) = &self.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = self.http {
            config.http_listen = v;
        }
        if let Some(v) = self.ws {
            config.room.ws_listen = v;
        }
        if let Some(v) = self.tcp {
            config.room.tcp_listen = v;
        }
        if let Some(v) = &self.database {
            config.database = Some(v.clone());
        }
        if let Some(v) = &self.public_host {
            config.public_host = Some(v.clone());
        }
        if self.no_dev_page {
            config.dev_page = false;
        }
        if let Some(v) = &self.room_name {
            config.room.name = v.clone();
        }
        if let Some(v) = self.rpc {
            config.cluster.rpc_listen = v;
        }
        if let Some(v) = &self.rpc_public {
            config.cluster.rpc_public = Some(v.clone());
        }
        if let Some(v) = self.dispatcher {
            config.cluster.dispatcher_listen = v;
        }
        if let Some(v) = &self.redis {
            config.cluster.redis = v.clone();
        }
        if let Some(v) = &self.redis_cluster {
            config.cluster.redis_cluster = v.clone();
        }
        if let Some(v) = &self.register {
            config.cluster.register = v.clone();
        }
        if let Some(v) = &self.saver {
            config.cluster.saver = v.clone();
        }
        if let Some(v) = &self.coordinator {
            config.cluster.coordinator = v.clone();
        }
        if let Some(v) = self.wss {
            config.room.wss_listen = v;
        }
        if let Some(v) = self.tcp_tls {
            config.room.tls_listen = v;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(longlink_push::tls::TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                reload_check: config
                    .tls
                    .as_ref()
                    .map_or(Duration::from_secs(10), |t| t.reload_check),
            });
        }
        if self.tls_self_signed {
            let hosts: Vec<String> = config.public_host.iter().cloned().collect();
            let made = longlink_push::tls::self_signed(&config.data_dir, &hosts)
                .map_err(|e| e.to_string())?;
            // The cluster's RPC too, mutual: the one development certificate is every
            // process's server certificate and its identity when it calls the others.
            config.cluster.tls = Some(longlink_push::tls::ClusterTlsConfig {
                ca: made.ca,
                cert: made.tls.cert.clone(),
                key: made.tls.key.clone(),
                mutual: true,
                server_name: None,
            });
            config.tls = Some(made.tls);
        }
        Ok(config)
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TransportArg {
    Tcp,
    Ws,
}

#[derive(Args, Debug)]
struct ClientArgs {
    /// The center's URL.
    #[arg(long, default_value = "http://127.0.0.1:7800")]
    center: String,
    /// The user.
    #[arg(long)]
    uid: String,
    /// This device.
    #[arg(long, default_value = "cli")]
    device: String,
    /// The network type: 2g, 3g, 4g, 5g or wifi.
    #[arg(long, default_value = "wifi")]
    net: Net,
    /// An app to receive (repeat for several).
    #[arg(long = "app", default_value = "demo")]
    apps: Vec<String>,
    /// The token (default: asked of the development page's `/dev/session`).
    #[arg(long, env = "LONGLINK_PUSH_TOKEN")]
    token: Option<String>,
    /// TCP or WebSocket.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: TransportArg,
    /// Do not ACK (the messages come again on the next connect).
    #[arg(long)]
    no_ack: bool,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<usize>,
    /// The CA certificate (PEM) to trust for an `https://` center and TLS rooms, e.g.
    /// `<data_dir>/tls/ca.pem` of `--tls-self-signed` (default: the system's bundle).
    #[arg(long, env = "LONGLINK_PUSH_CA")]
    ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TokenArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The user.
    #[arg(long)]
    uid: String,
    /// How long the token lasts, in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: u64,
}

fn init_logs(filter: &str) {
    let level: tracing::Level = filter.parse().unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::All(args) => all(args).await,
        Command::Client(args) => client(args).await,
        Command::Token(args) => token(args),
        Command::Cluster(args) => cluster(args).await,
        Command::Room(args) => service(args, cluster::run::room).await,
        Command::Register(args) => service(args, cluster::run::register).await,
        Command::Saver(args) => service(args, cluster::run::saver).await,
        Command::Coordinator(args) => service(args, cluster::run::coordinator).await,
        Command::Dispatcher(args) => service(args, cluster::run::dispatcher).await,
        Command::Center(args) => service(args, cluster::run::center).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("longlink-push: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn all(args: ServerArgs) -> Result<(), String> {
    init_logs(&args.log);
    let config = args.load()?;
    let data_dir = config.data_dir.clone();
    let dev_page = config.dev_page;
    let self_signed = args.tls_self_signed;
    let system = System::start(config).await.map_err(|e| e.to_string())?;
    let center = system.center_url();
    println!("longlink-push is up (every service in one process)");
    if dev_page {
        println!("  page:       {center}/");
    }
    println!("  center API: {center}/push/unicast …");
    println!("  dispatcher: {center}/dispatch?uid=u1&net=wifi");
    if let (Some(ws), Some(tcp)) = (system.ws, system.tcp) {
        println!("  room:       ws://{ws}/  and tcp {tcp}");
    }
    if let (Some(wss), Some(tls)) = (system.wss, system.tls) {
        println!("  room (TLS): wss://{wss}/  and tcp+tls {tls}");
    }
    println!("  metrics:    {center}/metrics");
    if self_signed {
        let ca = data_dir.join("tls").join("ca.pem");
        println!(
            "  TLS:        a development certificate signed by {}",
            ca.display()
        );
        println!(
            "              trust it: curl --cacert {} {center}/healthz",
            ca.display()
        );
        println!(
            "              Chromium: Settings → Privacy and security → Security → Manage \
             certificates → Authorities → Import {}",
            ca.display()
        );
        println!(
            "              Debian/Ubuntu: sudo cp {} /usr/local/share/ca-certificates/longlink-dev.crt \
             && sudo update-ca-certificates",
            ca.display()
        );
    }
    println!("  store:      {}", data_dir.display());
    // Secrets are never printed or logged: the files hold them.
    if system.generated.api_key.is_some() {
        println!(
            "  generated an API key for app \"demo\": in {}",
            data_dir.join("demo-api-key").display()
        );
    } else if system.apps.len() == 1 && system.apps[0].name == "demo" {
        println!(
            "  API key for app \"demo\": in {}",
            data_dir.join("demo-api-key").display()
        );
    }
    if system.generated.token_secret.is_some() {
        println!(
            "  generated a token secret: in {}",
            data_dir.join("token-secret").display()
        );
    }
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("waiting for ctrl-c: {e}"))?;
    println!("shutting down: clients are told to reconnect");
    system.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

async fn service<F, Fut>(args: ServerArgs, run: F) -> Result<(), String>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), longlink_push::system::StartError>>,
{
    init_logs(&args.log);
    let config = args.load()?;
    cluster::launch::exit_with_launcher();
    run(config).await.map_err(|e| e.to_string())
}

async fn cluster(args: ClusterArgs) -> Result<(), String> {
    init_logs("info");
    if let Some(ClusterAction::Restart { rolling }) = args.action {
        if !rolling {
            return Err("only `restart --rolling` is supported: restarting every process at once would refuse pushes".into());
        }
        return cluster::launch::request_rolling_restart(&args.data_dir).await;
    }
    let plan = cluster::launch::Plan {
        rooms: args.rooms.max(1),
        instances: args.instances.max(1),
        centers: args.centers.unwrap_or(args.instances).max(1),
        base_port: args.base_port,
        data_dir: args.data_dir,
        database: args.database,
        redis: args.redis,
        redis_cluster: args.redis_cluster,
        config: args.config,
        tls_self_signed: args.tls_self_signed,
    };
    if plan.tls_self_signed {
        // Made once here: the children find it under the shared data dir.
        let made =
            longlink_push::tls::self_signed(&plan.data_dir, &[]).map_err(|e| e.to_string())?;
        println!(
            "TLS: a development certificate; trust {}",
            made.ca.display()
        );
    }
    cluster::launch::run(plan, Duration::from_secs(15))
        .await
        .map_err(|e| e.to_string())
}

async fn client(args: ClientArgs) -> Result<(), String> {
    init_logs("warn");
    // A named CA must load; the system's bundle is only needed for TLS.
    let tls = match longlink_push::tls::client_config(args.ca.as_deref()) {
        Ok(config) => Some(Arc::new(config)),
        Err(e) if args.ca.is_some() => return Err(e),
        Err(_) => None,
    };
    let token = match args.token {
        Some(t) => t,
        None => dev_token(&args.center, &args.uid, tls.as_deref()).await?,
    };
    let mut config = ClientConfig::new(&args.center, &args.uid, &token);
    config.tls = tls;
    config.device = args.device;
    config.net = args.net;
    config.apps = args.apps;
    config.auto_ack = !args.no_ack;
    config.transport = match args.transport {
        TransportArg::Tcp => Transport::Tcp,
        TransportArg::Ws => Transport::WebSocket,
    };
    let mut client = Client::start(config);
    let mut received = 0;
    while let Some(event) = client.next_event().await {
        match event {
            Event::Message(m) => {
                let body = if m.mode == longlink_codec::push::DeliveryMode::Notify {
                    match client.pull(m.id).await {
                        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                        Err(e) => format!("<pull failed: {e}>"),
                    }
                } else {
                    m.body
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("<{} bytes>", m.body.0.len()))
                };
                let line =
                    serde_json::json!({"id": m.id, "app": m.app, "mode": m.mode, "body": body});
                println!("{line}");
                received += 1;
                if args.count.is_some_and(|n| received >= n) {
                    return Ok(());
                }
            }
            Event::Connected {
                room,
                address,
                heartbeat_secs,
            } => eprintln!("connected to {room} at {address} (heartbeat {heartbeat_secs} s)"),
            Event::Duplicate(id) => eprintln!("duplicate {id} dropped"),
            Event::Disconnected { reason, retry_in } => {
                eprintln!("disconnected ({reason}); retrying in {retry_in:?}")
            }
            Event::Error(e) => eprintln!("room error {}: {}", e.code, e.reason),
            Event::Kicked(reason) => return Err(format!("kicked: {reason}")),
            Event::Refused(reason) => return Err(format!("refused: {reason}")),
            Event::TokenRefreshed { expires_at } => {
                eprintln!("token refreshed (expires at {expires_at:?})")
            }
            Event::RefreshFailed(reason) => eprintln!("token refresh failed: {reason}"),
            other => eprintln!("{other:?}"),
        }
    }
    Ok(())
}

/// A token from the development page (`all` mode with the page on).
async fn dev_token(
    center: &str,
    uid: &str,
    tls: Option<&rustls::ClientConfig>,
) -> Result<String, String> {
    let url = format!("{}/dev/session?uid={uid}", center.trim_end_matches('/'));
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.cloned().unwrap_or_else(|| {
            // No CA to trust: an https:// center fails with a certificate error.
            rustls::ClientConfig::builder_with_provider(longlink_push::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }))
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let response = client.get(uri).await.map_err(|e| {
        // hyper's own text hides the cause (a certificate not trusted, say).
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text = format!("{text}: {c}");
            cause = c.source();
        }
        format!("asking {url} for a token: {text} (or pass --token; --ca for a private CA)")
    })?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{url}: {status} (the development page is off? pass --token)"
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{url}: no token in the answer"))
}

fn token(args: TokenArgs) -> Result<(), String> {
    let config = args.server.load()?;
    let secret = match config.token_secret {
        Some(s) => s.expose().to_owned(),
        None => {
            load_or_generate(&config.data_dir.join("token-secret"))
                .map_err(|e| e.to_string())?
                .0
        }
    };
    let token = Tokens::new(secret.as_bytes()).issue(&args.uid, Duration::from_secs(args.ttl_secs));
    println!("{token}");
    Ok(())
}
