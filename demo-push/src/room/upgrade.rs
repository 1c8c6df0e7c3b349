//! The WebSocket opening handshake (RFC 6455 §4.2), answered here so that an upgraded
//! connection keeps no HTTP or WebSocket library state: once the 101 is written the socket
//! is a plain stream of frames for [`Link`](super::link::Link).

use bytes::Buf;
use longlink_codec::PooledBuf;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::socket::{Read, Socket};

/// Largest request head accepted (request line and headers).
pub(crate) const MAX_REQUEST_BYTES: usize = 8 * 1024;
pub(crate) const MAX_HEADERS: usize = 32;

/// Why an upgrade failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeError {
    /// Refused with an HTTP error (already written to the client).
    #[error("{status}: {reason}")]
    Refused { status: u16, reason: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the client's upgrade request (after `early`, what came with a TLS handshake) and
/// answers `101 Switching Protocols`, or an HTTP error saying what was wrong. Returns the
/// bytes that followed the request (a client may send its first frame without waiting),
/// `None` when there were none.
#[cfg(test)]
pub(crate) async fn upgrade(
    socket: &mut Socket,
    early: Option<PooledBuf>,
) -> Result<Option<PooledBuf>, UpgradeError> {
    let mut buf = early;
    match read_head(socket, &mut buf).await? {
        Some(end) => answer(socket, buf, end).await,
        None => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
    }
}

/// Reads until `buf` holds a whole request head; its length. `None`: the client closed
/// before sending a byte of it. A head over [`MAX_REQUEST_BYTES`] is answered `431`.
pub(crate) async fn read_head(
    socket: &mut Socket,
    buf: &mut Option<PooledBuf>,
) -> Result<Option<usize>, UpgradeError> {
    loop {
        let head = buf.as_deref().map_or(&[][..], |b| &b[..]);
        if let Some(end) = find_head_end(head) {
            return Ok(Some(end));
        }
        if head.len() >= MAX_REQUEST_BYTES {
            let reason = format!("request head over {MAX_REQUEST_BYTES} bytes");
            let head = format!(
                "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                 content-length: {}\r\n\r\n{reason}",
                reason.len()
            );
            refuse(socket, &head).await;
            return Err(UpgradeError::Refused {
                status: 431,
                reason,
            });
        }
        let had = head.len();
        if socket.read(buf).await? == Read::Eof {
            if had == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// Answers the upgrade request whose head is the first `end` bytes of `buf`: `101`, or an
/// HTTP error saying what was wrong. Returns the bytes that followed the head.
pub(crate) async fn answer(
    socket: &mut Socket,
    buf: Option<PooledBuf>,
    end: usize,
) -> Result<Option<PooledBuf>, UpgradeError> {
    let Some(mut rest) = buf else {
        unreachable!("a head was found in it")
    };
    let response = match respond(&rest[..end]) {
        Ok(accept) => accept,
        Err((status, reason)) => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\nconnection: close\r\ncontent-type: text/plain\r\n\
                 sec-websocket-version: 13\r\ncontent-length: {}\r\n\r\n{reason}",
                phrase(status),
                reason.len()
            );
            refuse(socket, &head).await;
            return Err(UpgradeError::Refused { status, reason });
        }
    };
    socket.write_all(response.as_bytes()).await?;
    rest.advance(end);
    Ok((!rest.is_empty()).then_some(rest))
}

/// Writes the refusal, closes our side, and reads what the client still sends (up to 64 KiB,
/// for at most a second) before the socket is dropped: closing with unread input would
/// reset the connection, and the client could lose the answer.
pub(crate) async fn refuse(socket: &mut Socket, response: &str) {
    refuse_with(socket, response.as_bytes()).await;
}

/// [`refuse`] with any bytes (a push ERROR frame for a raw TCP client).
pub(crate) async fn refuse_with(socket: &mut Socket, response: &[u8]) {
    if socket.write_all(response).await.is_err() {
        return;
    }
    socket.shutdown().await;
    let drain = async {
        let mut left: usize = 64 * 1024;
        while left > 0 {
            let mut sink = None;
            match socket.read(&mut sink).await {
                Ok(Read::Data) => left = left.saturating_sub(sink.map_or(0, |b| b.len())),
                Ok(Read::Eof) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

/// The answer to a WebSocket or SSE client refused before its request is read (over the
/// per-IP limit): `status` with `reason` as its body.
pub(crate) fn refusal_head(status: u16, reason: &str) -> String {
    // CORS: an SSE client from a browser is refused here too, and may read why.
    format!(
        "HTTP/1.1 {status} {}\r\nconnection: close\r\ncontent-type: text/plain\r\n\
         access-control-allow-origin: *\r\ncontent-length: {}\r\n\r\n{reason}",
        phrase(status),
        reason.len()
    )
}

/// The end of the request head (after the blank line), if it has all arrived.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The 101 response for a valid upgrade request, or the status and reason to refuse it.
fn respond(head: &[u8]) -> Result<String, (u16, String)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err((400, "incomplete request".into())),
        Err(e) => return Err((400, format!("bad request: {e}"))),
    }
    if request.method != Some("GET") {
        return Err((405, "a websocket upgrade is a GET".into()));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err((
            426,
            "this port speaks websocket only (upgrade: websocket)".into(),
        ));
    }
    if header("sec-websocket-version") != Some("13") {
        return Err((426, "websocket version 13 required".into()));
    }
    let key = header("sec-websocket-key")
        .map(str::trim)
        .filter(|k| k.len() == 24)
        .ok_or((400, "missing or malformed sec-websocket-key".to_owned()))?;
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    ))
}

fn phrase(status: u16) -> &'static str {
    super::http::phrase(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    #[test]
    fn answers_the_rfc_example_and_refuses_what_is_not_an_upgrade() {
        let ok = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
                   Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
        let response = respond(ok).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 "));
        assert!(response.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        let plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(respond(plain).unwrap_err().0, 426);
        let post = b"POST / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(respond(post).unwrap_err().0, 405);
        let old = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(respond(old).unwrap_err().0, 426);
        let keyless = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                        Sec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(respond(keyless).unwrap_err().0, 400);
        assert_eq!(respond(b"\x16\x03\x01garbage\r\n\r\n").unwrap_err().0, 400);
    }

    #[tokio::test]
    async fn a_tungstenite_client_upgrades_and_early_bytes_are_kept() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            upgrade(&mut Socket::Plain(stream), None)
                .await
                .map(|early| early.map(|b| b.len()))
        });
        let client = tokio_tungstenite::connect_async(format!("ws://{addr}/x"));
        let outcome = client.await;
        let served = server.await.unwrap();
        let (_ws, response) = outcome.unwrap_or_else(|e| panic!("{e}; server: {served:?}"));
        assert_eq!(response.status(), 101);
        assert_eq!(served.unwrap(), None);
    }

    #[tokio::test]
    async fn an_endless_request_head_is_refused_with_431_at_the_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            upgrade(&mut Socket::Plain(stream), None).await.map(|_| ())
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        while head.len() < 2 * MAX_REQUEST_BYTES {
            head.extend_from_slice(b"x-filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        // The server stops reading at the limit; the rest may not be taken.
        let _ = client.write_all(&head).await;
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        drop(client);
        assert!(matches!(
            server.await.unwrap(),
            Err(UpgradeError::Refused { status: 431, .. })
        ));
    }
}
