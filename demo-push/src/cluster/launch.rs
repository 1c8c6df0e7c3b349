//! `longlink-push cluster --rooms N`: a whole local cluster as child processes of this
//! binary (register, saver, coordinator, N rooms, dispatcher, center) against the local
//! Redis (or a Redis Cluster, `--redis-cluster`) and MariaDB, each child's log lines
//! prefixed with its name. Ctrl-C stops them all (rooms drain first).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::config::load_or_generate;

/// Set on the launcher's children: the launcher's pid, which they watch.
pub const PARENT_ENV: &str = "LONGLINK_PUSH_LAUNCHER";

/// In a child of the launcher, exits the process once the launcher is gone (the child was
/// re-parented): a cluster never outlives its `cluster` command. Does nothing elsewhere.
pub fn exit_with_launcher() {
    let Some(launcher) = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return;
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(500));
        loop {
            ticks.tick().await;
            if std::os::unix::process::parent_id() != launcher {
                // No log: stderr is a pipe to the launcher, which is gone.
                std::process::exit(0);
            }
        }
    });
}

/// Where a local cluster's processes listen.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Rooms.
    pub rooms: usize,
    /// Instances of each of register, saver, coordinator and dispatcher.
    pub instances: usize,
    /// Instances of the center.
    pub centers: usize,
    /// Ports count from here: center +0, dispatcher +9, register +10 (metrics +13), saver
    /// +11 (metrics +14), coordinator +12 (metrics +15), room i at +20+4i (ws, tcp, rpc,
    /// metrics) and +100+2i (wss, TCP+TLS); instance k ≥ 2 of the others at
    /// +200+10(k−2): center +0, dispatcher +1, register/saver/coordinator +2/+3/+4 and
    /// their metrics +5/+6/+7.
    pub base_port: u16,
    /// The data dir every process shares (secret, API key).
    pub data_dir: PathBuf,
    /// The MySQL/MariaDB DSN.
    pub database: String,
    /// The Redis URL.
    pub redis: String,
    /// A Redis Cluster's seed nodes, used instead of `redis` when any.
    pub redis_cluster: Vec<String>,
    /// A configuration file every process also reads, if any.
    pub config: Option<PathBuf>,
    /// Every process serves a development certificate made under the data dir, on its
    /// client listeners and its RPC (mutual TLS between the processes).
    pub tls_self_signed: bool,
}

/// The roles besides rooms, in the order they start (the stores' services first, so the
/// others find them) and are restarted.
const ROLES: [&str; 5] = ["saver", "register", "coordinator", "dispatcher", "center"];

impl Plan {
    fn addr(&self, offset: u16) -> String {
        format!("127.0.0.1:{}", self.base_port + offset)
    }

    fn count(&self, role: &str) -> usize {
        match role {
            "center" => self.centers.max(1),
            _ => self.instances.max(1),
        }
    }

    /// Instance `k` (1-based) of `role`: its name, and the port offsets of its listener
    /// (RPC, or HTTP for a center or dispatcher) and of its metrics page (none for a
    /// dispatcher).
    fn instance(role: &str, k: usize) -> (String, u16, Option<u16>) {
        let name = if k == 1 {
            role.to_owned()
        } else {
            format!("{role}-{k}")
        };
        let (first, more) = match role {
            "center" => ((0, None), (0, None)),
            "dispatcher" => ((9, None), (1, None)),
            "register" => ((10, Some(13)), (2, Some(5))),
            "saver" => ((11, Some(14)), (3, Some(6))),
            _ => ((12, Some(15)), (4, Some(7))),
        };
        if k == 1 {
            (name, first.0, first.1)
        } else {
            let at = 200 + 10 * (k as u16 - 2);
            (name, at + more.0, more.1.map(|m| at + m))
        }
    }

