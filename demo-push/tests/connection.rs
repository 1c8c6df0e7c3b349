//! The room's guards, over real sockets: tokens, heartbeats, the per-IP limit, kicks, and
//! bad frames that close one connection and nothing else.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::*;
use futures_util::{SinkExt, StreamExt};
use longlink_codec::push::{Op, PushFrame, PushMessage, Subscribe, Upstream};
use longlink_push::room::Heartbeats;
use longlink_push::token::Tokens;
use longlink_push_client::Event;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn refused(reply: PushMessage) -> String {
    match reply {
        PushMessage::AuthReply(r) => {
            assert!(!r.ok, "expected a refusal");
            r.reason.unwrap()
        }
        other => panic!("expected auth_reply, got {other:?}"),
    }
}

#[tokio::test]
async fn a_forged_or_expired_token_is_refused_with_a_reason_and_the_socket_closed() {
    let s = start().await;
    let forged = Tokens::new(b"not the secret").issue("u1", Duration::from_secs(60));
    let expired = s.system.tokens.issue_until("u1", 1_000_000);
    let someone_elses = s.token("u2");
    for (token, reason) in [
        (forged.as_str(), "bad token signature"),
        (expired.as_str(), "token expired"),
        (someone_elses.as_str(), "token is for another user"),
        ("garbage", "malformed token"),
    ] {
        let mut raw = Raw::connect(s.tcp()).await;
        let why = refused(raw.auth("u1", token).await);
        assert!(why.contains(reason), "{why:?} should say {reason:?}");
        assert!(raw.until_closed().await.is_empty());
    }
    assert_eq!(s.metric("longlink_push_auth_failures_total").await, 4);
    // The client library stops on a refusal instead of retrying forever.
    let mut c = s.client_with("u1", |c| c.token = forged.clone());
    match event(&mut c).await {
        Event::Refused(reason) => assert!(reason.contains("signature")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(WAIT, c.next_event())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_first_message_must_be_auth() {
    let s = start().await;
    let mut raw = Raw::connect(s.tcp()).await;
    raw.send(&PushMessage::Heartbeat).await;
    let got = raw.until_closed().await;
    assert!(
        matches!(&got[..], [PushMessage::AuthReply(r)] if !r.ok),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_two_heartbeat_intervals() {
    let s = start_with(|c| {
        c.room.heartbeats = Heartbeats {
            g2: 1,
            g3: 1,
            g4: 1,
            g5: 1,
            wifi: 1,
        };
    })
    .await;
    let mut silent = Raw::connect(s.tcp()).await;
    let started = Instant::now();
    match silent.auth("quiet", &s.token("quiet")).await {
        PushMessage::AuthReply(r) => assert_eq!((r.ok, r.heartbeat_secs), (true, 1)),
        other => panic!("{other:?}"),
    }
    // A client that keeps its heartbeat stays.
    let mut alive = Raw::connect(s.tcp()).await;
    alive.auth("alive", &s.token("alive")).await;
    let keeper = tokio::spawn(async move {
        for _ in 0..8 {
            alive.send(&PushMessage::Heartbeat).await;
            assert_eq!(alive.recv().await, Some(PushMessage::HeartbeatReply));
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        alive
    });
    assert!(silent.until_closed().await.is_empty());
    let silent_for = started.elapsed();
    // Two 1 s intervals, not the 10 s AUTH deadline it started with.
    assert!(
        silent_for >= Duration::from_millis(1900) && silent_for < Duration::from_secs(6),
        "dropped after {silent_for:?}"
    );
    let mut alive = keeper.await.unwrap();
    alive.send(&PushMessage::Heartbeat).await;
    assert_eq!(alive.recv().await, Some(PushMessage::HeartbeatReply));
    assert_eq!(s.metric("longlink_push_heartbeat_timeouts_total").await, 1);
}

#[tokio::test]
async fn a_client_that_never_authenticates_is_dropped_at_the_auth_deadline() {
    let s = start_with(|c| c.room.auth_timeout = Duration::from_secs(1)).await;
    let mut raw = Raw::connect(s.tcp()).await;
    assert!(raw.until_closed().await.is_empty());
}

#[tokio::test]
async fn the_per_ip_limit_refuses_extra_connections_from_one_address_only() {
    let s = start_with(|c| c.room.max_conns_per_ip = 2).await;
    let mut first = Raw::connect(s.tcp()).await;
    let mut second = Raw::connect(s.tcp()).await;
    assert!(matches!(first.auth("a", &s.token("a")).await, PushMessage::AuthReply(r) if r.ok));
    assert!(matches!(second.auth("b", &s.token("b")).await, PushMessage::AuthReply(r) if r.ok));
    let mut third = Raw::connect(s.tcp()).await;
    assert!(
        matches!(third.until_closed().await.as_slice(), [PushMessage::Error(e)] if e.code == 429),
        "the third is told why and closed at once"
    );
    // Another source address has its own allowance.
    let mut elsewhere = Raw::connect_from(s.tcp(), "127.0.0.2").await;
    assert!(matches!(elsewhere.auth("c", &s.token("c")).await, PushMessage::AuthReply(r) if r.ok));
    // Closing one frees a place.
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = Raw::connect(s.tcp()).await;
        again.send(&PushMessage::Heartbeat).await; // not auth: refused, but only if admitted
        let got = again.until_closed().await;
        if !matches!(got.as_slice(), [PushMessage::Error(e)] if e.code == 429) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.metric("longlink_push_ip_limited_total").await >= 1);
}

#[tokio::test]
async fn kick_closes_the_users_sessions_with_the_reason_and_the_client_stops() {
    let s = start().await;
    let mut a = s.online("k").await;
    let mut b = s.client_with("k", |c| c.device = "tablet".into());
    connected(&mut b).await;
    let mut bystander = s.online("other-user").await;
    s.wait_sessions("k", 2).await;
    let (status, answer) = s
        .post("/users/k/kick", KEY, json!({"reason": "account suspended"}))
        .await;
    assert_eq!(
        (status, answer["kicked"].as_u64()),
        (200, Some(2)),
        "{answer}"
    );
    for c in [&mut a, &mut b] {
        assert_eq!(event(c).await, Event::Kicked("account suspended".into()));
        assert!(
            tokio::time::timeout(WAIT, c.next_event())
                .await
                .unwrap()
                .is_none()
        );
    }
    s.wait_sessions("k", 0).await;
    quiet(&mut bystander, Duration::from_millis(200)).await;
    let (status, answer) = s.post("/users/k/kick", KEY, json!({})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("not_online"))
    );
}

/// Authenticates a raw connection and returns it.
async fn authed(s: &TestSystem, uid: &str) -> Raw {
    let mut raw = Raw::connect(s.tcp()).await;
    assert!(matches!(raw.auth(uid, &s.token(uid)).await, PushMessage::AuthReply(r) if r.ok));
    raw
}

#[tokio::test]
async fn a_malformed_frame_closes_that_connection_only() {
    let s = start().await;
    let mut bystander = s.online("fine").await;
    let mut bad = authed(&s, "bad").await;
    // An ACK whose body is not an ACK.
    bad.framed
        .send(PushFrame::new(
            Op::ACK,
            7,
            bytes::Bytes::from_static(&[0xff; 9]),
        ))
        .await
        .unwrap();
    let got = bad.until_closed().await;
    assert!(
        matches!(&got[..], [PushMessage::Error(e)] if e.code == 400),
        "{got:?}"
    );
    // A header with a wrong header length, straight on the socket.
    let mut worse = authed(&s, "worse").await;
    let mut wire = BytesMut::new();
    wire.put_u32(20);
    wire.put_u16(99);
    wire.put_u16(1);
    wire.put_u32(Op::HEARTBEAT.value());
    wire.put_u32(1);
    wire.put_u32(0);
    worse.framed.get_mut().write_all(&wire).await.unwrap();
    assert!(
        worse
            .until_closed()
            .await
            .iter()
            .all(|m| matches!(m, PushMessage::Error(_)))
    );
    // Everyone else is untouched.
    let id = s
        .push("unicast", json!({"uid": "fine", "body": "still here"}))
        .await;
    assert_eq!(message(&mut bystander).await.0, id);
    assert_eq!(s.metric("longlink_push_protocol_errors_total").await, 2);
}

#[tokio::test]
async fn an_oversized_frame_is_refused_before_it_is_read() {
    let s = start_with(|c| c.room.max_frame_bytes = 1024).await;
    let mut bystander = s.online("fine").await;
    let mut big = authed(&s, "big").await;
    // Only the header of a 1 GiB frame: the room refuses on the length alone.
    let mut wire = BytesMut::new();
    wire.put_u32(1 << 30);
    wire.put_u16(16);
    wire.put_u16(1);
    wire.put_u32(Op::UPSTREAM.value());
    wire.put_u32(1);
    big.framed.get_mut().write_all(&wire).await.unwrap();
    let got = big.until_closed().await;
    assert!(
        matches!(&got[..], [PushMessage::Error(e)] if e.code == 413 && e.reason.contains("exceeds")),
        "{got:?}"
    );
    let id = s
        .push("unicast", json!({"uid": "fine", "body": "unaffected"}))
        .await;
    assert_eq!(message(&mut bystander).await.0, id);
}

#[tokio::test]
async fn a_client_may_not_send_server_messages() {
    let s = start().await;
    let mut raw = authed(&s, "cheeky").await;
    raw.send(&PushMessage::Kick(longlink_codec::push::Kick {
        reason: "x".into(),
    }))
    .await;
    let got = raw.until_closed().await;
    assert!(matches!(&got[..], [PushMessage::Error(e)] if e.reason.contains("may not send")));
}

#[tokio::test]
async fn websocket_clients_speak_json_text_or_binary_frames() {
    let s = start().await;
    let url = format!("ws://{}/", s.ws());
    // JSON text, as the web page does.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let auth = json!({"op": "auth", "seq": 1, "uid": "w", "device": "web", "net": "4g",
                      "token": s.token("w"), "apps": ["demo"]});
    ws.send(WsMessage::Text(auth.to_string().into()))
        .await
        .unwrap();
    let reply: serde_json::Value = match ws.next().await.unwrap().unwrap() {
        WsMessage::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(reply["op"], "auth_reply");
    assert_eq!(
        (reply["ok"].as_bool(), reply["heartbeat_secs"].as_u64()),
        (Some(true), Some(3))
    );
    let id = s
        .push("unicast", json!({"uid": "w", "body": "over json"}))
        .await;
    let m: serde_json::Value = match ws.next().await.unwrap().unwrap() {
        WsMessage::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (m["op"].as_str(), m["id"].as_u64(), m["body"].as_str()),
        (Some("message"), Some(id), Some("over json"))
    );
    ws.send(WsMessage::Text(
        json!({"op": "ack", "ids": [id]}).to_string().into(),
    ))
    .await
    .unwrap();
    s.wait_status(id, "w", "acked").await;
    // Bad JSON closes that connection with an error.
    ws.send(WsMessage::Text("{not json".into())).await.unwrap();
    let err: serde_json::Value = match ws.next().await.unwrap().unwrap() {
        WsMessage::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(err["op"], "error");

    // Binary frames through the client library's WebSocket transport.
    let mut c = s.client_with("wb", |c| {
        c.transport = longlink_push_client::Transport::WebSocket
    });
    connected(&mut c).await;
    let id = s
        .push("unicast", json!({"uid": "wb", "body": "over binary"}))
        .await;
    assert_eq!(message(&mut c).await, (id, "over binary".to_owned()));
    s.wait_status(id, "wb", "acked").await;
}

#[tokio::test]
async fn subscribe_and_unsubscribe_change_which_apps_reach_a_connection() {
    let s = start().await;
    let mut raw = authed(&s, "sub").await;
    raw.send(&PushMessage::Subscribe(Subscribe {
        apps: vec!["other".into()],
    }))
    .await;
    raw.send(&PushMessage::Unsubscribe(Subscribe {
        apps: vec!["demo".into()],
    }))
    .await;
    raw.send(&PushMessage::Heartbeat).await;
    assert_eq!(raw.recv().await, Some(PushMessage::HeartbeatReply));
    s.push(
        "unicast",
        json!({"uid": "sub", "body": "demo: not subscribed"}),
    )
    .await;
    let (status, report) = s
        .post(
            "/push/unicast",
            OTHER_KEY,
            json!({"uid": "sub", "body": "other app"}),
        )
        .await;
    assert_eq!(status, 200);
    match raw.recv().await {
        Some(PushMessage::Message(m)) => {
            assert_eq!(
                (m.app.as_str(), m.id),
                ("other", report["id"].as_u64().unwrap())
            )
        }
        other => panic!("{other:?}"),
    }
    // Upstream for an app the connection does not subscribe is refused.
    raw.send(&PushMessage::Upstream(Upstream {
        app: "demo".into(),
        kind: "chat".into(),
        body: "hi".into(),
    }))
    .await;
    match raw.recv().await {
        Some(PushMessage::UpstreamReply(r)) => {
            assert!(!r.ok && r.reason.unwrap().contains("not subscribed"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn connections_that_vanish_at_any_stage_leave_nothing_behind() {
    let s = start_with(|c| c.room.max_conns_per_ip = 40).await;
    let mut doomed = Vec::new();
    for i in 0..10 {
        // Connected, nothing sent.
        doomed.push(Raw::connect(s.tcp()).await.framed.into_inner());
        // Half an AUTH frame.
        let mut half = Raw::connect(s.tcp()).await.framed.into_inner();
        half.write_all(&[0, 0, 0, 64, 0, 16]).await.unwrap();
        doomed.push(half);
        // Half a WebSocket handshake.
        let mut ws = tokio::net::TcpStream::connect(s.ws()).await.unwrap();
        ws.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        doomed.push(ws);
        // Authenticated, with a message queued for it.
        let uid = format!("v{i}");
        doomed.push(authed(&s, &uid).await.framed.into_inner());
    }
    let deadline = Instant::now() + WAIT;
    while s.system.room.connections() < 10 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.push(
        "multicast",
        json!({"uids": (0..10).map(|i| format!("v{i}")).collect::<Vec<_>>(), "body": "x"}),
    )
    .await;
    drop(doomed);
    loop {
        let open = s.metric("longlink_push_connections").await;
        let sessions = s.system.register.counts().await.unwrap().users;
        if open == 0 && sessions == 0 && s.system.room.connections() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {open} open, {sessions} sessions"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every per-IP place came back: 40 more fit.
    let mut again = Vec::new();
    for i in 0..40 {
        again.push(authed(&s, &format!("again{i}")).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_as_slow_and_the_others_carry_on() {
    let s = start_with(|c| c.room.send_queue = 4).await;
    let mut fast = s.online("fast").await;
    let mut slow = Raw::connect(s.tcp()).await;
    let reply = slow.auth("slow", &s.token("slow")).await;
    assert!(
        matches!(reply, PushMessage::AuthReply(ref r) if r.ok),
        "{reply:?}"
    );
    // The slow client never reads: the socket buffers fill, then its queue of 4.
    let body = "x".repeat(50_000);
    let mut pushes = 0;
    while s.metric("longlink_push_slow_consumers_total").await == 0 {
        let (status, _) = s
            .post(
                "/push/unicast",
                KEY,
                json!({"uid": "slow", "body": body, "mode": "at_most_once"}),
            )
            .await;
        assert_eq!(status, 200);
        pushes += 1;
        assert!(pushes < 5_000, "the queue never filled");
    }
    // Closed as too slow: what it can still read ends in EOF.
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while slow.recv().await.is_some() {}
    })
    .await;
    assert!(drained.is_ok(), "the slow connection was not closed");
    // Everyone else is served as before.
    let id = s
        .push("unicast", json!({"uid": "fast", "body": "still fast"}))
        .await;
    assert_eq!(message(&mut fast).await, (id, "still fast".to_owned()));
}

#[tokio::test]
async fn websocket_pings_get_pongs_a_close_is_echoed_and_plain_http_gets_426() {
    let s = start_with(|c| c.room.max_frame_bytes = 1024).await;
    let url = format!("ws://{}/", s.ws());
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    // Before AUTH and after it, a ping comes back as a pong with its payload.
    ws.send(WsMessage::Ping(b"before".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        WsMessage::Pong(b"before".to_vec().into())
    );
    let auth = json!({"op": "auth", "seq": 1, "uid": "p", "device": "web", "net": "wifi",
                      "token": s.token("p"), "apps": ["demo"]});
    ws.send(WsMessage::Text(auth.to_string().into()))
        .await
        .unwrap();
    assert!(matches!(
        ws.next().await.unwrap().unwrap(),
        WsMessage::Text(_)
    ));
    ws.send(WsMessage::Ping(b"after".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        WsMessage::Pong(b"after".to_vec().into())
    );
    // The client closes: the room answers with the same status and hangs up.
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 4001u16.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    match ws.next().await.unwrap().unwrap() {
        WsMessage::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("{other:?}"),
    }
    assert!(ws.next().await.is_none());

    // A message over the limit closes that connection with an error frame.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(WsMessage::Binary(vec![0; 4096].into()))
        .await
        .unwrap();
    match ws.next().await.unwrap().unwrap() {
        WsMessage::Binary(frame) => {
            let mut buf = BytesMut::from(&frame[..]);
            let frame = tokio_util::codec::Decoder::decode(
                &mut longlink_codec::push::PushCodec::new(),
                &mut buf,
            )
            .unwrap()
            .unwrap();
            match PushMessage::from_frame(&frame).unwrap() {
                PushMessage::Error(e) => assert!(e.reason.contains("exceeds limit"), "{e:?}"),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }

    // Plain HTTP on the WebSocket port: 426 with a reason, counted.
    let mut stream = tokio::net::TcpStream::connect(s.ws()).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(answer.contains("speaks websocket only"), "{answer}");
    // Counted once the room has closed its side (it reads what the client still sends
    // first, so the answer is not lost to a reset).
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.metric("longlink_push_upgrade_failures_total").await != 1 {
        assert!(
            Instant::now() < deadline,
            "the refused upgrade was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn after_many_connections_close_the_room_gives_memory_back() {
    let s = start_with(|c| c.room.max_conns_per_ip = 2_000).await;
    let token = s.token("many");
    let mut conns = Vec::new();
    for _ in 0..1_200 {
        let mut raw = Raw::connect(s.tcp()).await;
        raw.send(&PushMessage::Auth(longlink_codec::push::Auth {
            uid: "many".into(),
            device: "raw".into(),
            net: longlink_codec::push::Net::Wifi,
            token: token.clone(),
            apps: vec![],
        }))
        .await;
        conns.push(raw);
    }
    for raw in &mut conns {
        assert!(matches!(raw.recv().await, Some(PushMessage::AuthReply(r)) if r.ok));
    }
    assert_eq!(s.metric("longlink_push_memory_trims_total").await, 0);
    drop(conns);
    // The housekeeping sees 1,200 of 1,200 closed within a second or two and trims.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.metric("longlink_push_memory_trims_total").await == 0 {
        assert!(Instant::now() < deadline, "no trim after 1,200 closes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.metric("longlink_push_connections").await, 0);
}
