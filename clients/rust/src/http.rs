//! The few HTTP GETs a client makes (dispatch, notify pull), on hyper.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::ClientError;

/// Largest answer read.
const MAX_ANSWER: usize = 16 << 20;

pub(super) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub(super) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GETs `url`: the status and the body (at most 16 MiB).
pub(super) async fn get(client: &HttpClient, url: &str) -> Result<(u16, Bytes), ClientError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ClientError::Http(format!("{url}: {e}")))?;
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| ClientError::Http(format!("{url}: timed out")))?
        .map_err(|e| ClientError::Http(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| ClientError::Http(format!("{url}: {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// Percent-encodes a query value.
pub(super) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
