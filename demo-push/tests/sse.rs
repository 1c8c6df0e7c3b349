//! The SSE / HTTP-streaming fallback on the room's WebSocket port, byte by byte: the
//! stream's head and events, POSTs handed to the session, CORS, the refusals (401, 404,
//! 411, 413, 429, 400), the bounds (sessions, inbox), sessions that end however they end
//! (kick, silence, a closed stream) leaving no key behind, and a message redelivered until
//! ACKed when the client switches from SSE to WebSocket.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use longlink_push_client::Transport;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

both_modes! {
    an_unacked_message_over_sse_is_redelivered_over_websocket_until_acked,
}

/// A request on a new connection (`connection: close`); the status, the head and the body.
async fn request(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut wire = head.as_bytes().to_vec();
    wire.extend_from_slice(body);
    stream.write_all(&wire).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the room answers in time")
        .unwrap();
    split(&String::from_utf8(answer).unwrap())
}

fn split(answer: &str) -> (u16, String, String) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole head");
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A POST with `body` and a content-length, closing after.
async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String, String) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    request(addr, &head, body.as_bytes()).await
}

fn auth(uid: &str, token: &str) -> String {
    json!({"op": "auth", "seq": 1, "uid": uid, "device": "d", "net": "wifi",
           "token": token, "apps": ["demo"]})
    .to_string()
}

/// An open stream: its connection, what was read past the events handed out.
struct Stream {
    tcp: TcpStream,
    buf: Vec<u8>,
    head: String,
}

impl Stream {
    /// `POST /sse` with `body` (as text/plain, as a browser's simple request would).
    async fn open(addr: SocketAddr, body: &str) -> Stream {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /sse HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut stream = Stream {
            tcp,
            buf: Vec::new(),
            head: String::new(),
        };
        let end = loop {
            if let Some(end) = stream.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            assert!(stream.fill().await > 0, "closed before the head");
        };
        stream.head = String::from_utf8(stream.buf.drain(..end).collect())
            .unwrap()
            .to_ascii_lowercase();
        stream
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
            .await
            .expect("the stream moves in time")
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// The next chunk's payload (empty for the last chunk).
    async fn chunk(&mut self) -> Vec<u8> {
        loop {
            if let Some(line) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&self.buf[..line]).unwrap(), 16)
                        .expect("a chunk size");
                if self.buf.len() >= line + 2 + size + 2 {
                    let chunk: Vec<u8> = self.buf.drain(..line + 2 + size + 2).collect();
                    assert_eq!(&chunk[line + 2 + size..], b"\r\n");
                    return chunk[line + 2..line + 2 + size].to_vec();
                }
            }
            assert!(self.fill().await > 0, "the stream closed mid-chunk");
        }
    }

    /// The next event's message, as JSON (`None`: the stream ended with its last chunk).
    async fn event(&mut self) -> Option<Value> {
        let chunk = self.chunk().await;
        if chunk.is_empty() {
            return None;
        }
        let text = String::from_utf8(chunk).unwrap();
        let data = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("one data line per event: {text:?}"));
        assert!(!data.contains('\n'));
        Some(serde_json::from_str(data).unwrap())
    }

    /// Reads until the room closes the connection.
    async fn closed(&mut self) {
        while self.fill().await > 0 {}
    }
}

async fn opened(s: &TestSystem, uid: &str) -> (Stream, String) {
    let mut stream = Stream::open(s.ws(), &auth(uid, &s.token(uid))).await;
    let reply = stream.event().await.expect("the auth reply");
    assert_eq!(
        (reply["op"].as_str(), reply["ok"].as_bool()),
        (Some("auth_reply"), Some(true)),
        "{reply}"
    );
    let key = reply["session"].as_str().unwrap().to_owned();
    (stream, key)
}

