//! The binary: killed with SIGKILL and started again on the same SQLite file it loses no
//! stored message; its `token` and `client` subcommands work against its `all`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::WAIT;
use longlink_push::token::Tokens;
use longlink_push_client::{Client, ClientConfig, Event};

struct Running {
    child: Child,
    center: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `longlink-push all` on ephemeral ports and reads the center's address from what
/// it prints.
fn spawn(dir: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_longlink-push"))
        .args([
            "all",
            "--http",
            "127.0.0.1:0",
            "--ws",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let rx = lines(child.stdout.take().unwrap());
    let center = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("the binary prints its address");
        if let Some(rest) = line.trim().strip_prefix("center API: ") {
            break rest.split("/push").next().unwrap().to_owned();
        }
    };
    Running { child, center }
}

/// A process's output, line by line, read on a thread (so it never blocks on a full pipe).
fn lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    rx
}

async fn post(center: &str, key: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    request(center, "/push/unicast", key, Some(body)).await
}

async fn request(
    center: &str,
    path: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(format!("{center}{path}"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let response = client.request(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn kill_9_and_restart_on_the_same_store_loses_no_stored_message() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn(dir.path());
    let key = std::fs::read_to_string(dir.path().join("demo-api-key")).unwrap();
    let secret = std::fs::read_to_string(dir.path().join("token-secret")).unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        let (status, answer) = post(
            &first.center,
            &key,
            serde_json::json!({"uid": "offline", "body": format!("message {i}")}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["id"].as_u64().unwrap());
    }
    // SIGKILL right after the last 200: no shutdown path runs.
    drop(first);

    let second = spawn(dir.path());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("demo-api-key")).unwrap(),
        key,
        "the key is kept, not generated again"
    );
    let token = Tokens::new(secret.trim().as_bytes()).issue("offline", Duration::from_secs(60));
    let mut client = Client::start(ClientConfig::new(&second.center, "offline", &token));
    let mut got = Vec::new();
    while got.len() < ids.len() {
        match tokio::time::timeout(WAIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Message(m) => got.push(m.id),
            Event::Connected { .. } | Event::Duplicate(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, ids, "every stored message, oldest first");
    // Ids keep increasing across the restart: none is handed out twice.
    let (status, answer) = post(
        &second.center,
        &key,
        serde_json::json!({"uid": "offline", "body": "after the restart"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(answer["id"].as_u64().unwrap() > *ids.last().unwrap());
}

#[tokio::test]
async fn the_cli_client_prints_what_arrives_with_a_token_from_the_token_command() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn(dir.path());
    let key = std::fs::read_to_string(dir.path().join("demo-api-key")).unwrap();
    let token = Command::new(env!("CARGO_BIN_EXE_longlink-push"))
        .args(["token", "--uid", "cli-user", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let mut client = Command::new(env!("CARGO_BIN_EXE_longlink-push"))
        .args([
            "client",
            "--uid",
            "cli-user",
            "--count",
            "2",
            "--center",
            &server.center,
        ])
        .args(["--token", &token])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, user) = request(&server.center, "/users/cli-user", &key, None).await;
        if user["online"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI client never came online"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post(
        &server.center,
        &key,
        serde_json::json!({"uid": "cli-user", "body": "first"}),
    )
    .await;
    post(
        &server.center,
        &key,
        serde_json::json!({"uid": "cli-user", "body": "pulled body", "mode": "notify"}),
    )
    .await;
    let output = tokio::task::spawn_blocking(move || {
        let status = client.wait().unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut client.stdout.take().unwrap(), &mut out).unwrap();
        (status, out)
    });
    let (status, out) = tokio::time::timeout(WAIT, output).await.unwrap().unwrap();
    assert!(status.success(), "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["body"], "first");
    assert_eq!(
        (lines[1]["mode"].as_str(), lines[1]["body"].as_str()),
        (Some("notify"), Some("pulled body"))
    );
}

/// `GET /metrics` as text, waiting while the process has no file to accept it with.
async fn metrics_text(center: &str) -> String {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let uri: http::Uri = format!("{center}/metrics").parse().unwrap();
    let response = tokio::time::timeout(WAIT, client.get(uri))
        .await
        .expect("the center answers once files are free")
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_at_its_open_file_limit_backs_off_and_keeps_serving() {
    use longlink_codec::push::PushMessage;
    let dir = tempfile::tempdir().unwrap();
    // A hard limit of 128 open files for the whole process (sh sets soft and hard).
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec {} all --http 127.0.0.1:0 --ws 127.0.0.1:0 --tcp 127.0.0.1:0 --log error --data-dir {}",
            env!("CARGO_BIN_EXE_longlink-push"),
            dir.path().display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines(child.stdout.take().unwrap());
    let (mut center, mut tcp) = (String::new(), String::new());
    while center.is_empty() || tcp.is_empty() {
        let line = rx
            .recv_timeout(WAIT)
            .expect("the binary prints its addresses");
        if let Some(rest) = line.trim().strip_prefix("center API: ") {
            center = rest.split("/push").next().unwrap().to_owned();
        }
        if let Some(rest) = line.trim().strip_prefix("room:") {
            tcp = rest.rsplit("tcp ").next().unwrap().trim().to_owned();
        }
    }
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let key = std::fs::read_to_string(dir.path().join("demo-api-key")).unwrap();
    let secret = std::fs::read_to_string(dir.path().join("token-secret")).unwrap();
    let tokens = Tokens::new(secret.trim().as_bytes());
    let addr: std::net::SocketAddr = tcp.parse().unwrap();
    let mut users = Vec::new();
    for i in 0..5 {
        let mut raw = common::Raw::connect(addr).await;
        let uid = format!("fd{i}");
        let reply = raw
            .auth(&uid, &tokens.issue(&uid, Duration::from_secs(60)))
            .await;
        assert!(
            matches!(reply, PushMessage::AuthReply(ref r) if r.ok),
            "{reply:?}"
        );
        users.push(raw);
    }
    // More connections than the limit leaves: the room accepts until EMFILE, then backs
    // off; the rest wait in the listen backlog.
    let mut flood = Vec::new();
    for _ in 0..150 {
        flood.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The connections it has are served meanwhile.
    for raw in &mut users {
        raw.send(&PushMessage::Heartbeat).await;
        assert_eq!(raw.recv().await, Some(PushMessage::HeartbeatReply));
    }
    drop(flood);
    let metrics = metrics_text(&center).await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(value("longlink_push_fd_limit"), 128);
    assert_eq!(value("longlink_push_capacity"), 28);
    let errors = value("longlink_push_accept_errors_total");
    // Backing off 100 ms per failure: a few dozen in about a second, not a spin.
    assert!((1..=100).contains(&errors), "{errors} accept errors");
    let (status, answer) = post(
        &center,
        key.trim(),
        serde_json::json!({"uid": "fd0", "body": "still here"}),
    )
    .await;
    assert_eq!(
        (status, answer["delivered"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    match users[0].recv().await {
        Some(PushMessage::Message(m)) => assert_eq!(m.body.as_str(), Some("still here")),
        other => panic!("{other:?}"),
    }
}

mod cluster {
    use super::*;

    async fn mysql(sql: String) {
        let db = longlink_pool::db::Db::open("mysql://root@127.0.0.1:3306/test").unwrap();
        db.exec(&sql, ()).await.unwrap();
        db.close();
    }

    /// `longlink-push cluster --rooms N` on ports from `base`, its own MariaDB database and
    /// the `[cluster]` settings `cluster`; returns its data dir, the process and its output.
    async fn launch(
        rooms: usize,
        base: u16,
        database: &str,
        cluster: &str,
    ) -> (tempfile::TempDir, Child, std::sync::mpsc::Receiver<String>) {
        launch_with(rooms, base, database, cluster, &[]).await
    }

    async fn launch_with(
        rooms: usize,
        base: u16,
        database: &str,
        cluster: &str,
        extra: &[&str],
    ) -> (tempfile::TempDir, Child, std::sync::mpsc::Receiver<String>) {
        mysql(format!("CREATE DATABASE IF NOT EXISTS {database}")).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, format!("[cluster]\n{cluster}")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_longlink-push"))
            .args([
                "cluster",
                "--rooms",
                &rooms.to_string(),
                "--base-port",
                &base.to_string(),
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--database",
                &format!("mysql://root@127.0.0.1:3306/{database}"),
            ])
            .arg("--config")
            .arg(&config)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let rx = lines(child.stdout.take().unwrap());
        (dir, child, rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cluster_command_starts_every_service_and_ctrl_c_stops_them_all() {
        let pid = std::process::id();
        // Below the kernel's ephemeral range (32768 and up here), where no other test's
        // socket lands by chance.
        let base: u16 = 20_000 + (pid % 300) as u16 * 40;
        let database = format!("llpush_launch{pid}");
        let (dir, mut child, rx) = launch(
            3,
            base,
            &database,
            &format!(
                "redis_prefix = \"lllaunch{pid}:\"\ndrain_window_ms = 300\nannounce_ms = 200\n"
            ),
        )
        .await;
        // If the test fails, Ctrl-C the launcher so that no child outlives it.
        struct Interrupt(u32);
        impl Drop for Interrupt {
            fn drop(&mut self) {
                let _ = Command::new("kill")
                    .args(["-INT", &self.0.to_string()])
                    .status();
            }
        }
        let _guard = Interrupt(child.id());
        let mut printed = Vec::new();
        loop {
            let line = rx.recv_timeout(WAIT).expect("the launcher prints its plan");
            let done = line.contains("Ctrl-C stops them all");
            printed.push(line);
            if done {
                break;
            }
        }
        let printed = printed.join("\n");
        for name in [
            "[   register] rpc",
            "[      saver] rpc",
            "[     room-3] ws",
            "[     center] http",
        ] {
            assert!(printed.contains(name), "{name} missing from:\n{printed}");
        }
        let center = format!("http://127.0.0.1:{base}");
        let key = std::fs::read_to_string(dir.path().join("demo-api-key")).unwrap();
        let secret = std::fs::read_to_string(dir.path().join("token-secret")).unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (status, d) = request(&center, "/dispatch?uid=u1&net=wifi", &key, None).await;
            if status == 200 && d["rooms"].as_array().map(Vec::len) == Some(3) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never 3 rooms: {d}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let token = Tokens::new(secret.trim().as_bytes()).issue("u1", Duration::from_secs(60));
        let mut client = Client::start(ClientConfig::new(&center, "u1", &token));
        match tokio::time::timeout(WAIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Connected { .. } => {}
            other => panic!("{other:?}"),
        }
        let (status, answer) = post(
            &center,
            key.trim(),
            serde_json::json!({"uid": "u1", "body": "hi"}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        match tokio::time::timeout(WAIT, client.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Message(m) => assert_eq!(m.body.as_str(), Some("hi")),
            other => panic!("{other:?}"),
        }
        drop(client);

        // Ctrl-C: every child stops (rooms drain first), then the launcher exits.
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap());
        let status = tokio::time::timeout(Duration::from_secs(30), status)
            .await
            .expect("the launcher stops")
            .unwrap();
        assert!(status.success());
        for offset in [0, 9, 10, 11, 12, 20, 24, 28] {
            assert!(
                std::net::TcpStream::connect(("127.0.0.1", base + offset)).is_err(),
                "port {} still open",
                base + offset
            );
        }
        mysql(format!("DROP DATABASE IF EXISTS {database}")).await;
        cleanup_redis(pid).await;
    }

    async fn cleanup_redis(pid: u32) {
        common::delete_redis_keys(&format!("lllaunch{pid}")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_launcher_takes_its_cluster_with_it() {
        let pid = std::process::id();
        // Its own port block, away from the other launcher test's.
        let base: u16 = 20_000 + ((pid + 150) % 300) as u16 * 40;
        let database = format!("llpush_orphan{pid}");
        let (_dir, mut child, rx) = launch(
            1,
            base,
            &database,
            &format!("redis_prefix = \"lllaunch{pid}o:\"\n"),
        )
        .await;
        while !rx
            .recv_timeout(WAIT)
            .expect("the launcher prints its plan")
            .contains("Ctrl-C stops them all")
        {}
        assert!(std::net::TcpStream::connect(("127.0.0.1", base)).is_ok());
        // SIGKILL: the launcher runs no stop path; its children notice and exit.
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        for offset in [0, 9, 10, 11, 12, 20] {
            while std::net::TcpStream::connect(("127.0.0.1", base + offset)).is_ok() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "port {} still served after the launcher died",
                    base + offset
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        mysql(format!("DROP DATABASE IF EXISTS {database}")).await;
        cleanup_redis(pid).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_restart_rolling_restarts_every_process_and_refuses_no_push() {
        let pid = std::process::id();
        // Its own port block (instances 2 use +200…+207), away from the other tests'.
        let base: u16 = 20_000 + ((pid + 75) % 300) as u16 * 40;
        let database = format!("llpush_rolling{pid}");
        let (dir, mut child, rx) = launch_with(
            2,
            base,
            &database,
            &format!(
                "redis_prefix = \"lllaunch{pid}r:\"\ndrain_window_ms = 300\nannounce_ms = 200\nroom_ttl_ms = 1000\n"
            ),
            &["--instances", "2"],
        )
        .await;
        struct Interrupt(u32);
        impl Drop for Interrupt {
            fn drop(&mut self) {
                let _ = Command::new("kill")
                    .args(["-INT", &self.0.to_string()])
                    .status();
            }
        }
        let _guard = Interrupt(child.id());
        while !rx
            .recv_timeout(WAIT)
            .expect("the launcher prints its plan")
            .contains("Ctrl-C stops them all")
        {}
        let centers = [
            format!("http://127.0.0.1:{base}"),
            format!("http://127.0.0.1:{}", base + 200),
        ];
        let key = std::fs::read_to_string(dir.path().join("demo-api-key")).unwrap();
        let key = key.trim().to_owned();
        let secret = std::fs::read_to_string(dir.path().join("token-secret")).unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (status, d) = request(&centers[0], "/dispatch?uid=u1&net=wifi", &key, None).await;
            if status == 200 && d["rooms"].as_array().map(Vec::len) == Some(2) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never 2 rooms: {d}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Four users, each recording what arrives (the client ACKs it).
        let received: std::sync::Arc<parking_lot::Mutex<std::collections::HashSet<u64>>> =
            Default::default();
        let mut clients = Vec::new();
        for i in 0..4 {
            let uid = format!("u{i}");
            let token = Tokens::new(secret.trim().as_bytes()).issue(&uid, Duration::from_secs(600));
            let mut client = Client::start(ClientConfig::new(&centers[0], &uid, &token));
            match tokio::time::timeout(WAIT, client.next_event())
                .await
                .unwrap()
                .unwrap()
            {
                Event::Connected { .. } => {}
                other => panic!("{other:?}"),
            }
            let received = std::sync::Arc::clone(&received);
            clients.push(tokio::spawn(async move {
                while let Some(event) = client.next_event().await {
                    if let Event::Message(m) = event {
                        received.lock().insert(m.id);
                    }
                }
            }));
        }
        // Steady pushes while `cluster restart --rolling` runs.
        let restart = tokio::spawn({
            let dir = dir.path().to_owned();
            async move {
                tokio::process::Command::new(env!("CARGO_BIN_EXE_longlink-push"))
                    .args(["cluster", "restart", "--rolling", "--data-dir"])
                    .arg(dir)
                    .stdout(Stdio::null())
                    .status()
                    .await
                    .unwrap()
            }
        });
        let api = longlink_push_client::CenterApi::new(centers.clone(), &key).unwrap();
        let mut sent = Vec::new();
        let mut refused = Vec::new();
        let started = std::time::Instant::now();
        let mut i = 0usize;
        while !restart.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "the rolling restart never ended"
            );
            let body = serde_json::json!({"uid": format!("u{}", i % 4), "body": format!("m{i}")});
            // The center API client: the centers in turn, the next one after a failure.
            match api.push("/push/unicast", body).await {
                Ok(pushed) => {
                    sent.push(pushed.id);
                    if pushed.refusals > 0 {
                        refused.push(format!("{} refusals before it was taken", pushed.refusals));
                    }
                }
                Err(e) => refused.push(e.to_string()),
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert!(restart.await.unwrap().success(), "restart --rolling failed");
        eprintln!(
            "rolling restart of 12 processes in {:?}: {} pushes, {} refused",
            started.elapsed(),
            sent.len(),
            refused.len()
        );
        assert!(refused.is_empty(), "refused: {refused:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let missing = sent
                .iter()
                .filter(|id| !received.lock().contains(id))
                .count();
            if missing == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{missing} of {} never arrived",
                sent.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for c in clients {
            c.abort();
        }
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let stopped = tokio::task::spawn_blocking(move || child.wait());
        let _ = tokio::time::timeout(Duration::from_secs(30), stopped).await;
        mysql(format!("DROP DATABASE IF EXISTS {database}")).await;
        cleanup_redis(pid).await;
    }
}
