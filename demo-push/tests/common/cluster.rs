//! A cluster of real processes for the end-to-end tests: the `longlink-push` binary run as
//! register, saver, coordinator, rooms, dispatcher and center, on the local Redis (its own
//! key prefix, or its own database) and MariaDB (its own database, dropped afterwards).
//! Processes can be killed with SIGKILL and started again on the same addresses.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use longlink_push::config::Config;
use longlink_push::rooms::room_svc;
use longlink_push::token::Tokens;
use parking_lot::Mutex;

use super::{Harness, KEY, WAIT, metric_in};

pub const SECRET: &str = "cluster-test-secret-0123456789";
const MYSQL: &str = "mysql://root@127.0.0.1:3306/test";
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Where the cluster keeps its state, and how fast it moves (short timings for tests).
#[derive(Debug, Clone)]
pub struct Options {
    pub rooms: usize,
    /// Redis URL the services use (a proxy's, to cut it).
    pub redis: String,
    /// A Redis Cluster's seed nodes the services use instead of `redis` (the test's own
    /// [`RedisCluster`](super::redis_cluster::RedisCluster): thrown away with its keys, so
    /// nothing is cleaned up in `real_redis`).
    pub redis_cluster: Vec<String>,
    /// MariaDB host:port the saver uses (a proxy's, to cut it).
    pub mysql_host: String,
    /// The real Redis, for cleaning up the cluster's keys.
    pub real_redis: String,
    /// Register instances (`register`, `register-2`, …).
    pub registers: usize,
    /// Saver instances (`saver`, `saver-2`, …).
    pub savers: usize,
    /// Coordinator instances (`coordinator`, `coordinator-2`, …).
    pub coordinators: usize,
    /// Dispatcher instances (`dispatcher`, `dispatcher-2`, …).
    pub dispatchers: usize,
    /// Center instances (`center`, `center-2`, …); clients dispatch through `center`.
    pub centers: usize,
    /// Processes (by name: `room-1`, `saver-2`, `center`, …) that run on a test host of
    /// their own (see [`netns`](super::netns)); the others run here, on 127.0.0.1.
    pub hosts: HashMap<String, Placement>,
    /// A log level for every process, whose logs then go to `<name>.log` in the cluster's
    /// directory (see [`TestCluster::log_of`]); `None`: `warn`, to the test's stderr.
    pub log: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rooms: 2,
            redis: "redis://127.0.0.1:6379/0".into(),
            redis_cluster: Vec::new(),
            mysql_host: "127.0.0.1:3306".into(),
            real_redis: "redis://127.0.0.1:6379/0".into(),
            registers: 1,
            savers: 1,
            coordinators: 1,
            dispatchers: 1,
            centers: 1,
            hosts: HashMap::new(),
            log: None,
        }
    }
}

/// How a process runs on a test host: under `wrapper` (`ip netns exec <ns>`), bound to
/// `ip` (port 0), which is also the address it tells others.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The command the binary runs under.
    pub wrapper: Vec<String>,
    /// The host's address.
    pub ip: String,
}

struct Proc {
    svc: String,
    /// Flags besides the address flags.
    args: Vec<String>,
    /// What it printed: rpc, http, ws, tcp → address.
    addrs: HashMap<String, String>,
    child: Child,
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub options: Options,
    pub prefix: String,
    pub database: String,
    procs: Mutex<HashMap<String, Proc>>,
    center: String,
    tokens: Tokens,
    http: super::Http,
}

/// The config every process reads: the single process's test config (two apps, short
/// heartbeats, ephemeral ports), on MariaDB with a fixed secret and quick cluster timings.
fn config(dir: &std::path::Path, prefix: &str, dsn: &str, options: &Options) -> Config {
    let mut c = super::config(dir);
    c.database = Some(dsn.to_owned());
    c.token_secret = Some(SECRET.into());
    c.sweep_interval = Duration::from_secs(1);
    let k = &mut c.cluster;
    k.redis = options.redis.clone();
    k.redis_cluster = options.redis_cluster.clone();
    k.redis_prefix = prefix.to_owned();
    k.rpc_listen = "127.0.0.1:0".parse().unwrap();
    k.dispatcher_listen = "127.0.0.1:0".parse().unwrap();
    k.rpc_timeout = Duration::from_millis(1500);
    k.session_ttl = Duration::from_secs(30);
    k.epoch_check = Duration::from_millis(200);
    k.settle = Duration::from_millis(2000);
    k.announce = Duration::from_millis(200);
    k.room_ttl = Duration::from_millis(1000);
    k.grace = Duration::from_millis(800);
    k.drain_window = Duration::from_millis(1000);
    k.index_prune_after = Duration::from_millis(300);
    c
}

