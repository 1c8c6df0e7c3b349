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
    /// Ports count from here: center +0, dispatcher +9, register +10 (metrics +13), saver
    /// +11 (metrics +14), coordinator +12 (metrics +15), room i at +20+4i (ws, tcp, rpc,
    /// metrics) and +100+2i (wss, TCP+TLS).
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

impl Plan {
    fn addr(&self, offset: u16) -> String {
        format!("127.0.0.1:{}", self.base_port + offset)
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
                self.addr(10),
                "--saver".into(),
                self.addr(11),
                "--coordinator".into(),
                self.addr(12),
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
        let mut out = vec![
            (
                "register".to_owned(),
                with(
                    common("register"),
                    &[("--rpc", self.addr(10)), ("--http", self.addr(13))],
                ),
            ),
            (
                "saver".to_owned(),
                with(
                    common("saver"),
                    &[("--rpc", self.addr(11)), ("--http", self.addr(14))],
                ),
            ),
            (
                "coordinator".to_owned(),
                with(
                    common("coordinator"),
                    &[("--rpc", self.addr(12)), ("--http", self.addr(15))],
                ),
            ),
        ];
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
        out.push((
            "dispatcher".to_owned(),
            with(common("dispatcher"), &[("--dispatcher", self.addr(9))]),
        ));
        out.push((
            "center".to_owned(),
            with(common("center"), &[("--http", self.addr(0))]),
        ));
        out
    }
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
        children.push((name, child));
        // The stores' services first, so the others find them.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    println!("longlink-push cluster: {} rooms", plan.rooms);
    let http = if plan.tls_self_signed {
        "https"
    } else {
        "http"
    };
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
    println!("  Ctrl-C stops them all.");
    super::run::stop_signal().await;
    for (_, child) in &children {
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
    }
    let deadline = tokio::time::Instant::now() + stop_wait;
    for (name, child) in &mut children {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_on_a_redis_cluster_passes_its_seeds_to_every_process() {
        let plan = Plan {
            rooms: 2,
            base_port: 7800,
            data_dir: PathBuf::from("/tmp/x"),
            database: "mysql://root@127.0.0.1:3306/test".into(),
            redis: "redis://127.0.0.1:6379/0".into(),
            redis_cluster: vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into(),
            ],
            config: None,
            tls_self_signed: false,
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
}