    /// The RPC addresses of every instance of `role`.
    fn rpc_list(&self, role: &str) -> String {
        (1..=self.count(role))
            .map(|k| self.addr(Plan::instance(role, k).1))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Each child: its name and its arguments.
    pub fn processes(&self) -> Vec<(String, Vec<String>)> {
        let common = |svc: &str| {
            let mut args = vec![
                svc.to_owned(),
                "--data-dir".into(),
                self.data_dir.display().to_string(),
                "--database".into(),
                self.database.clone(),
                "--redis".into(),
                self.redis.clone(),
                "--register".into(),
                self.rpc_list("register"),
                "--saver".into(),
                self.rpc_list("saver"),
                "--coordinator".into(),
                self.rpc_list("coordinator"),
            ];
            if !self.redis_cluster.is_empty() {
                args.extend(["--redis-cluster".into(), self.redis_cluster.join(",")]);
            }
            if let Some(c) = &self.config {
                args.extend(["--config".into(), c.display().to_string()]);
            }
            if self.tls_self_signed {
                args.push("--tls-self-signed".into());
            }
            args
        };
        let with = |mut args: Vec<String>, more: &[(&str, String)]| {
            for (flag, value) in more {
                args.push((*flag).to_owned());
                args.push(value.clone());
            }
            args
        };
        let mut out = Vec::new();
        for role in ROLES.iter().take(3) {
            for k in 1..=self.count(role) {
                let (name, rpc, metrics) = Plan::instance(role, k);
                let metrics = metrics.expect("a service with a metrics page");
                out.push((
                    name,
                    with(
                        common(role),
                        &[("--rpc", self.addr(rpc)), ("--http", self.addr(metrics))],
                    ),
                ));
            }
        }
        for i in 0..self.rooms {
            let base = 20 + 4 * i as u16;
            out.push((
                format!("room-{}", i + 1),
                with(
                    common("room"),
                    &[
                        ("--room-name", format!("room-{}", i + 1)),
                        ("--ws", self.addr(base)),
                        ("--tcp", self.addr(base + 1)),
                        ("--rpc", self.addr(base + 2)),
                        ("--http", self.addr(base + 3)),
                        ("--wss", self.addr(100 + 2 * i as u16)),
                        ("--tcp-tls", self.addr(101 + 2 * i as u16)),
                    ],
                ),
            ));
        }
        for k in 1..=self.count("dispatcher") {
            let (name, at, _) = Plan::instance("dispatcher", k);
            out.push((
                name,
                with(common("dispatcher"), &[("--dispatcher", self.addr(at))]),
            ));
        }
        for k in 1..=self.count("center") {
            let (name, at, _) = Plan::instance("center", k);
            out.push((name, with(common("center"), &[("--http", self.addr(at))])));
        }
        out
    }
}

/// The first address a child listens on (from its flags): up again once it accepts.
fn first_listener(args: &[String]) -> Option<String> {
    ["--rpc", "--dispatcher", "--http"].iter().find_map(|flag| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    })
}

/// Where a running launcher keeps its pid (for `cluster restart --rolling`), and the count
/// of rolling restarts it finished.
pub fn pid_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("cluster.pid")
}

fn restarts_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("cluster.restarts")
}

fn spawn(exe: &PathBuf, name: &str, args: &[String]) -> std::io::Result<Child> {
    let mut child = Command::new(exe)
        .args(args)
        // The child exits if this launcher dies without stopping it (even by SIGKILL).
        .env(PARENT_ENV, std::process::id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let name = name.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Keep draining even when our own stdout is gone (piped to a closed
                // reader): a child blocked on a full pipe would stop serving.
                use std::io::Write;
                let _ = writeln!(std::io::stdout().lock(), "[{name:>11}] {line}");
            }
        });
    }
    Ok(child)
}