/// Runs `f` on a fresh current-thread runtime in its own thread (usable from `Drop`).
fn blocking<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

async fn mysql_exec(sql: String) {
    let db = longlink_pool::db::Db::open(MYSQL).unwrap();
    db.exec(&sql, ()).await.expect("MariaDB answers");
    db.close();
}

pub async fn start() -> TestCluster {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestCluster {
    start_opts(Options::default(), tweak).await
}

pub async fn start_opts(options: Options, tweak: impl FnOnce(&mut Config)) -> TestCluster {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tag = format!("{}_{n}", std::process::id());
    let prefix = format!("lltest{tag}:");
    let database = format!("llpush_t{tag}");
    mysql_exec(format!("CREATE DATABASE IF NOT EXISTS {database}")).await;
    // prefer_socket=false: mysql_async would otherwise switch to the Unix socket and
    // bypass a proxy in front of the server.
    let dsn = format!(
        "mysql://root@{}/{database}?prefer_socket=false",
        options.mysql_host
    );
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), &prefix, &dsn, &options);
    tweak(&mut c);
    let config_path = dir.path().join("cluster.toml");
    std::fs::write(&config_path, toml::to_string(&c).unwrap()).unwrap();
    let mut cluster = TestCluster {
        dir,
        config_path,
        options: options.clone(),
        prefix,
        database,
        procs: Mutex::new(HashMap::new()),
        center: String::new(),
        tokens: Tokens::new(SECRET.as_bytes()),
        http: super::http_client(None),
    };
    for svc in ["register", "saver", "coordinator"] {
        for name in instance_names(svc, options.count(svc)) {
            cluster.spawn(&name, svc, Vec::new());
        }
    }
    let wiring = cluster.wiring();
    for i in 1..=options.rooms {
        let mut args = wiring.clone();
        args.extend(["--room-name".into(), format!("room-{i}")]);
        cluster.spawn(&format!("room-{i}"), "room", args);
    }
    for name in instance_names("dispatcher", options.dispatchers) {
        cluster.spawn(&name, "dispatcher", wiring.clone());
    }
    for name in instance_names("center", options.centers) {
        cluster.spawn(&name, "center", wiring.clone());
    }
    cluster.center = format!("http://{}", cluster.addr("center", "http"));
    cluster.wait_rooms(options.rooms).await;
    cluster
}

/// `svc`, `svc-2`, … `svc-n`.
pub fn instance_names(svc: &str, n: usize) -> Vec<String> {
    (1..=n.max(1))
        .map(|i| {
            if i == 1 {
                svc.to_owned()
            } else {
                format!("{svc}-{i}")
            }
        })
        .collect()
}

impl Options {
    /// Instances of `svc`.
    pub fn count(&self, svc: &str) -> usize {
        match svc {
            "register" => self.registers,
            "saver" => self.savers,
            "coordinator" => self.coordinators,
            "dispatcher" => self.dispatchers,
            "center" => self.centers,
            _ => 1,
        }
    }
}

impl TestCluster {
    /// Flags that point a process at the register, saver and coordinator instances.
    fn wiring(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for svc in ["register", "saver", "coordinator"] {
            let addrs: Vec<String> = instance_names(svc, self.options.count(svc))
                .iter()
                .map(|name| self.addr(name, "rpc"))
                .collect();
            flags.extend([format!("--{svc}"), addrs.join(",")]);
        }
        flags
    }

    /// Makes `url` the center the harness talks to (once the first one is killed).
    pub fn set_center(&mut self, url: String) {
        self.center = url;
    }

