//! The HTTP requests the WebSocket port answers besides the upgrade: the SSE fallback's
//! `POST /sse` (open a session), `POST /sse/{session}` (a client message for it) and their
//! CORS preflights. Parsed with httparse from the request head; every answer here is
//! written by hand, as the 101 of the upgrade is.

use std::fmt::Write as _;

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Not an SSE path: the WebSocket upgrade answers it (101, or 426 and friends).
    WebSocket,
    /// `POST /sse`: the body is an AUTH; the answer becomes the session's stream.
    Open(Body),
    /// `POST /sse/{session}`: the body is one client message for that session.
    Post(String, Body),
    /// `OPTIONS /sse` or `OPTIONS /sse/{session}`: the CORS preflight.
    Preflight {
        /// The connection may take another request.
        keep_alive: bool,
    },
    /// An SSE path, refused before its body is read; the connection closes after.
    Refuse(u16, String),
}

/// A request body to read, as its head announced it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Body {
    /// `content-length`, within the limit.
    pub(crate) len: usize,
    /// The client waits for `100 Continue` before sending it.
    pub(crate) expect_continue: bool,
    /// The connection may take another request after this one.
    pub(crate) keep_alive: bool,
}

/// Where an SSE request head goes; `max_body` is the room's frame limit (413 over it,
/// from `content-length`, before anything is read). A head httparse cannot read is left
/// to the upgrade, which answers it as it always has.
pub(crate) fn route(head: &[u8], max_body: usize) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; super::upgrade::MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
        return Route::WebSocket;
    }
    let path = request.path.unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let session = match path.strip_prefix("/sse") {
        Some("" | "/") => None,
        Some(rest) if rest.starts_with('/') => match percent_decode(&rest[1..]) {
            Some(key) if !key.is_empty() && !key.contains('/') => Some(key),
            _ => return Route::Refuse(404, "no such session".into()),
        },
        _ => return Route::WebSocket,
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let keep_alive = match request.version {
        Some(1) => !has_token("connection", "close"),
        _ => has_token("connection", "keep-alive"),
    };
    match request.method {
        Some("POST") => {}
        Some("OPTIONS") => return Route::Preflight { keep_alive },
        _ => return Route::Refuse(405, "the sse endpoints take POST (and OPTIONS)".into()),
    }
    if header("transfer-encoding").is_some() {
        return Route::Refuse(411, "send the body with a content-length".into());
    }
    let len = match header("content-length").map(str::parse::<usize>) {
        None => return Route::Refuse(411, "content-length required".into()),
        Some(Err(_)) => return Route::Refuse(400, "bad content-length".into()),
        Some(Ok(len)) if len > max_body => {
            return Route::Refuse(413, format!("body of {len} bytes exceeds limit {max_body}"));
        }
        Some(Ok(len)) => len,
    };
    let body = Body {
        len,
        expect_continue: has_token("expect", "100-continue"),
        keep_alive,
    };
    match session {
        None => Route::Open(body),
        Some(key) => Route::Post(key, body),
    }
}

/// `%XX` decoded (a browser's `encodeURIComponent` writes the key's `:` as `%3A`); `None`
/// for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The CORS headers every SSE answer carries (no cookies are used: any origin).
const CORS: &str = "access-control-allow-origin: *\r\n";

/// An answer with a JSON body (or none, for an empty `body`).
pub(crate) fn answer(status: u16, body: &str, keep_alive: bool) -> String {
    let mut head = format!("HTTP/1.1 {status} {}\r\n{CORS}", phrase(status));
    if !body.is_empty() {
        head.push_str("content-type: application/json\r\n");
    }
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let _ = write!(
        head,
        "cache-control: no-store\r\ncontent-length: {}\r\nconnection: {connection}\r\n\r\n{body}",
        body.len()
    );
    head
}

/// The answer to a CORS preflight.
pub(crate) fn preflight(keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 204 No Content\r\n{CORS}access-control-allow-methods: POST\r\n\
         access-control-allow-headers: content-type\r\naccess-control-max-age: 600\r\n\
         content-length: 0\r\nconnection: {connection}\r\n\r\n"
    )
}

/// The head of an open session's stream: its events follow as chunks.
pub(crate) const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
    cache-control: no-store\r\nx-accel-buffering: no\r\ntransfer-encoding: chunked\r\n\
    access-control-allow-origin: *\r\nconnection: close\r\n\r\n";

