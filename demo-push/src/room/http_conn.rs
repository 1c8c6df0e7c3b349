//! A connection to the WebSocket port, request by request: a WebSocket upgrade becomes a
//! WebSocket link; `POST /sse` becomes an SSE link (its answer is the session's stream);
//! `POST /sse/{session}` and the CORS preflights are answered here, and the connection
//! may take another request (keep-alive, at most [`MAX_REQUESTS`], idle at most
//! [`IDLE_TIMEOUT`] between them).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use longlink_codec::push::{AuthReply, ErrorMessage, PushMessage};
use longlink_codec::{CodecError, PooledBuf};
use tokio::sync::SemaphorePermit;
use tokio::time::Instant;

use super::http::{self, Body, Route};
use super::link::Link;
use super::socket::{Read, Socket};
use super::sse::{HandOver, SseLink};
use super::{RoomInner, frame_error, upgrade};
use crate::metrics::inc;

/// Requests one connection may make, at most (the last answer says `connection: close`).
pub(super) const MAX_REQUESTS: usize = 100;
/// How long a kept-alive connection may wait for its next request (and take to send it).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the requests on `socket` (`buf`: bytes already read) until one becomes a link
/// (returned) or the connection is done (`None`). The first request must arrive whole by
/// `deadline`, with `handshake` held (the room's bound on handshakes in progress); the
/// place is given back after it, and later requests have [`IDLE_TIMEOUT`] each.
pub(super) async fn serve(
    room: &Arc<RoomInner>,
    mut socket: Socket,
    mut buf: Option<PooledBuf>,
    handshake: SemaphorePermit<'_>,
    mut deadline: Instant,
    peer: SocketAddr,
) -> Option<Link> {
    let mut handshake = Some(handshake);
    let max = room.config.max_frame_bytes;
    for served in 0..MAX_REQUESTS {
        let first = served == 0;
        let end = match tokio::time::timeout_at(deadline, upgrade::read_head(&mut socket, &mut buf))
            .await
        {
            Ok(Ok(Some(end))) => end,
            Ok(Ok(None)) if !first => return None,
            outcome => {
                if first {
                    inc(&room.metrics.upgrade_failures);
                }
                tracing::debug!(%peer, ?outcome, "no request head");
                return None;
            }
        };
        let head = buf.as_deref().map_or(&[][..], |b| &b[..end]);
        let route = http::route(head, max);
        if route == Route::WebSocket {
            return match upgrade::answer(&mut socket, buf, end).await {
                Ok(early) => Some(Link::ws(socket, early, max)),
                Err(e) => {
                    inc(&room.metrics.upgrade_failures);
                    tracing::debug!(%peer, error = %e, "websocket upgrade failed");
                    None
                }
            };
        }
        if let Some(b) = buf.as_mut() {
            b.advance(end);
        }
        let last = served + 1 == MAX_REQUESTS;
        let keep_alive = match route {
            Route::WebSocket => unreachable!("answered above"),
            Route::Preflight { keep_alive } => {
                let keep_alive = keep_alive && !last;
                if socket
                    .write_all(http::preflight(keep_alive).as_bytes())
                    .await
                    .is_err()
                {
                    return None;
                }
                keep_alive
            }
            Route::Refuse(status, reason) => {
                if status != 404 {
                    inc(&room.metrics.sse_bad_requests);
                } else {
                    inc(&room.metrics.sse_unknown_session);
                }
                let body = error(status, reason).to_json(0);
                // The body may be unread: read what follows, so the answer is not lost
                // to a reset.
                upgrade::refuse(&mut socket, &http::answer(status, &body, false)).await;
                return None;
            }
            Route::Open(body) => {
                let bytes = match read_body(&mut socket, &mut buf, &body, deadline).await {
                    Ok(bytes) => bytes,
                    Err(()) => return None,
                };
                match open(room, &bytes) {
                    Ok(sse) => return Some(Link::sse(socket, sse, max)),
                    Err((status, json)) => {
                        let _ = socket
                            .write_all(http::answer(status, &json, false).as_bytes())
                            .await;
                        socket.shutdown().await;
                        return None;
                    }
                }
            }
            Route::Post(key, body) => {
                let bytes = match read_body(&mut socket, &mut buf, &body, deadline).await {
                    Ok(bytes) => bytes,
                    Err(()) => return None,
                };
                let (status, json) = post(room, &key, &bytes);
                let keep_alive = body.keep_alive && !last;
                let answer = http::answer(status, &json, keep_alive);
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    return None;
                }
                keep_alive
            }
        };
        if !keep_alive {
            socket.shutdown().await;
            return None;
        }
        drop(handshake.take());
        deadline = Instant::now() + IDLE_TIMEOUT;
    }
    None
}