/// Starts the plan's processes, prints where they listen, and runs until Ctrl-C, then
/// stops them (SIGTERM, so rooms drain; SIGKILL after `stop_wait`).
pub async fn run(plan: Plan, stop_wait: Duration) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    // Every process reads the same secret and key: made once here, before any starts.
    let (_, new_secret) = load_or_generate(&plan.data_dir.join("token-secret"))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let (_, new_key) = load_or_generate(&plan.data_dir.join("demo-api-key"))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut children = Vec::new();
    for (name, args) in plan.processes() {
        let child = spawn(&exe, &name, &args)?;
        children.push((name, args, child));
        // The stores' services first, so the others find them.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    std::fs::write(pid_file(&plan.data_dir), std::process::id().to_string())?;
    println!("longlink-push cluster: {} rooms", plan.rooms);
    let http = if plan.tls_self_signed {
        "https"
    } else {
        "http"
    };
    println!(
        "  every service but rooms: {} instance(s), centers: {}",
        plan.count("saver"),
        plan.count("center")
    );
    println!("  center (API, page)  {http}://{}", plan.addr(0));
    println!("  dispatcher          {http}://{}/dispatch", plan.addr(9));
    println!(
        "  register / saver / coordinator (rpc{})  {} / {} / {}",
        if plan.tls_self_signed {
            ", mutual TLS"
        } else {
            ""
        },
        plan.addr(10),
        plan.addr(11),
        plan.addr(12)
    );
    for i in 0..plan.rooms {
        let base = 20 + 4 * i as u16;
        println!(
            "  room-{}  ws://{}/  tcp {}  rpc {}  metrics http://{}/metrics",
            i + 1,
            plan.addr(base),
            plan.addr(base + 1),
            plan.addr(base + 2),
            plan.addr(base + 3)
        );
        if plan.tls_self_signed {
            let tls = 100 + 2 * i as u16;
            println!(
                "          wss://{}/  tcp+tls {}",
                plan.addr(tls),
                plan.addr(tls + 1)
            );
        }
    }
    if new_key {
        println!(
            "  generated an API key for app \"demo\": in {}",
            plan.data_dir.join("demo-api-key").display()
        );
    } else {
        println!(
            "  API key for app \"demo\": in {}",
            plan.data_dir.join("demo-api-key").display()
        );
    }
    if new_secret {
        println!(
            "  generated token secret (kept in {})",
            plan.data_dir.join("token-secret").display()
        );
    }
    println!(
        "  Ctrl-C stops them all; `longlink-push cluster restart --rolling` restarts each in turn."
    );
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let stop = super::run::stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangups.recv() => {
                rolling_restart(&exe, &mut children).await;
                let done = std::fs::read_to_string(restarts_file(&plan.data_dir))
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                std::fs::write(restarts_file(&plan.data_dir), (done + 1).to_string())?;
            }
        }
    }
    let _ = std::fs::remove_file(pid_file(&plan.data_dir));
    for (_, _, child) in &children {
        terminate(child).await;
    }
    let deadline = tokio::time::Instant::now() + stop_wait;
    for (name, _, child) in &mut children {
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("{name} did not stop in time: killing it");
                let _ = child.kill().await;
            }
        }
    }
    Ok(())
}

async fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
}

/// Restarts every child in turn — the services (savers, registers, coordinators,
/// dispatchers, centers), then the rooms — each with SIGTERM (it drains: callers leave it
/// out, calls in flight finish; a room moves its clients), waiting until the new process
/// accepts and the others' views have it again before the next. With two or more of each,
/// no push is refused (`every_instance_of_every_role_restarted_in_turn_refuses_nothing`).
async fn rolling_restart(exe: &PathBuf, children: &mut [(String, Vec<String>, Child)]) {
    println!(
        "rolling restart: {} processes, one at a time",
        children.len()
    );
    let rank = |name: &str| {
        let role = name.split('-').next().unwrap_or(name);
        ROLES.iter().position(|r| *r == role).unwrap_or(ROLES.len())
    };
    let mut order: Vec<usize> = (0..children.len()).collect();
    order.sort_by_key(|&i| rank(&children[i].0));
    for i in order {
        let (name, args, child) = &mut children[i];
        terminate(child).await;
        if tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .is_err()
        {
            eprintln!("{name} did not stop within 60 s: killing it");
            let _ = child.kill().await;
        }
        match spawn(exe, name, args) {
            Ok(new) => *child = new,
            Err(e) => {
                eprintln!("{name} could not be started again: {e}");
                continue;
            }
        }
        if let Some(addr) = first_listener(args) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while tokio::net::TcpStream::connect(&addr).await.is_err()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Two announce intervals (the default is 1 s): every caller's view has it again.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        println!("rolling restart: {name} restarted");
    }
    println!("rolling restart: done");
}