/// What a client waiting on `expect: 100-continue` is told before it sends the body.
pub(crate) const CONTINUE: &str = "HTTP/1.1 100 Continue\r\n\r\n";

/// The chunk that ends the stream.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends one event (`data: <json>\n\n`) as one chunk of the stream.
pub(crate) fn event_chunk(json: &[u8], out: &mut impl bytes::BufMut) {
    let len = json.len() + "data: ".len() + 2;
    out.put_slice(format!("{len:x}\r\n").as_bytes());
    out.put_slice(b"data: ");
    out.put_slice(json);
    out.put_slice(b"\n\n\r\n");
}

/// The reason phrase of the statuses the room answers with.
pub(crate) fn phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Bad Request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(len: usize) -> Body {
        Body {
            len,
            expect_continue: false,
            keep_alive: true,
        }
    }

    #[test]
    fn sse_paths_are_routed_and_others_left_to_the_upgrade() {
        let open = b"POST /sse HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(route(open, 100), Route::Open(body(12)));
        let post = b"POST /sse/room-1%3A7%3Aab_c-d HTTP/1.1\r\ncontent-length: 3\r\n\r\n";
        assert_eq!(
            route(post, 100),
            Route::Post("room-1:7:ab_c-d".into(), body(3))
        );
        let query = b"POST /sse?x=1 HTTP/1.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        assert!(matches!(
            route(query, 100),
            Route::Open(Body {
                keep_alive: false,
                ..
            })
        ));
        let ws = b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(route(ws, 100), Route::WebSocket);
        assert_eq!(route(b"GET /ssex HTTP/1.1\r\n\r\n", 100), Route::WebSocket);
        assert_eq!(route(b"\x16\x03garbage\r\n\r\n", 100), Route::WebSocket);
        let preflight = b"OPTIONS /sse/k HTTP/1.1\r\n\r\n";
        assert_eq!(route(preflight, 100), Route::Preflight { keep_alive: true });
        let old = b"OPTIONS /sse HTTP/1.0\r\n\r\n";
        assert_eq!(route(old, 100), Route::Preflight { keep_alive: false });
    }

    #[test]
    fn bodies_are_refused_from_their_head() {
        let status = |head: &[u8]| match route(head, 100) {
            Route::Refuse(status, _) => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status(b"POST /sse HTTP/1.1\r\n\r\n"), 411);
        assert_eq!(
            status(b"POST /sse HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status(b"POST /sse HTTP/1.1\r\ncontent-length: 101\r\n\r\n"),
            413
        );
        assert_eq!(
            status(b"POST /sse HTTP/1.1\r\ncontent-length: -1\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET /sse HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status(b"POST /sse/a%2Fb HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status(b"POST /sse/%zz HTTP/1.1\r\n\r\n"), 404);
        let expect = b"POST /sse HTTP/1.1\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n";
        assert!(matches!(
            route(expect, 100),
            Route::Open(Body {
                expect_continue: true,
                len: 100,
                ..
            })
        ));
    }

    #[test]
    fn answers_carry_cors_and_exact_framing() {
        assert_eq!(
            answer(202, "", true),
            "HTTP/1.1 202 Accepted\r\naccess-control-allow-origin: *\r\n\
             cache-control: no-store\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n"
        );
        let refused = answer(404, "{\"op\":\"error\"}", false);
        assert!(
            refused.starts_with("HTTP/1.1 404 Not Found\r\naccess-control-allow-origin: *\r\n")
        );
        assert!(refused.contains("content-type: application/json\r\n"));
        assert!(
            refused.ends_with("content-length: 14\r\nconnection: close\r\n\r\n{\"op\":\"error\"}")
        );
        let pre = preflight(true);
        for line in [
            "HTTP/1.1 204 No Content\r\n",
            "access-control-allow-origin: *\r\n",
            "access-control-allow-methods: POST\r\n",
            "access-control-allow-headers: content-type\r\n",
            "access-control-max-age: 600\r\n",
        ] {
            assert!(pre.contains(line), "{pre}");
        }
        let mut chunk = Vec::new();
        event_chunk(b"{\"op\":\"heartbeat_reply\",\"seq\":3}", &mut chunk);
        assert_eq!(
            chunk,
            b"28\r\ndata: {\"op\":\"heartbeat_reply\",\"seq\":3}\n\n\r\n".to_vec()
        );
    }
}