/// The body `body` announced (a `100 Continue` first if the client waits for one), by
/// `deadline`. `Err`: the client went away or was too slow (nothing to answer).
async fn read_body(
    socket: &mut Socket,
    buf: &mut Option<PooledBuf>,
    body: &Body,
    deadline: Instant,
) -> Result<Vec<u8>, ()> {
    let have = |buf: &Option<PooledBuf>| buf.as_ref().map_or(0, |b| b.len());
    if body.expect_continue && have(buf) < body.len {
        socket
            .write_all(http::CONTINUE.as_bytes())
            .await
            .map_err(drop)?;
    }
    let read = async {
        while have(buf) < body.len {
            if socket.read(buf).await.map_err(drop)? == Read::Eof {
                return Err(());
            }
        }
        Ok(())
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .map_err(drop)??;
    let Some(b) = buf.as_mut() else {
        return Ok(Vec::new()); // an empty body
    };
    let bytes = b[..body.len].to_vec();
    b.advance(body.len);
    if b.is_empty() {
        *buf = None;
    }
    Ok(bytes)
}

fn error(code: u16, reason: impl Into<String>) -> PushMessage {
    PushMessage::Error(ErrorMessage {
        code,
        reason: reason.into(),
    })
}

/// A client message in its JSON form; `Err`: the status and JSON body that refuse it.
fn parse(room: &RoomInner, bytes: &[u8]) -> Result<(u32, PushMessage), (u16, String)> {
    let refused = |e: CodecError| {
        inc(&room.metrics.sse_bad_requests);
        let error = frame_error(&e);
        let code = match &error {
            PushMessage::Error(e) => e.code,
            _ => 400,
        };
        (code, error.to_json(0))
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        refused(CodecError::Malformed {
            what: "sse request body",
            reason: e.to_string(),
        })
    })?;
    PushMessage::from_json(text, room.config.max_frame_bytes).map_err(refused)
}

/// `POST /sse`: the AUTH that opens a session, in a place among the room's SSE streams.
/// Its token is checked by the session, as any connection's.
fn open(room: &Arc<RoomInner>, bytes: &[u8]) -> Result<SseLink, (u16, String)> {
    let (seq, auth) = parse(room, bytes)?;
    let refused = |reason: String| {
        PushMessage::AuthReply(AuthReply {
            ok: false,
            reason: Some(reason),
            heartbeat_secs: 0,
            session: None,
        })
        .to_json(seq)
    };
    if !matches!(auth, PushMessage::Auth(_)) {
        inc(&room.metrics.sse_bad_requests);
        let reason = format!("POST /sse takes an auth, not {}", auth.op());
        return Err((400, error(400, reason).to_json(seq)));
    }
    if room.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err((
            503,
            refused("the room is draining: connect to another".into()),
        ));
    }
    let Some(slot) = room.sse.reserve() else {
        inc(&room.metrics.sse_refused);
        let reason = format!(
            "the room holds at most {} sse sessions",
            room.sse.max_sessions()
        );
        return Err((429, refused(reason)));
    };
    Ok(SseLink::new((seq, auth), slot))
}

