//! Every limit refuses with a reason the client can read — never a silent truncation, a
//! silent drop or a bare reset — and WebSocket connections close with the RFC 6455 status
//! that says why.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use longlink_codec::push::{Auth, Net, PushMessage, Subscribe};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn auth_with(uid: &str, token: &str, apps: Vec<String>) -> PushMessage {
    PushMessage::Auth(Auth {
        uid: uid.into(),
        device: "raw".into(),
        net: Net::Wifi,
        token: token.into(),
        apps,
    })
}

#[tokio::test]
async fn auth_with_more_apps_than_a_connection_takes_is_refused_with_a_reason() {
    let s = start().await;
    let mut raw = Raw::connect(s.tcp()).await;
    let apps: Vec<String> = (0..17).map(|i| format!("app{i}")).collect();
    raw.send(&auth_with("a", &s.token("a"), apps)).await;
    match raw.recv().await {
        Some(PushMessage::AuthReply(r)) => {
            assert!(!r.ok);
            let reason = r.reason.unwrap();
            assert!(
                reason.contains("17 apps") && reason.contains("at most 16"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(raw.until_closed().await.is_empty());
}

#[tokio::test]
async fn a_subscribe_past_the_limit_is_refused_with_an_error_and_changes_nothing() {
    let s = start().await;
    let mut raw = Raw::connect(s.tcp()).await;
    let mut apps: Vec<String> = (0..14).map(|i| format!("app{i}")).collect();
    apps.push("demo".into());
    raw.send(&auth_with("b", &s.token("b"), apps)).await;
    assert!(matches!(raw.recv().await, Some(PushMessage::AuthReply(r)) if r.ok));
    raw.send(&PushMessage::Subscribe(Subscribe {
        apps: vec!["x".into(), "y".into()],
    }))
    .await;
    match raw.recv().await {
        Some(PushMessage::Error(e)) => {
            assert_eq!(e.code, 400);
            assert!(e.reason.contains("at most 16"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    // The connection stays, with its apps: demo still arrives.
    let id = s
        .push("unicast", json!({"uid": "b", "body": "still here"}))
        .await;
    match raw.recv().await {
        Some(PushMessage::Message(m)) => assert_eq!(m.id, id),
        other => panic!("{other:?}"),
    }
    // One more app fits.
    raw.send(&PushMessage::Subscribe(Subscribe {
        apps: vec!["x".into()],
    }))
    .await;
    raw.send(&PushMessage::Heartbeat).await;
    assert!(matches!(
        raw.recv().await,
        Some(PushMessage::HeartbeatReply)
    ));
}

#[tokio::test]
async fn a_ttl_over_the_limit_is_refused_not_clamped() {
    let s = start().await;
    let (status, answer) = s
        .post(
            "/push/unicast",
            KEY,
            json!({"uid": "t", "body": "x", "ttl_secs": 8 * 24 * 3600}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("exceeds the limit of 604800"), "{message}");
}

#[tokio::test]
async fn a_kick_body_without_a_json_content_type_is_refused_with_415() {
    let s = start().await;
    let _u = s.online("k").await;
    let (status, answer) = s
        .request_with_type(
            "POST",
            "/users/k/kick",
            KEY,
            "application/x-www-form-urlencoded",
            br#"{"reason": "bye"}"#,
        )
        .await;
    assert_eq!(status, 415, "{answer}");
    assert_eq!(answer["error"]["code"], "not_json");
    // The documented call: JSON with its content type.
    let (status, answer) = s
        .post("/users/k/kick", KEY, json!({"reason": "account suspended"}))
        .await;
    assert_eq!(
        (status, answer["kicked"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
}

#[tokio::test]
async fn a_tcp_client_over_the_per_ip_limit_is_told_429_before_the_close() {
    let s = start_with(|c| c.room.max_conns_per_ip = 1).await;
    let mut first = Raw::connect(s.tcp()).await;
    assert!(matches!(first.auth("a", &s.token("a")).await, PushMessage::AuthReply(r) if r.ok));
    let mut second = Raw::connect(s.tcp()).await;
    second
        .send(&auth_with("b", &s.token("b"), vec!["demo".into()]))
        .await;
    let got = second.until_closed().await;
    match got.as_slice() {
        [PushMessage::Error(e)] => {
            assert_eq!(e.code, 429);
            assert!(e.reason.contains("at most 1"), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_websocket_upgrade_over_the_per_ip_limit_gets_http_429_with_a_reason() {
    let s = start_with(|c| c.room.max_conns_per_ip = 1).await;
    let url = format!("ws://{}/", s.ws());
    let (_first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(s.ws()).await.unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
    assert!(
        answer.contains("too many connections from this address"),
        "{answer}"
    );
}

/// The status of the CLOSE the room sends after its ERROR.
async fn close_status(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the room closes")
        {
            Some(Ok(WsMessage::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(WsMessage::Close(None))) => return 1005,
            Some(Ok(_)) => continue, // the ERROR before it
            other => panic!("no close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn websocket_errors_close_with_the_status_rfc_6455_assigns() {
    let s = start_with(|c| c.room.max_frame_bytes = 1024).await;
    let url = format!("ws://{}/", s.ws());
    let connect = || async { tokio_tungstenite::connect_async(&url).await.unwrap().0 };
    let auth = |uid: &str| {
        json!({"op": "auth", "seq": 1, "uid": uid, "device": "web", "net": "wifi",
               "token": s.token(uid), "apps": ["demo"]})
        .to_string()
    };

    // Too big: 1009.
    let mut ws = connect().await;
    ws.send(WsMessage::Binary(vec![0; 4096].into()))
        .await
        .unwrap();
    assert_eq!(close_status(&mut ws).await, 1009);

    // A text message that is not a push message: 1007.
    let mut ws = connect().await;
    ws.send(WsMessage::Text("{not json".into())).await.unwrap();
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        // The ERROR comes in the form the message came in.
        Some(Ok(WsMessage::Text(t))) => assert!(t.contains("\"op\":\"error\""), "{t}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(close_status(&mut ws).await, 1007);

    // The first message is not AUTH: 1008 (policy).
    let mut ws = connect().await;
    ws.send(WsMessage::Text(
        json!({"op": "heartbeat", "seq": 1}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(close_status(&mut ws).await, 1008);

    // After AUTH, an op only the server sends: 1008.
    let mut ws = connect().await;
    ws.send(WsMessage::Text(auth("w").into())).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(WsMessage::Text(_)))));
    ws.send(WsMessage::Text(
        json!({"op": "kick", "seq": 2, "reason": "me"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(close_status(&mut ws).await, 1008);

    // A kick by the API: a normal close (1000) after the KICK.
    let mut ws = connect().await;
    ws.send(WsMessage::Text(auth("v").into())).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(WsMessage::Text(_)))));
    let (status, _) = s.post("/users/v/kick", KEY, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(close_status(&mut ws).await, 1000);

    // Broken WebSocket framing (an unmasked client frame): 1002.
    let mut stream = tokio::net::TcpStream::connect(s.ws()).await.unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let mut read = 0;
    while !head[..read].windows(4).any(|w| w == b"\r\n\r\n") {
        read += stream.read(&mut head[read..]).await.unwrap();
    }
    stream.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap(); // text "hi", no mask
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    // Server frames are unmasked: find the CLOSE (0x88), its status after the length byte.
    let close = rest
        .windows(4)
        .find(|w| w[0] == 0x88 && w[1] == 0x02)
        .expect("a close frame");
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1002);
}

/// A burst far beyond what the store takes, on the default configuration: what cannot be
/// stored soon is refused at once with 429 `overloaded` (nothing done), never a 503 after
/// a deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_the_store_cannot_take_is_refused_at_once_with_429() {
    longlink_push::fdlimit::raise().unwrap();
    let s = start().await;
    let burst = 3_000;
    // Connections opened first (the client's pool keeps them), so that what is timed is
    // the center's answer, not 3,000 TCP handshakes.
    let warm: Vec<_> = (0..burst)
        .map(|_| s.request("GET", "/healthz", None, None))
        .collect();
    futures_util::future::join_all(warm).await;
    let started = std::time::Instant::now();
    let pushes: Vec<_> = (0..burst)
        .map(|i| {
            let request = s.post(
                "/push/unicast",
                KEY,
                json!({"uid": format!("b{}", i % 50), "body": "burst"}),
            );
            async move {
                let sent = std::time::Instant::now();
                let (status, answer) = request.await;
                (status, answer, sent.elapsed())
            }
        })
        .collect();
    let mut accepted = 0;
    let mut refused = 0;
    let mut slowest_refusal = Duration::ZERO;
    let mut refusals = Vec::new();
    for (status, answer, took) in futures_util::future::join_all(pushes).await {
        match status {
            200 => accepted += 1,
            429 => {
                assert_eq!(answer["error"]["code"], "overloaded", "{answer}");
                refused += 1;
                slowest_refusal = slowest_refusal.max(took);
                refusals.push(took);
            }
            other => panic!("{other}: {answer}"),
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
    // Refused at once, not after waiting on a store deadline (the saver's 2 s, the pool's
    // 30 s): even the slowest, at the back of a 3,000-request burst on a loaded machine.
    assert!(
        slowest_refusal < Duration::from_secs(2),
        "a refusal took {slowest_refusal:?}"
    );
    assert!(
        s.metric("longlink_push_store_overloaded_total").await == refused as u64,
        "every refusal counted"
    );
    refusals.sort();
    eprintln!(
        "{accepted} accepted, {refused} refused in {:?}; refusals p50 {:?}, p99 {:?}, max {slowest_refusal:?}",
        started.elapsed(),
        refusals[refusals.len() / 2],
        refusals[refusals.len() * 99 / 100],
    );
}
