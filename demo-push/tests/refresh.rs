//! Tokens on live connections: JWTs at AUTH (their `apps` claim bounds AUTH, SUBSCRIBE and
//! REFRESH), REFRESH in both forms, and the close of a connection whose token expired
//! unrefreshed (on for JWTs, off for HMAC tokens unless configured).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use longlink_codec::push::{Auth, Net, PushMessage, Refresh, Subscribe};
use longlink_push::config::Config;
use longlink_push::token::{JwtConfig, Secret, TokensConfig};
use longlink_push_client::{Event, TokenSource};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "a system secret of at least 32 bytes, for tests";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 JWT for `uid` expiring in `secs`, with these extra claims.
fn jwt(uid: &str, secs: u64, extra: Value) -> String {
    let mut claims = json!({"sub": uid, "exp": now() + secs});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// JWTs with the system secret, no leeway, a one-second grace after expiry.
fn with_jwt(c: &mut Config) {
    let mut jwt = JwtConfig::default();
    jwt.hs256_secret = Some(Secret::new(SECRET));
    jwt.leeway = Duration::ZERO;
    c.tokens = TokensConfig::with_jwt(jwt);
    c.room.token_expiry.grace = Duration::from_secs(1);
}

async fn auth(raw: &mut Raw, uid: &str, token: &str, apps: &[&str]) -> PushMessage {
    raw.send(&PushMessage::Auth(Auth {
        uid: uid.into(),
        device: "raw".into(),
        net: Net::Wifi,
        token: token.into(),
        apps: apps.iter().map(|a| (*a).to_owned()).collect(),
    }))
    .await;
    raw.recv().await.expect("an auth reply")
}

fn ok(reply: &PushMessage) -> bool {
    matches!(reply, PushMessage::AuthReply(r) if r.ok)
}

fn reason(reply: &PushMessage) -> String {
    match reply {
        PushMessage::AuthReply(r) => r.reason.clone().unwrap_or_default(),
        PushMessage::Error(e) => e.reason.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Heartbeats every 500 ms until the room closes the connection or `within` passes;
/// returns what came that is not a heartbeat reply, and whether it was closed.
async fn keep_alive(raw: &mut Raw, within: Duration) -> (Vec<PushMessage>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let beat = PushMessage::Heartbeat.to_frame(1).unwrap();
        if raw.framed.send(beat).await.is_err() {
            // Closed; what it said before is still to be read.
            while let Ok(Some(Ok(frame))) =
                tokio::time::timeout(Duration::from_millis(500), raw.framed.next()).await
            {
                got.push(PushMessage::from_frame(&frame).unwrap());
            }
            got.retain(|m| *m != PushMessage::HeartbeatReply);
            return (got, true);
        }
        match tokio::time::timeout(Duration::from_millis(500), raw.framed.next()).await {
            Err(_) => {}
            Ok(None) | Ok(Some(Err(_))) => return (got, true),
            Ok(Some(Ok(frame))) => match PushMessage::from_frame(&frame).unwrap() {
                PushMessage::HeartbeatReply => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => got.push(other),
            },
        }
    }
    (got, false)
}

#[tokio::test]
async fn a_jwt_connection_is_closed_after_expiry_and_grace_unless_a_refresh_came() {
    let s = start_with(with_jwt).await;
    let mut lapsing = Raw::connect(s.tcp()).await;
    assert!(ok(&auth(
        &mut lapsing,
        "e1",
        &jwt("e1", 2, json!({})),
        &["demo"]
    )
    .await));
    let mut refreshed = Raw::connect(s.tcp()).await;
    assert!(ok(&auth(
        &mut refreshed,
        "e2",
        &jwt("e2", 2, json!({})),
        &["demo"]
    )
    .await));
    refreshed
        .send(&PushMessage::Refresh(Refresh {
            token: jwt("e2", 600, json!({})),
        }))
        .await;
    let reply = refreshed.recv().await.unwrap();
    assert!(ok(&reply), "{reply:?}");

    let (got, closed) = keep_alive(&mut lapsing, WAIT).await;
    assert!(closed, "the lapsed connection was never closed");
    match got.as_slice() {
        [PushMessage::Error(e)] => {
            assert_eq!(e.code, 401);
            assert!(e.reason.contains("expired"), "{}", e.reason);
        }
        other => panic!("expected one ERROR 401, got {other:?}"),
    }
    // Past the first token's expiry and grace, the refreshed one is still served.
    let (got, closed) = keep_alive(&mut refreshed, Duration::from_secs(1)).await;
    assert!(!closed && got.is_empty(), "{got:?}");
    assert_eq!(s.metric("longlink_push_token_expired_total").await, 1);
    assert_eq!(s.metric("longlink_push_token_refreshes_total").await, 1);
}

#[tokio::test]
async fn an_expired_hmac_token_is_kept_by_default_and_closed_when_configured() {
    let s = start().await;
    let mut kept = Raw::connect(s.tcp()).await;
    let token = s.system.tokens.issue_until("h1", now() + 2);
    assert!(ok(&auth(&mut kept, "h1", &token, &["demo"]).await));
    let (got, closed) = keep_alive(&mut kept, Duration::from_secs(4)).await;
    assert!(!closed && got.is_empty(), "{got:?}");

    let s = start_with(|c| {
        c.room.token_expiry.hmac = true;
        c.room.token_expiry.grace = Duration::from_secs(1);
    })
    .await;
    let mut closed_one = Raw::connect(s.tcp()).await;
    let token = s.system.tokens.issue_until("h2", now() + 2);
    assert!(ok(&auth(&mut closed_one, "h2", &token, &["demo"]).await));
    let (got, closed) = keep_alive(&mut closed_one, WAIT).await;
    assert!(closed);
    assert!(
        matches!(got.as_slice(), [PushMessage::Error(e)] if e.code == 401),
        "{got:?}"
    );
}

#[tokio::test]
async fn the_apps_claim_bounds_auth_subscribe_and_refresh() {
    let s = start_with(with_jwt).await;
    let demo_only = jwt("a1", 600, json!({"apps": ["demo"]}));
    let mut raw = Raw::connect(s.tcp()).await;
    let refused = auth(&mut raw, "a1", &demo_only, &["demo", "other"]).await;
    assert!(!ok(&refused));
    assert!(reason(&refused).contains("\"other\""), "{refused:?}");

    let mut raw = Raw::connect(s.tcp()).await;
    assert!(ok(&auth(&mut raw, "a1", &demo_only, &["demo"]).await));
    raw.send(&PushMessage::Subscribe(Subscribe {
        apps: vec!["other".into()],
    }))
    .await;
    let refused = raw.recv().await.unwrap();
    assert!(
        matches!(&refused, PushMessage::Error(e) if e.code == 400 && e.reason.contains("does not allow")),
        "{refused:?}"
    );
    // A new token that no longer allows what the connection subscribes: refused, kept.
    raw.send(&PushMessage::Refresh(Refresh {
        token: jwt("a1", 600, json!({"apps": ["other"]})),
    }))
    .await;
    let refused = raw.recv().await.unwrap();
    assert!(
        !ok(&refused) && reason(&refused).contains("\"demo\""),
        "{refused:?}"
    );
    // One for another user: refused, kept.
    raw.send(&PushMessage::Refresh(Refresh {
        token: jwt("someone-else", 600, json!({})),
    }))
    .await;
    let refused = raw.recv().await.unwrap();
    assert!(!ok(&refused), "{refused:?}");
    // A token that binds another device is refused at AUTH.
    let mut phone = Raw::connect(s.tcp()).await;
    let refused = auth(
        &mut phone,
        "a1",
        &jwt("a1", 600, json!({"device": "phone"})),
        &["demo"],
    )
    .await;
    assert!(!ok(&refused), "{refused:?}");
    // The connection still works, still in `demo`.
    s.push("unicast", json!({"uid": "a1", "body": "kept"}))
        .await;
    match raw.recv().await {
        Some(PushMessage::Message(m)) => assert_eq!(m.body.as_str(), Some("kept")),
        other => panic!("expected the push, got {other:?}"),
    }
    assert_eq!(
        s.metric("longlink_push_token_refresh_failures_total").await,
        2
    );
}

#[tokio::test]
async fn refresh_in_the_json_form_is_answered_in_json() {
    let s = start_with(with_jwt).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", s.ws()))
        .await
        .unwrap();
    let mut send = async |v: Value| {
        ws.send(WsMessage::text(v.to_string())).await.unwrap();
        let reply = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        serde_json::from_str::<Value>(reply.to_text().unwrap()).unwrap()
    };
    let reply = send(
        json!({"op": "auth", "seq": 1, "uid": "w1", "device": "web", "net": "wifi",
                            "token": jwt("w1", 60, json!({})), "apps": ["demo"]}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = send(json!({"op": "refresh", "seq": 7, "token": jwt("w1", 600, json!({}))})).await;
    assert_eq!(
        (
            reply["op"].as_str(),
            reply["seq"].as_u64(),
            reply["ok"].as_bool()
        ),
        (Some("auth_reply"), Some(7), Some(true)),
        "{reply}"
    );
    let reply = send(json!({"op": "refresh", "seq": 8, "token": "not a token"})).await;
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(
        reply["reason"].as_str().unwrap().contains("malformed"),
        "{reply}"
    );
}

/// A token source handing out JWTs for `uid` valid for `secs`, counting its calls.
fn counted_source(uid: &'static str, secs: u64) -> (TokenSource, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let source = TokenSource::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        async move { Ok(jwt(uid, secs, json!({}))) }
    });
    (source, calls)
}

#[tokio::test]
async fn the_rust_client_refreshes_before_expiry_and_keeps_its_connection() {
    let s = start_with(with_jwt).await;
    let (source, calls) = counted_source("r1", 600);
    // Eight seconds left: the client asks for a new token five seconds before the end.
    let mut client = s.client_with("r1", |c| {
        c.token = jwt("r1", 8, json!({}));
        c.refresh = Some(source);
    });
    connected(&mut client).await;
    match event(&mut client).await {
        Event::TokenRefreshed {
            expires_at: Some(at),
        } => assert!(at >= now() + 590, "{at}"),
        other => panic!("expected TokenRefreshed, got {other:?}"),
    }
    // Past the first token's expiry and grace, on the same connection.
    tokio::time::sleep(Duration::from_secs(7)).await;
    s.push("unicast", json!({"uid": "r1", "body": "still here"}))
        .await;
    match event(&mut client).await {
        Event::Message(m) => assert_eq!(m.body.as_str(), Some("still here")),
        other => panic!("expected the message on the first connection, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(s.metric("longlink_push_token_refreshes_total").await, 1);
    assert_eq!(s.metric("longlink_push_token_expired_total").await, 0);
}

#[tokio::test]
async fn the_rust_client_retries_a_refused_auth_once_with_a_new_token_then_stops() {
    let s = start_with(with_jwt).await;
    let (source, _) = counted_source("r2", 600);
    let mut client = s.client_with("r2", |c| {
        c.token = "expired or forged".into();
        c.refresh = Some(source);
    });
    match event(&mut client).await {
        Event::Disconnected { reason, .. } => assert!(reason.contains("new token"), "{reason}"),
        other => panic!("expected a retry with a new token, got {other:?}"),
    }
    assert!(matches!(
        event(&mut client).await,
        Event::TokenRefreshed { .. }
    ));
    connected(&mut client).await;

    // A source whose tokens are refused too: one retry, then the client stops.
    let (wrong_user, calls) = counted_source("someone else", 600);
    let mut client = s.client_with("r3", |c| {
        c.token = "forged".into();
        c.refresh = Some(wrong_user);
    });
    assert!(matches!(
        event(&mut client).await,
        Event::Disconnected { .. }
    ));
    match event(&mut client).await {
        Event::Refused(reason) => assert!(!reason.is_empty()),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn three_refused_refreshes_in_a_row_close_the_connection() {
    let s = start_with(with_jwt).await;
    let mut raw = Raw::connect(s.tcp()).await;
    assert!(ok(&auth(
        &mut raw,
        "b1",
        &jwt("b1", 600, json!({})),
        &["demo"]
    )
    .await));
    for i in 0..3 {
        raw.send(&PushMessage::Refresh(Refresh {
            token: format!("forged {i}"),
        }))
        .await;
        let reply = raw.recv().await.expect("an answer");
        assert!(!ok(&reply), "{reply:?}");
    }
    // Closed at once (a heartbeat timeout would take two 3 s intervals).
    let rest = tokio::time::timeout(Duration::from_secs(1), raw.until_closed())
        .await
        .expect("closed right after the third refusal");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        s.metric("longlink_push_token_refresh_failures_total").await,
        3
    );
}

#[tokio::test]
async fn the_rust_client_keeps_trying_when_its_token_source_fails_after_a_refusal() {
    let s = start_with(with_jwt).await;
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    // Down on the first call (a backend swamped by every client refused at once).
    let source = TokenSource::new(move || {
        let n = counted.fetch_add(1, Ordering::Relaxed);
        async move {
            match n {
                0 => Err("backend unavailable".to_owned()),
                _ => Ok(jwt("r4", 600, json!({}))),
            }
        }
    });
    let mut client = s.client_with("r4", |c| {
        c.token = "forged".into();
        c.refresh = Some(source);
    });
    let mut seen = Vec::new();
    loop {
        match event(&mut client).await {
            Event::Connected { .. } => break,
            Event::Refused(reason) => panic!("stopped for good: {reason} after {seen:?}"),
            other => seen.push(other),
        }
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::RefreshFailed(r) if r.contains("backend unavailable"))),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::TokenRefreshed { .. })),
        "{seen:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}
