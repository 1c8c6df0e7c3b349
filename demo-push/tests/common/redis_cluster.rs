//! A Redis Cluster of its own for a test: three masters and three replicas, six
//! `redis-server` processes on free local ports under a temporary directory, formed with
//! `redis-cli --cluster create`. Dropping it (also when the test panics) kills all six and
//! removes the directory; each server also dies with the thread that started it (so with
//! the test process, even one killed by SIGKILL). The machine's own Redis is not touched.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Nodes: three masters, each with one replica.
const NODES: usize = 6;
/// How long forming the cluster, or a failover, may take before the test fails.
const FORM_WITHIN: Duration = Duration::from_secs(30);

struct Node {
    port: u16,
    /// `None` once killed.
    child: Option<Child>,
}

/// A running Redis Cluster; see the module doc.
pub struct RedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

/// `n` ports in 20000–29999 free now, with their cluster bus ports (+10000) free too.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::with_capacity(n);
    let mut candidate = 20_000 + (std::process::id() as u16 % 97) * 100 + fastrand::u16(0..100);
    while ports.len() < n {
        candidate = 20_000 + (candidate - 20_000 + 1) % 10_000;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(candidate) && free(candidate + 10_000) {
            ports.push(candidate);
        }
    }
    ports
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// One command on the node at `port`, with short timeouts (`None` if it does not answer).
fn ask<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(url(port)).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    cmd.query(&mut conn).ok()
}

fn info_field(text: &str, field: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

impl RedisCluster {
    /// Starts the six servers and forms the cluster; returns once every node reports
    /// `cluster_state:ok` and every replica is in sync with its master. Call it on the
    /// test's own thread (the servers die with the thread that started them).
    pub fn start() -> RedisCluster {
        let mut last = String::new();
        for _ in 0..3 {
            match RedisCluster::try_start_on(&free_ports(NODES)) {
                Ok(cluster) => return cluster,
                // Most likely a port taken between the check and the bind: the nodes
                // are killed (drop) and others tried.
                Err(e) => last = e,
            }
        }
        panic!("no Redis Cluster could be formed: {last}");
    }

    /// [`RedisCluster::start`] on six given ports (from [`free_ports`]).
    pub fn start_on(ports: &[u16]) -> RedisCluster {
        RedisCluster::try_start_on(ports).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start_on(ports: &[u16]) -> Result<RedisCluster, String> {
        assert_eq!(ports.len(), NODES);
        let mut cluster = RedisCluster {
            dir: tempfile::tempdir().expect("a temporary directory"),
            nodes: Vec::new(),
        };
        // On an error the nodes started are killed (drop).
        cluster.form(ports)?;
        Ok(cluster)
    }

    fn form(&mut self, ports: &[u16]) -> Result<(), String> {
        for &port in ports {
            let dir = self.dir.path().join(port.to_string());
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let log = std::fs::File::create(dir.join("redis.log")).map_err(|e| e.to_string())?;
            let mut command = Command::new("redis-server");
            command
                .args(["--port", &port.to_string()])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", "2000"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .args(["--bind", "127.0.0.1", "--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log);
            // SAFETY: prctl is async-signal-safe and touches nothing of the parent; it
            // makes the server get SIGKILL when the thread that started it ends, so that a
            // test process killed without running Drop leaves no server behind.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = command.spawn().map_err(|e| format!("redis-server: {e}"))?;
            self.nodes.push(Node {
                port,
                child: Some(child),
            });
        }
        for node in &self.nodes {
            self.wait(&format!("node {} answers", node.port), || {
                ask::<String>(node.port, &redis::cmd("PING")).is_some()
            })?;
        }
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        self.wait_healthy("the cluster forms")
    }

    /// Polls `ok` until it holds, for [`FORM_WITHIN`].
    fn wait(&self, what: &str, mut ok: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + FORM_WITHIN;
        while !ok() {
            if Instant::now() > deadline {
                return Err(format!("{what}: not within {FORM_WITHIN:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn alive(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
    }

    /// Every live node says `cluster_state:ok`, three live masters serve the slots, and
    /// every live replica's link to its master is up.
    fn healthy(&self) -> bool {
        let alive: Vec<u16> = self.alive().collect();
        let ok = alive.iter().all(|&p| {
            ask::<String>(p, redis::cmd("CLUSTER").arg("INFO"))
                .and_then(|i| info_field(&i, "cluster_state"))
                .as_deref()
                == Some("ok")
        });
        if !ok || self.live_masters().len() != 3 {
            return false;
        }
        alive.iter().all(|&p| {
            let Some(info) = ask::<String>(p, redis::cmd("INFO").arg("replication")) else {
                return false;
            };
            match info_field(&info, "role").as_deref() {
                Some("master") => true,
                Some("slave") => {
                    info_field(&info, "master_link_status").as_deref() == Some("up")
                        && info_field(&info, "master_sync_in_progress").as_deref() == Some("0")
                }
                _ => false,
            }
        })
    }

    fn wait_healthy(&self, what: &str) -> Result<(), String> {
        self.wait(what, || self.healthy())
    }

    /// The masters not marked failed, as one live node sees them, by port.
    fn live_masters(&self) -> Vec<u16> {
        let Some(nodes) = self
            .alive()
            .find_map(|p| ask::<String>(p, redis::cmd("CLUSTER").arg("NODES")))
        else {
            return Vec::new();
        };
        let mut ports: Vec<u16> = nodes
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let addr = fields.nth(1)?;
                let flags = fields.next()?;
                let is_master = flags.split(',').any(|f| f == "master");
                let failed = flags.split(',').any(|f| f == "fail" || f == "fail?");
                // `ip:port@bus`: a live master that holds slots (a field past the 8th).
                let serves = line.split_whitespace().count() > 8;
                let port = addr.split('@').next()?.rsplit(':').next()?.parse().ok()?;
                (is_master && !failed && serves && self.alive().any(|p| p == port)).then_some(port)
            })
            .collect();
        ports.sort_unstable();
        ports
    }

    /// Every node's URL (`redis://127.0.0.1:P`): the seeds to give a client.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(|n| url(n.port)).collect()
    }

    /// The live masters' URLs, by port.
    pub fn masters(&self) -> Vec<String> {
        self.live_masters().into_iter().map(url).collect()
    }

    /// SIGKILLs the `i`th live master, then waits until its replica was promoted and the
    /// cluster is `ok` again; answers the killed master's URL and how long the cluster
    /// took to be whole again.
    pub fn kill_master(&mut self, i: usize) -> (String, Duration) {
        let port = self.live_masters()[i];
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of the cluster");
        let mut child = node.child.take().expect("a live node");
        let _ = child.kill();
        let _ = child.wait();
        let killed = Instant::now();
        self.wait_healthy("a replica takes over")
            .unwrap_or_else(|e| panic!("{e}"));
        (url(port), killed.elapsed())
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The directories go with `dir`.
    }
}