/// `longlink-push cluster restart --rolling`: asks the launcher running on `data_dir` for a
/// rolling restart and waits until it is done.
pub async fn request_rolling_restart(data_dir: &std::path::Path) -> Result<(), String> {
    let pid = std::fs::read_to_string(pid_file(data_dir))
        .map_err(|e| format!("no cluster is running on {} ({e})", data_dir.display()))?;
    let before = std::fs::read_to_string(restarts_file(data_dir)).unwrap_or_default();
    let sent = Command::new("kill")
        .args(["-HUP", pid.trim()])
        .status()
        .await
        .map_err(|e| e.to_string())?;
    if !sent.success() {
        return Err(format!("the launcher (pid {}) is not running", pid.trim()));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        if std::fs::read_to_string(restarts_file(data_dir)).unwrap_or_default() != before {
            println!("rolling restart done");
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the rolling restart did not finish within 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two rooms, two of every other role, on a single Redis.
    fn plan() -> Plan {
        Plan {
            rooms: 2,
            instances: 2,
            centers: 2,
            base_port: 7800,
            data_dir: PathBuf::from("/tmp/x"),
            database: "mysql://root@127.0.0.1:3306/test".into(),
            redis: "redis://127.0.0.1:6379/0".into(),
            redis_cluster: Vec::new(),
            config: None,
            tls_self_signed: false,
        }
    }

    #[test]
    fn a_plan_on_a_redis_cluster_passes_its_seeds_to_every_process() {
        let plan = Plan {
            redis_cluster: vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into(),
            ],
            ..plan()
        };
        for (name, args) in plan.processes() {
            let at = args.iter().position(|a| a == "--redis-cluster");
            assert_eq!(
                at.map(|i| args[i + 1].as_str()),
                Some("redis://10.0.0.1:7000,redis://10.0.0.2:7000"),
                "{name}: {args:?}"
            );
        }
        let single = Plan {
            redis_cluster: Vec::new(),
            ..plan
        };
        assert!(
            single
                .processes()
                .iter()
                .all(|(_, args)| !args.iter().any(|a| a == "--redis-cluster"))
        );
    }

    #[test]
    fn a_plan_with_two_instances_lists_both_and_gives_each_its_own_ports() {
        let plan = plan();
        let processes = plan.processes();
        let names: Vec<&str> = processes.iter().map(|(n, _)| n.as_str()).collect();
        for name in [
            "saver-2",
            "register-2",
            "coordinator-2",
            "dispatcher-2",
            "center-2",
        ] {
            assert!(names.contains(&name), "{names:?}");
        }
        let (_, room) = &processes[names.iter().position(|n| *n == "room-1").unwrap()];
        let saver = room.iter().position(|a| a == "--saver").unwrap();
        assert_eq!(room[saver + 1], "127.0.0.1:7811,127.0.0.1:8003");
        let mut ports: Vec<String> = processes
            .iter()
            .flat_map(|(_, args)| {
                args.windows(2)
                    .filter(|w| w[0].starts_with("--") && w[1].starts_with("127.0.0.1:"))
                    .filter(|w| {
                        !matches!(w[0].as_str(), "--register" | "--saver" | "--coordinator")
                    })
                    .map(|w| w[1].clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        let all = ports.len();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), all, "every listener has its own port");
    }
}
