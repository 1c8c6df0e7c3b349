//! The binary: killed with SIGKILL and started again on the same SQLite file it loses no
//! stored message; its `token` and `client` subcommands work against its `all`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::WAIT;
use longlink_push::client::{Client, ClientConfig, Event};
use longlink_push::token::Tokens;

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
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.trim().strip_prefix("center API: ") {
                let _ = tx.send(rest.split("/push").next().unwrap().to_owned());
            }
        }
    });
    let center = rx
        .recv_timeout(WAIT)
        .expect("the binary prints its address");
    Running { child, center }
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
