//! The few HTTP GETs a client makes (dispatch, notify pull), on hyper (HTTPS through
//! hyper-rustls with the client's TLS settings).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::ClientError;

/// Largest answer read.
const MAX_ANSWER: usize = 16 << 20;
/// A GET that takes longer fails.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(super) struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    tls: bool,
}

pub(super) fn client(tls: Option<&Arc<rustls::ClientConfig>>) -> HttpClient {
    HttpClient {
        inner: Client::builder(TokioExecutor::new()).build(connector(tls)),
        tls: tls.is_some(),
    }
}

/// HTTP and HTTPS (with the client's TLS settings, HTTP/1.1 only).
pub(super) fn connector(tls: Option<&Arc<rustls::ClientConfig>>) -> HttpsConnector<HttpConnector> {
    // Without TLS settings an https:// URL is refused before connecting (see `get`).
    let mut config = tls.map_or_else(
        || {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        },
        |c| (**c).clone(),
    );
    config.alpn_protocols.clear(); // hyper-rustls offers http/1.1 itself
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build()
}

/// GETs `url`: the status and the body (at most 16 MiB).
pub(super) async fn get(client: &HttpClient, full_url: &str) -> Result<(u16, Bytes), ClientError> {
    // Errors name the URL without its query, which may carry the user's token.
    let url = full_url.split('?').next().unwrap_or_default();
    let uri: http::Uri = full_url
        .parse()
        .map_err(|e| ClientError::Http(format!("{url}: {e}")))?;
    if uri.scheme_str() == Some("https") && !client.tls {
        return Err(ClientError::Tls(format!(
            "{url}: an https:// center needs ClientConfig::tls"
        )));
    }
    let response = tokio::time::timeout(TIMEOUT, client.inner.get(uri))
        .await
        .map_err(|_| ClientError::Http(format!("{url}: timed out")))?
        .map_err(|e| ClientError::Http(format!("{url}: {}", error_chain(&e))))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| ClientError::Http(format!("{url}: {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// An error with its causes (hyper's own message alone is "client error (Connect)").
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