    /// The base URLs of every center (`center` first).
    pub fn center_urls(&self) -> Vec<String> {
        instance_names("center", self.options.centers)
            .iter()
            .map(|name| format!("http://{}", self.addr(name, "http")))
            .collect()
    }

    /// An address a process printed (`rpc`, `http`, `ws`, `tcp`).
    pub fn addr(&self, name: &str, kind: &str) -> String {
        self.procs.lock()[name].addrs[kind].clone()
    }

    /// The address flags of a process: port 0 on `ip` the first time, its old addresses on
    /// a restart.
    fn address_flags(svc: &str, ip: &str, old: Option<&HashMap<String, String>>) -> Vec<String> {
        let get = |k: &str| {
            old.and_then(|o| o.get(k).cloned())
                .unwrap_or_else(|| format!("{ip}:0"))
        };
        let pairs: &[(&str, &str)] = match svc {
            "register" | "saver" | "coordinator" => &[("--rpc", "rpc"), ("--http", "http")],
            "room" => &[
                ("--ws", "ws"),
                ("--tcp", "tcp"),
                ("--rpc", "rpc"),
                ("--http", "http"),
            ],
            "dispatcher" => &[("--dispatcher", "http")],
            _ => &[("--http", "http")],
        };
        pairs
            .iter()
            .flat_map(|(flag, k)| [(*flag).to_owned(), get(k)])
            .collect()
    }

    fn spawn(&self, name: &str, svc: &str, args: Vec<String>) {
        self.spawn_at(name, svc, args, None);
    }