#[tokio::test]
async fn an_sse_session_streams_events_takes_posts_and_ends_on_a_kick() {
    let s = start().await;
    let (mut stream, key) = opened(&s, "u1").await;
    for line in [
        "http/1.1 200 ok\r\n",
        "content-type: text/event-stream\r\n",
        "cache-control: no-store\r\n",
        "x-accel-buffering: no\r\n",
        "transfer-encoding: chunked\r\n",
        "access-control-allow-origin: *\r\n",
    ] {
        assert!(stream.head.contains(line), "{line:?} in {}", stream.head);
    }
    // {room}:{conn id}:{128 random bits, base64url}
    let parts: Vec<&str> = key.split(':').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[2].len()),
        (3, "room-1", 22),
        "{key}"
    );
    s.wait_sessions("u1", 1).await;

    let id = s
        .push("unicast", json!({"uid": "u1", "body": "over sse"}))
        .await;
    let m = stream.event().await.unwrap();
    assert_eq!(
        (m["op"].as_str(), m["id"].as_u64(), m["body"].as_str()),
        (Some("message"), Some(id), Some("over sse"))
    );
    let path = format!("/sse/{}", key.replace(':', "%3A"));
    let (status, head, body) = post(
        s.ws(),
        &path,
        &json!({"op": "ack", "seq": 5, "ids": [id]}).to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (202, ""));
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    s.wait_status(id, "u1", "acked").await;
    let (status, ..) = post(
        s.ws(),
        &format!("/sse/{key}"),
        r#"{"op":"heartbeat","seq":7}"#,
    )
    .await;
    assert_eq!(status, 202);
    let reply = stream.event().await.unwrap();
    assert_eq!(
        (reply["op"].as_str(), reply["seq"].as_u64()),
        (Some("heartbeat_reply"), Some(7))
    );
    let upstream = json!({"op": "upstream", "seq": 8, "app": "other", "type": "t", "body": "x"});
    let (status, ..) = post(s.ws(), &path, &upstream.to_string()).await;
    assert_eq!(status, 202);
    let reply = stream.event().await.unwrap();
    assert_eq!(
        (
            reply["op"].as_str(),
            reply["seq"].as_u64(),
            reply["ok"].as_bool()
        ),
        (Some("upstream_reply"), Some(8), Some(false)),
        "{reply}"
    );

    let (status, answer) = s
        .post("/users/u1/kick", KEY, json!({"reason": "bye"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let kick = stream.event().await.unwrap();
    assert_eq!(
        (kick["op"].as_str(), kick["reason"].as_str()),
        (Some("kick"), Some("bye"))
    );
    assert_eq!(
        stream.event().await,
        None,
        "the last chunk follows the kick"
    );
    stream.closed().await;
    let (status, head, body) = post(s.ws(), &path, r#"{"op":"heartbeat","seq":9}"#).await;
    assert_eq!(status, 404, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["op"], "error");
    assert_eq!(s.system.room.sse_sessions(), 0);
    assert!(s.metric("longlink_push_sse_posts_total").await >= 3);
}

#[tokio::test]
async fn a_refresh_over_sse_is_answered_down_the_stream_with_the_same_key() {
    let s = start().await;
    let (mut stream, key) = opened(&s, "rf").await;
    let refresh = json!({"op": "refresh", "seq": 4, "token": s.token("rf")});
    let (status, ..) = post(s.ws(), &format!("/sse/{key}"), &refresh.to_string()).await;
    assert_eq!(status, 202);
    let reply = stream.event().await.unwrap();
    assert_eq!(
        (
            reply["op"].as_str(),
            reply["seq"].as_u64(),
            reply["ok"].as_bool()
        ),
        (Some("auth_reply"), Some(4), Some(true)),
        "{reply}"
    );
    assert_eq!(reply["session"].as_str(), Some(key.as_str()));
    // A subscribe goes through too: the other app's pushes reach the stream.
    let subscribe = json!({"op": "subscribe", "seq": 5, "apps": ["other"]});
    let (status, ..) = post(s.ws(), &format!("/sse/{key}"), &subscribe.to_string()).await;
    assert_eq!(status, 202);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, user) = s.get("/users/rf", OTHER_KEY).await;
        if user["sessions"].as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{user}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, answer) = s
        .post(
            "/push/unicast",
            OTHER_KEY,
            json!({"uid": "rf", "body": "other app"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let m = stream.event().await.unwrap();
    assert_eq!(
        (m["app"].as_str(), m["body"].as_str()),
        (Some("other"), Some("other app"))
    );
}

#[tokio::test]
async fn a_bad_token_is_refused_with_401_and_the_auth_reply() {
    let s = start().await;
    let (status, head, body) = post(s.ws(), "/sse", &auth("u1", &s.token("someone-else"))).await;
    assert_eq!(status, 401, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            reply["op"].as_str(),
            reply["ok"].as_bool(),
            reply["seq"].as_u64()
        ),
        (Some("auth_reply"), Some(false), Some(1)),
        "{reply}"
    );
    // More apps than a connection may have.
    let many: Vec<String> = (0..20).map(|i| format!("app{i}")).collect();
    let body = json!({"op": "auth", "seq": 1, "uid": "u1", "device": "d", "net": "wifi",
                      "token": s.token("u1"), "apps": many});
    let (status, ..) = post(s.ws(), "/sse", &body.to_string()).await;
    assert_eq!(status, 403);
    // Not an AUTH, not JSON: 400 with an error.
    let (status, _, body) = post(s.ws(), "/sse", r#"{"op":"heartbeat","seq":1}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["op"], "error");
    let (status, ..) = post(s.ws(), "/sse", "{not json").await;
    assert_eq!(status, 400);
    assert!(s.metric("longlink_push_auth_failures_total").await >= 2);
    assert_eq!(s.system.room.sse_sessions(), 0);
}

#[tokio::test]
async fn unknown_sessions_oversize_bodies_and_missing_lengths_are_refused() {
    let s = start().await;
    let (status, _, body) = post(
        s.ws(),
        "/sse/room-1:1:AAAAAAAAAAAAAAAAAAAAAA",
        r#"{"op":"heartbeat"}"#,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // Refused from its content-length: the body is never sent.
    let max = longlink_codec::push::DEFAULT_MAX_FRAME_BYTES;
    let head = format!(
        "POST /sse/k HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
        max + 1
    );
    let (status, head, _) = request(s.ws(), &head, b"").await;
    assert_eq!(status, 413);
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    let (status, ..) = request(s.ws(), "POST /sse HTTP/1.1\r\nhost: x\r\n\r\n", b"").await;
    assert_eq!(status, 411);
    let (status, ..) = request(s.ws(), "GET /sse HTTP/1.1\r\nhost: x\r\n\r\n", b"").await;
    assert_eq!(status, 405);
    // An AUTH or a server-only op POSTed to a session: 400.
    let (_stream, key) = opened(&s, "u2").await;
    let (status, ..) = post(s.ws(), &format!("/sse/{key}"), &auth("u2", &s.token("u2"))).await;
    assert_eq!(status, 400);
    let (status, ..) = post(
        s.ws(),
        &format!("/sse/{key}"),
        r#"{"op":"kick","reason":"x"}"#,
    )
    .await;
    assert_eq!(status, 400);
    // Other paths keep their answers.
    let (status, ..) = request(s.ws(), "GET / HTTP/1.1\r\nhost: x\r\n\r\n", b"").await;
    assert_eq!(status, 426);
    assert!(s.metric("longlink_push_sse_bad_requests_total").await >= 4);
    assert!(s.metric("longlink_push_sse_unknown_session_total").await >= 1);
}

#[tokio::test]
async fn a_preflight_is_answered_204_and_posts_share_a_kept_alive_connection() {
    let s = start().await;
    let (status, head, _) = request(
        s.ws(),
        "OPTIONS /sse HTTP/1.1\r\nhost: x\r\norigin: https://app.example\r\n\
         access-control-request-method: POST\r\nconnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 204);
    for line in [
        "access-control-allow-origin: *",
        "access-control-allow-methods: post",
        "access-control-allow-headers: content-type",
        "access-control-max-age: 600",
    ] {
        assert!(head.contains(line), "{line} in {head}");
    }
    let (mut stream, key) = opened(&s, "ka").await;
    let mut tcp = TcpStream::connect(s.ws()).await.unwrap();
    for seq in 1..=3u32 {
        let body = format!(r#"{{"op":"heartbeat","seq":{seq}}}"#);
        let request = format!(
            "POST /sse/{key} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "kept alive");
            answer.push(byte[0]);
        }
        let text = String::from_utf8(answer).unwrap();
        assert!(text.starts_with("HTTP/1.1 202 "), "{text}");
        assert!(text.contains("connection: keep-alive"), "{text}");
        let reply = stream.event().await.unwrap();
        assert_eq!(reply["seq"].as_u64(), Some(u64::from(seq)));
    }
}

#[tokio::test]
async fn sse_sessions_past_the_limit_are_refused_with_429() {
    // (A full inbox's 429 is tested in the room's unit tests, with a session held busy.)
    let s = start_with(|c| c.room.max_sse_sessions = 1).await;
    let (_stream, _) = opened(&s, "first").await;
    let (status, head, body) = post(s.ws(), "/sse", &auth("second", &s.token("second"))).await;
    assert_eq!(status, 429, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["op"],
        "auth_reply"
    );
    assert!(s.metric("longlink_push_sse_refused_total").await >= 1);
    // WebSocket and TCP clients are not SSE sessions: still taken.
    let mut tcp = s.online("third").await;
    quiet(&mut tcp, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_silent_session_times_out_and_a_closed_stream_ends_its_session() {
    let s = start_with(|c| c.room.heartbeats.wifi = 1).await;
    let (mut silent, key) = opened(&s, "quiet").await;
    // No POST within two intervals: the stream ends as a silent WebSocket would.
    assert_eq!(silent.event().await, None);
    silent.closed().await;
    assert_eq!(
        post(s.ws(), &format!("/sse/{key}"), r#"{"op":"heartbeat"}"#)
            .await
            .0,
        404
    );
    assert!(s.metric("longlink_push_heartbeat_timeouts_total").await >= 1);

    let (stream, key) = opened(&s, "gone").await;
    s.wait_sessions("gone", 1).await;
    drop(stream);
    s.wait_sessions("gone", 0).await;
    assert_eq!(
        post(s.ws(), &format!("/sse/{key}"), r#"{"op":"heartbeat"}"#)
            .await
            .0,
        404
    );
    assert_eq!(s.system.room.sse_sessions(), 0);
    let (_, page) = s.request("GET", "/metrics", None, None).await;
    let page = page.as_str().unwrap().to_owned();
    assert!(
        page.contains("longlink_push_sse_session_keys{room=\"room-1\"} 0"),
        "{page}"
    );
    assert!(
        page.contains("longlink_push_sse_sessions{room=\"room-1\"} 0"),
        "{page}"
    );
}

async fn an_unacked_message_over_sse_is_redelivered_over_websocket_until_acked<S: Starter>() {
    let s = S::start().await;
    let mut sse = s.client_with("sw", |c| {
        c.transport = Transport::Sse;
        c.auto_ack = false;
    });
    connected(&mut sse).await;
    let id = s
        .push("unicast", json!({"uid": "sw", "body": "switch"}))
        .await;
    assert_eq!(message(&mut sse).await, (id, "switch".to_owned()));
    s.wait_status(id, "sw", "delivered").await;
    drop(sse);
    s.wait_sessions("sw", 0).await;
    // The same user over WebSocket: the message comes again until ACKed there.
    let mut ws = s.client_with("sw", |c| {
        c.transport = Transport::WebSocket;
        c.auto_ack = false;
    });
    connected(&mut ws).await;
    assert_eq!(message(&mut ws).await, (id, "switch".to_owned()));
    ws.ack(vec![id]).await.unwrap();
    s.wait_status(id, "sw", "acked").await;
    drop(ws);
    s.wait_sessions("sw", 0).await;
    // And back over SSE: nothing more.
    let mut back = s.client_with("sw", |c| c.transport = Transport::Sse);
    connected(&mut back).await;
    // An upstream is a POST to the session: its answer comes down the stream.
    let reply = back.upstream("demo", "t", "x").await.unwrap();
    assert!(!reply.ok, "no webhook configured: {reply:?}");
    assert!(s.metric("longlink_push_sse_posts_total").await >= 1);
    quiet(&mut back, Duration::from_millis(300)).await;
}