/// `POST /sse/{key}`: one client message handed to its session; the status and JSON body
/// to answer with (empty for `202`).
fn post(room: &RoomInner, key: &str, bytes: &[u8]) -> (u16, String) {
    let (seq, message) = match parse(room, bytes) {
        Ok(parsed) => parsed,
        Err(refused) => return refused,
    };
    let reason = match &message {
        PushMessage::Heartbeat
        | PushMessage::Ack(_)
        | PushMessage::Subscribe(_)
        | PushMessage::Unsubscribe(_)
        | PushMessage::Upstream(_)
        | PushMessage::Refresh(_) => None,
        PushMessage::Auth(_) => Some("auth opens a session: POST /sse".to_owned()),
        other => Some(format!("a client may not send {}", other.op())),
    };
    if let Some(reason) = reason {
        inc(&room.metrics.sse_bad_requests);
        return (400, error(400, reason).to_json(seq));
    }
    match room.sse.hand_over(key, (seq, message)) {
        Ok(()) => {
            inc(&room.metrics.sse_posts);
            (202, String::new())
        }
        Err(HandOver::Unknown) => {
            inc(&room.metrics.sse_unknown_session);
            (
                404,
                error(404, "no such session: open one with POST /sse").to_json(seq),
            )
        }
        Err(HandOver::Full) => {
            inc(&room.metrics.sse_inbox_full);
            let reason = format!(
                "the session has {} messages waiting: try again shortly",
                room.config.sse_inbox
            );
            (429, error(429, reason).to_json(seq))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use longlink_codec::push::{Upstream, UpstreamReply};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::metrics::Metrics;
    use crate::model::Session;
    use crate::room::{Connection, Room, RoomConfig, RoomEvents};
    use crate::token::{Tokens, Verifier};

    /// Events whose upstream answers only once the test lets it: a session that takes
    /// one is busy until then.
    struct Stuck(Arc<tokio::sync::Semaphore>);

    #[async_trait::async_trait]
    impl RoomEvents for Stuck {
        async fn connected(&self, _: Session, _: Connection) {}
        async fn resubscribed(&self, _: &Session, _: &[String], _: &[String], _: Connection) {}
        async fn disconnected(&self, _: Session) {}
        fn acked(&self, _: &Session, _: Vec<u64>) {}
        async fn upstream(&self, _: &Session, _: Upstream) -> UpstreamReply {
            let _ = self.0.acquire().await;
            UpstreamReply {
                ok: true,
                reason: None,
            }
        }
    }

    async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_full_inbox_is_answered_429_and_the_key_goes_with_the_session() {
        let config = RoomConfig {
            ws_listen: "127.0.0.1:0".parse().unwrap(),
            tcp_listen: "127.0.0.1:0".parse().unwrap(),
            sse_inbox: 2,
            ..RoomConfig::default()
        };
        let tokens = Tokens::new(b"k");
        let token = tokens.issue("u", std::time::Duration::from_secs(60));
        let metrics = Arc::new(Metrics::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let events = Arc::new(Stuck(Arc::clone(&gate)));
        let room = Room::new(config, Verifier::hmac_only(tokens), events, metrics);
        let addr = room.start().await.unwrap().ws.unwrap();
        let auth = format!(
            r#"{{"op":"auth","seq":1,"uid":"u","device":"d","net":"wifi","token":"{token}","apps":["demo"]}}"#
        );
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /sse HTTP/1.1\r\ncontent-length: {}\r\n\r\n{auth}",
            auth.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let key = loop {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stream opens");
            seen.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(at) = text.find(r#""session":""#) {
                let rest = &text[at + 11..];
                if let Some(end) = rest.find('"') {
                    break rest[..end].to_owned();
                }
            }
        };
        assert_eq!(room.sse_sessions(), 1);
        let path = format!("/sse/{key}");
        let upstream = r#"{"op":"upstream","seq":2,"app":"demo","type":"t","body":"x"}"#;
        assert!(
            post(addr, &path, upstream)
                .await
                .starts_with("HTTP/1.1 202 ")
        );
        // The session is stuck in that upstream: two heartbeats wait, the third is refused.
        let mut answers = Vec::new();
        for seq in 3..7 {
            let heartbeat = format!(r#"{{"op":"heartbeat","seq":{seq}}}"#);
            answers.push(post(addr, &path, &heartbeat).await[9..12].to_owned());
        }
        assert!(
            answers.iter().filter(|a| *a == "202").count() <= 2,
            "{answers:?}"
        );
        assert_eq!(
            answers.last().map(String::as_str),
            Some("429"),
            "{answers:?}"
        );
        assert!(room.inner.metrics.sse_inbox_full.get() >= 1);
        // The upstream answers, the client hangs up: the session ends, its key with it.
        gate.add_permits(1);
        drop(stream);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while room.sse_sessions() > 0 || room.inner.sse.open() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "the key stayed");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
