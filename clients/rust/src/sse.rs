//! The SSE / HTTP-streaming fallback, for networks that let only plain HTTP through: the
//! AUTH is POSTed to the room's `/sse` (on its WebSocket port), whose answer stays open as
//! a chunked `text/event-stream` carrying the room's messages in their JSON form, one
//! `data:` line per event; every other client message is POSTed to `/sse/{session}`, the
//! key the first event (the AUTH OK) names.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use longlink_codec::push::PushMessage;

use super::ClientError;
use super::http::{connector, encode, error_chain};

/// A POST that takes longer fails (the session is then given up).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Kept-alive POST connections are closed sooner than the room's 30 s idle timeout, so a
/// POST never goes out on a connection the room is closing.
const POOL_IDLE: Duration = Duration::from_secs(20);

/// An SSE session: its stream, and where its POSTs go.
pub(super) struct SseConn {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `http://host:port` (or `https://`).
    base: String,
    /// The session key, from the AUTH OK.
    session: Option<String>,
    /// The stream, once `POST /sse` was answered `200`.
    stream: Option<Incoming>,
    /// Stream bytes not yet a whole event.
    buf: BytesMut,
    /// Messages to hand out before reading the stream (a refused AUTH's answer).
    pending: VecDeque<(u32, PushMessage)>,
    max_frame_bytes: usize,
}

impl SseConn {
    /// The SSE endpoints of the room whose WebSocket URL is `ws_url` (`ws://` → `http://`,
    /// `wss://` → `https://`, which needs `tls`). Connects to nothing until the AUTH.
    pub(super) fn new(
        ws_url: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
        max_frame_bytes: usize,
    ) -> Result<SseConn, ClientError> {
        let uri: http::Uri = ws_url
            .parse()
            .map_err(|e| ClientError::Protocol(format!("{ws_url}: {e}")))?;
        let scheme = match uri.scheme_str() {
            Some("wss" | "https") if tls.is_none() => {
                return Err(ClientError::Tls(format!(
                    "{ws_url}: a TLS room needs ClientConfig::tls"
                )));
            }
            Some("wss" | "https") => "https",
            _ => "http",
        };
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError::Protocol(format!("{ws_url}: no host")))?;
        Ok(SseConn {
            http: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(POOL_IDLE)
                .build(connector(tls)),
            base: format!("{scheme}://{authority}"),
            session: None,
            stream: None,
            buf: BytesMut::new(),
            pending: VecDeque::new(),
            max_frame_bytes,
        })
    }

    /// POSTs `message`: the AUTH opens the stream; anything else goes to the session.
    pub(super) async fn send(
        &mut self,
        seq: u32,
        message: &PushMessage,
    ) -> Result<(), ClientError> {
        let json = message.to_json(seq);
        let path = match (&self.session, message) {
            (None, PushMessage::Auth(_)) if self.stream.is_none() => "/sse".to_owned(),
            (None, _) => return Err(ClientError::NotConnected),
            (Some(key), _) => format!("/sse/{}", encode(key)),
        };
        let (status, body) = self.post(&path, json).await?;
        match (path.as_str(), status) {
            ("/sse", 200) => {
                self.stream = Some(body);
                Ok(())
            }
            ("/sse", 401 | 403) => {
                // Refused for good: the answer is the auth_reply saying why.
                let text = read_all(body).await?;
                let reply = PushMessage::from_json(&text, self.max_frame_bytes)?;
                self.pending.push_back(reply);
                Ok(())
            }
            (_, 202) => {
                let _ = read_all(body).await; // empty; read so the connection is reused
                Ok(())
            }
            (_, 404) => Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the room no longer knows this sse session",
            ))),
            (path, status) => {
                let text = read_all(body).await.unwrap_or_default();
                Err(ClientError::Http(format!("POST {path}: {status} {text}")))
            }
        }
    }

    async fn post(&self, path: &str, json: String) -> Result<(u16, Incoming), ClientError> {
        let request = http::Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json)))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        // The key is a secret: errors name the endpoint only.
        let name = if path == "/sse" {
            "/sse"
        } else {
            "/sse/{session}"
        };
        let response = tokio::time::timeout(TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| ClientError::Http(format!("POST {name}: timed out")))?
            .map_err(|e| ClientError::Http(format!("POST {name}: {}", error_chain(&e))))?;
        Ok((response.status().as_u16(), response.into_body()))
    }

    /// The next messages from the room; `None` when the stream ended.
    pub(super) async fn recv(&mut self) -> Result<Option<Vec<(u32, PushMessage)>>, ClientError> {
        if !self.pending.is_empty() {
            return Ok(Some(self.pending.drain(..).collect()));
        }
        loop {
            let events = self.events()?;
            if !events.is_empty() {
                return Ok(Some(events));
            }
            let Some(stream) = self.stream.as_mut() else {
                return Ok(None);
            };
            // Cancel safe: a dropped `frame()` loses nothing.
            match stream.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ClientError::Io(std::io::Error::other(e))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
            if self.buf.len() > self.max_frame_bytes + 1024 {
                return Err(ClientError::Protocol(format!(
                    "an sse event over {} bytes",
                    self.max_frame_bytes
                )));
            }
        }
    }

    /// The whole events in the buffer, parsed (the session key taken from the AUTH OK).
    fn events(&mut self) -> Result<Vec<(u32, PushMessage)>, ClientError> {
        let mut messages = Vec::new();
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let event = self.buf.split_to(end + 2);
            let text = std::str::from_utf8(&event)
                .map_err(|e| ClientError::Protocol(format!("an sse event: {e}")))?;
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d).trim_end_matches('\r'))
                .collect();
            if data.is_empty() {
                continue; // a comment or a keep-alive
            }
            let (seq, message) = PushMessage::from_json(&data.join("\n"), self.max_frame_bytes)?;
            if let PushMessage::AuthReply(reply) = &message
                && reply.ok
                && reply.session.is_some()
            {
                self.session.clone_from(&reply.session);
            }
            messages.push((seq, message));
        }
        Ok(messages)
    }
}