    fn spawn_at(
        &self,
        name: &str,
        svc: &str,
        args: Vec<String>,
        old: Option<HashMap<String, String>>,
    ) {
        let expect: &[&str] = match svc {
            "room" => &["ws", "tcp", "rpc", "http"],
            "register" | "saver" | "coordinator" => &["rpc", "http"],
            _ => &["http"],
        };
        let binary = env!("CARGO_BIN_EXE_longlink-push");
        let placement = self.options.hosts.get(name);
        let mut command = match placement {
            Some(p) => {
                let mut c = Command::new(&p.wrapper[0]);
                c.args(&p.wrapper[1..]).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let ip = placement.map_or("127.0.0.1", |p| p.ip.as_str());
        command
            .arg(svc)
            .arg("--config")
            .arg(&self.config_path)
            .args(&args)
            .args(Self::address_flags(svc, ip, old.as_ref()))
            .stdout(Stdio::piped());
        if let (Some(p), "room") = (placement, svc) {
            // Clients reach the room at its host's address. Its RPC address needs no flag:
            // it defaults to the address bound (`<host ip>:<port>`), which others reach.
            command.args(["--public-host", &p.ip]);
        }
        match self.options.log {
            Some(level) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join(format!("{name}.log")))
                    .expect("a log file in the cluster's directory");
                command.args(["--log", level]).stderr(file);
            }
            None => {
                command.args(["--log", "warn"]).stderr(Stdio::inherit());
            }
        }
        let mut child = command.spawn().expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some((k, v)) = line.split_once(' ') {
                    let _ = tx.send((k.to_owned(), v.to_owned()));
                }
            }
        });
        let mut addrs = HashMap::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !expect.iter().all(|k| addrs.contains_key(*k)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((k, v)) => {
                    addrs.insert(k, v);
                }
                Err(_) => panic!("{name} did not start (printed {addrs:?})"),
            }
        }
        self.procs.lock().insert(
            name.to_owned(),
            Proc {
                svc: svc.to_owned(),
                args,
                addrs,
                child,
            },
        );
    }

    /// What a process logged so far (with [`Options::log`] set).
    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// SIGKILLs a process (nothing it holds is flushed or drained).
    pub fn kill(&self, name: &str) {
        let mut procs = self.procs.lock();
        let p = procs.get_mut(name).expect("a process of the cluster");
        let _ = p.child.kill();
        let _ = p.child.wait();
    }

    /// Starts a killed process again on the same addresses.
    pub fn restart(&self, name: &str) {
        let (svc, args, addrs) = {
            let procs = self.procs.lock();
            let p = &procs[name];
            (p.svc.clone(), p.args.clone(), p.addrs.clone())
        };
        self.spawn_at(name, &svc, args, Some(addrs));
    }

    /// SIGTERM: a room drains over its window, then exits.
    pub fn terminate(&self, name: &str) {
        let pid = self.procs.lock()[name].child.id();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }

    /// Whether a process has exited.
    pub fn exited(&self, name: &str) -> bool {
        let mut procs = self.procs.lock();
        matches!(procs.get_mut(name).unwrap().child.try_wait(), Ok(Some(_)))
    }

    /// Waits until the dispatcher lists `n` open rooms.
    pub async fn wait_rooms(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, d) = self
                .request("GET", "/dispatch?uid=probe&net=wifi", None, None)
                .await;
            if d["rooms"].as_array().map(Vec::len) == Some(n) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {n} rooms: {d}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The room names a user's sessions are on.
    pub async fn rooms_of(&self, uid: &str) -> Vec<String> {
        let (_, answer) = self.get(&format!("/users/{uid}"), KEY).await;
        let mut rooms: Vec<String> = answer["sessions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["room"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        rooms.sort();
        rooms.dedup();
        rooms
    }

    /// Drains a room over `window` through its RPC service.
    pub async fn drain_room(&self, name: &str, window: Duration) {
        let client = room_svc::Client::new(longlink_rpc::Client::new(self.addr(name, "rpc")));
        client
            .drain(window.as_millis() as u64)
            .await
            .expect("the room drains");
    }

    /// Names of the room processes.
    pub fn room_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .procs
            .lock()
            .iter()
            .filter(|(_, p)| p.svc == "room")
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// The processes' metrics pages that count room-side and center-side counters.
    async fn metric_pages(&self) -> Vec<String> {
        let mut names = Vec::new();
        for svc in ["center", "register", "saver", "coordinator"] {
            for name in instance_names(svc, self.options.count(svc)) {
                if !self.exited(&name) {
                    names.push(name);
                }
            }
        }
        for name in self.room_names() {
            if !self.exited(&name) {
                names.push(name);
            }
        }
        let mut pages = Vec::new();
        for name in names {
            if let Some(page) = self.fetch_metrics(&name).await {
                pages.push(page);
            }
        }
        pages
    }

    /// The `/metrics` page of one process (`center`, `saver`, `room-1`, …).
    pub async fn metrics_page(&self, name: &str) -> String {
        self.fetch_metrics(name)
            .await
            .unwrap_or_else(|| panic!("{name} serves no metrics page"))
    }

    async fn fetch_metrics(&self, name: &str) -> Option<String> {
        let url = match name {
            "center" => format!("{}/metrics", self.center),
            _ => format!("http://{}/metrics", self.addr(name, "http")),
        };
        let req = http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let Ok(Ok(resp)) = tokio::time::timeout(WAIT, self.http.request(req)).await else {
            return None;
        };
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        Some(String::from_utf8_lossy(&body).into_owned())
    }
}

impl Harness for TestCluster {
    fn center_url(&self) -> String {
        self.center.clone()
    }

    fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    fn http(&self) -> &super::Http {
        &self.http
    }

    async fn drain_user(&self, uid: &str) {
        for room in self.rooms_of(uid).await {
            self.drain_room(&room, Duration::from_millis(10)).await;
        }
    }

    async fn metric(&self, name: &str) -> u64 {
        self.metric_pages()
            .await
            .iter()
            .filter_map(|page| metric_in(page, name))
            .sum()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for p in self.procs.lock().values_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let (database, prefix, redis_url, on_redis_cluster) = (
            self.database.clone(),
            self.prefix.clone(),
            self.options.real_redis.clone(),
            !self.options.redis_cluster.is_empty(),
        );
        blocking(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                mysql_exec(format!("DROP DATABASE IF EXISTS {database}")),
            )
            .await;
            if on_redis_cluster {
                // The test's own cluster holds the keys, and goes with the test.
                return;
            }
            let Ok(client) = redis::Client::open(redis_url.as_str()) else {
                return;
            };
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
        });
    }
}
