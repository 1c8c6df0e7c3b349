//! Secrets never reach the logs, the metrics page or an error message: the binary runs
//! with every log level on while a client authenticates, refreshes, pulls a body with its
//! token in the query string, and others present wrong keys and tokens; then its output,
//! its `/metrics` and every refusal it sent are searched for the token secret, the JWT
//! secret, the API keys and every token used.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use longlink_codec::push::{PushMessage, Refresh};
use longlink_push::token::{JwtConfig, Secret, Tokens, TokensConfig};
use longlink_push_client::{Client, ClientConfig, Event};
use serde_json::json;

const TOKEN_SECRET: &str = "token-secret-that-must-stay-hidden-41";
const JWT_SECRET: &str = "jwt-secret-that-must-stay-hidden-of-32-bytes-or-more";
const WRONG_KEY: &str = "a-wrong-api-key-that-must-not-be-echoed";

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn jwt(uid: &str, secs: u64) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": uid, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn get(url: &str) -> String {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn post(url: &str, key: &str, body: serde_json::Value) -> (u16, String) {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let request = http::Request::post(url)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn a_run_with_every_log_level_on_shows_no_secret_key_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let (http, ws, tcp) = (free_port(), free_port(), free_port());
    let mut config = config(dir.path());
    config.http_listen = format!("127.0.0.1:{http}").parse().unwrap();
    config.room.ws_listen = format!("127.0.0.1:{ws}").parse().unwrap();
    config.room.tcp_listen = format!("127.0.0.1:{tcp}").parse().unwrap();
    config.token_secret = Some(Secret::new(TOKEN_SECRET));
    let mut jwt_config = JwtConfig::default();
    jwt_config.hs256_secret = Some(Secret::new(JWT_SECRET));
    config.tokens = TokensConfig::with_jwt(jwt_config);
    // The configuration's Debug form, which a log line might carry, shows no secret.
    let debug = format!("{config:?}");
    for secret in [TOKEN_SECRET, JWT_SECRET, KEY, OTHER_KEY] {
        assert!(!debug.contains(secret), "Config's Debug shows {secret}");
    }
    let path = dir.path().join("push.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_longlink-push"))
        .args(["all", "--log", "trace", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let running = Running { child };
    let center = format!("http://127.0.0.1:{http}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", tcp))
        .await
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline, "the binary is up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let tokens = Tokens::new(TOKEN_SECRET.as_bytes());
    let hmac_token = tokens.issue("s1", Duration::from_secs(600));
    let (jwt_token, refreshed) = (jwt("s2", 600), jwt("s2", 900));
    let other_users = jwt("someone-else", 600);
    let mut refusals = Vec::new();

    // A client authenticates with an HMAC token and pulls a notify body (the token in the
    // query string).
    let mut client = Client::start(ClientConfig::new(&center, "s1", &hmac_token));
    assert!(matches!(event(&mut client).await, Event::Connected { .. }));
    let (status, answer) = post(
        &format!("{center}/push/unicast"),
        KEY,
        json!({"uid": "s1", "body": "pull me", "mode": "notify"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let id = match event(&mut client).await {
        Event::Message(m) => m.id,
        other => panic!("expected the notify message, got {other:?}"),
    };
    assert_eq!(client.pull(id).await.unwrap().as_ref(), b"pull me");
    let bad_pull = get(&format!(
        "{center}/messages/{id}/body?uid=s1&token={other_users}"
    ))
    .await;
    refusals.push(bad_pull);

    // A JWT connection refreshes; others present a token for someone else and a forgery.
    let mut raw = Raw::connect(format!("127.0.0.1:{tcp}").parse().unwrap()).await;
    let reply = raw.auth("s2", &jwt_token).await;
    assert!(
        matches!(&reply, PushMessage::AuthReply(r) if r.ok),
        "{reply:?}"
    );
    raw.send(&PushMessage::Refresh(Refresh {
        token: refreshed.clone(),
    }))
    .await;
    let reply = raw.recv().await.unwrap();
    assert!(
        matches!(&reply, PushMessage::AuthReply(r) if r.ok),
        "{reply:?}"
    );
    raw.send(&PushMessage::Refresh(Refresh {
        token: other_users.clone(),
    }))
    .await;
    refusals.push(format!("{:?}", raw.recv().await));
    for (uid, token) in [("s3", other_users.as_str()), ("s3", "forged.123.c2ln")] {
        let mut raw = Raw::connect(format!("127.0.0.1:{tcp}").parse().unwrap()).await;
        let reply = raw.auth(uid, token).await;
        assert!(
            matches!(&reply, PushMessage::AuthReply(r) if !r.ok),
            "{reply:?}"
        );
        refusals.push(format!("{reply:?}"));
    }
    // A wrong API key.
    let (status, answer) = post(
        &format!("{center}/push/unicast"),
        WRONG_KEY,
        json!({"uid": "s1", "body": "x"}),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    refusals.push(answer);
    let metrics = get(&format!("{center}/metrics")).await;
    assert!(
        metrics.contains("longlink_push_token_refreshes_total 1"),
        "{metrics}"
    );

    drop(client);
    drop(running);
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    // The logs are really on (debug and up from every crate: sqlx's statements, hyper's
    // connections, the rooms' sessions).
    assert!(err.contains("DEBUG") && err.lines().count() > 20, "{err}");
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    let mut secrets = vec![
        ("the token secret", TOKEN_SECRET.to_owned()),
        ("the JWT secret", JWT_SECRET.to_owned()),
        ("the API key", KEY.to_owned()),
        ("the other app's API key", OTHER_KEY.to_owned()),
        ("a wrong API key", WRONG_KEY.to_owned()),
    ];
    for (what, token) in [
        ("the HMAC token", &hmac_token),
        ("the JWT", &jwt_token),
        ("the refreshed JWT", &refreshed),
        ("another user's JWT", &other_users),
    ] {
        secrets.push((what, signature(token)));
        secrets.push((what, token.clone()));
    }
    for (place, text) in [
        ("stdout", &out),
        ("the logs", &err),
        ("/metrics", &metrics),
        ("a refusal", &refusals.join("\n")),
    ] {
        for (what, secret) in &secrets {
            assert!(!text.contains(secret.as_str()), "{place} shows {what}");
        }
    }
}