/// A short answer's body, as text.
async fn read_all(body: Incoming) -> Result<String, ClientError> {
    let bytes = tokio::time::timeout(TIMEOUT, Limited::new(body, 64 * 1024).collect())
        .await
        .map_err(|_| ClientError::Http("an answer's body timed out".into()))?
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anyhow_are_parsed_whole_and_the_session_key_is_taken() {
        let mut conn = SseConn::new("ws://127.0.0.1:7801/", None, 1 << 16).unwrap();
        assert_eq!(conn.base, "http://127.0.0.1:7801");
        let wire = concat!(
            "data: {\"seq\":1,\"op\":\"auth_reply\",\"ok\":true,\"heartbeat_secs\":3,\"session\":\"r:1:k\"}\n\n",
            ": a comment\n\n",
            "data: {\"seq\":4,\"op\":\"heartbeat_reply\"}\r\n\n",
        );
        let mut got = Vec::new();
        for b in wire.bytes() {
            conn.buf.extend_from_slice(&[b]);
            got.extend(conn.events().unwrap());
        }
        assert!(conn.buf.is_empty());
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(&got[0], (1, PushMessage::AuthReply(r)) if r.ok));
        assert_eq!(got[1], (4, PushMessage::HeartbeatReply));
        assert_eq!(conn.session.as_deref(), Some("r:1:k"));
        conn.buf.extend_from_slice(b"data: {not json\n\n");
        assert!(conn.events().is_err());
    }

    #[test]
    fn a_tls_room_needs_tls_settings() {
        assert!(matches!(
            SseConn::new("wss://push.example:443/", None, 1024),
            Err(ClientError::Tls(_))
        ));
    }
}
