//! Starts a push system under test as child processes of the `longlink-push` binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `longlink-push all` (SQLite store).
    Single,
    /// `longlink-push cluster --rooms N --centers C` with this RPC strategy, on Redis and
    /// MariaDB.
    Cluster {
        /// Room processes.
        rooms: usize,
        /// `multiplexed`, `pooled` or `short`.
        strategy: String,
        /// Center processes (the load is spread over them).
        centers: usize,
    },
}

impl Mode {
    /// A short label.
    pub fn label(&self) -> String {
        match self {
            Mode::Single => "single process".into(),
            Mode::Cluster {
                rooms,
                strategy,
                centers: 1,
            } => format!("cluster ({rooms} rooms), {strategy}"),
            Mode::Cluster {
                rooms,
                strategy,
                centers,
            } => format!("cluster ({rooms} rooms, {centers} centers), {strategy}"),
        }
    }
}

/// A running system; dropping it stops it (SIGINT, then SIGKILL).
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// The center's base URL.
    pub center: String,
    /// Every center's base URL (`center` first).
    pub centers: Vec<String>,
    /// The demo app's API key.
    pub key: String,
    /// The token secret.
    pub secret: String,
    _dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mode` from `bin` with its data under `dir`, ports from `base_port`; returns
/// once the center answers and its dispatcher lists every room.
pub fn start(
    bin: &Path,
    mode: &Mode,
    dir: &Path,
    base_port: u16,
    database: &str,
) -> Result<Running, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let config = dir.join("bench.toml");
    let (args, rooms): (Vec<String>, usize) = match mode {
        Mode::Single => (
            vec![
                "all".into(),
                "--http".into(),
                format!("127.0.0.1:{base_port}"),
                "--ws".into(),
                format!("127.0.0.1:{}", base_port + 1),
                "--tcp".into(),
                format!("127.0.0.1:{}", base_port + 2),
                "--no-dev-page".into(),
                "--log".into(),
                "warn".into(),
            ],
            1,
        ),
        Mode::Cluster {
            rooms,
            strategy,
            centers,
        } => {
            std::fs::write(
                &config,
                format!(
                    "dev_page = false\n[cluster]\nrpc_strategy = \"{strategy}\"\nredis_prefix = \"llbench{}:\"\nrpc_max_in_flight = 20000\n",
                    std::process::id()
                ),
            )
            .map_err(|e| e.to_string())?;
            (
                vec![
                    "cluster".into(),
                    "--rooms".into(),
                    rooms.to_string(),
                    "--base-port".into(),
                    base_port.to_string(),
                    "--database".into(),
                    database.to_owned(),
                    "--config".into(),
                    config.display().to_string(),
                    "--centers".into(),
                    centers.to_string(),
                ],
                *rooms,
            )
        }
    };
    let mut child = Command::new(bin)
        .args(&args)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    // Drain its output so it never blocks on a full pipe.
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines() {});
    let center = format!("http://127.0.0.1:{base_port}");
    // The launcher puts center k ≥ 2 at +200+10(k−2).
    let center_ports: Vec<u16> = match mode {
        Mode::Single => vec![base_port],
        Mode::Cluster { centers, .. } => (0..(*centers).max(1))
            .map(|k| {
                if k == 0 {
                    base_port
                } else {
                    base_port + 200 + 10 * (k as u16 - 1)
                }
            })
            .collect(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let key_path = dir.join("demo-api-key");
    loop {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{} did not come up", mode.label()));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{} exited: {status}", mode.label()));
        }
        let ready = key_path.exists()
            && center_ports
                .iter()
                .all(|&p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
            && dispatch_rooms(base_port) >= rooms;
        if ready {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_owned())
            .map_err(|e| e.to_string())
    };
    Ok(Running {
        child,
        center,
        centers: center_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect(),
        key: read("demo-api-key")?,
        secret: read("token-secret")?,
        _dir: dir.to_owned(),
    })
}

/// Rooms the dispatcher lists now (a blocking HTTP/1.0 request: no runtime needed).
fn dispatch_rooms(port: u16) -> usize {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /dispatch?uid=probe&net=wifi HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return 0;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.matches("\"tcp\"").count()
}
