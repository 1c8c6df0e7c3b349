//! Fetching a JWKS document over HTTP, bounded in time and size.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The client JWKS documents are fetched with (`https://` through rustls, or `http://`).
pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The one place that client is built: trusting the certificates in `ca` (PEM), or the
/// system's bundle when `ca` is `None` and some JWKS URL is `https://` (with none, no
/// bundle is needed: a slim image without CA certificates still starts). Built only when
/// an issuer has a JWKS URL.
pub(super) fn http_client(ca: Option<&Path>, https: bool) -> Result<HttpClient, String> {
    let config = if ca.is_some() || https {
        crate::tls::client_config(ca)?
    } else {
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// `url` as the fetcher takes it: absolute, `https://` or `http://`, with a host.
pub(super) fn jwks_uri(url: &str) -> Result<Uri, &'static str> {
    let uri: Uri = url.parse().map_err(|_| "is not a URL")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with https:// or http://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    Ok(uri)
}

/// What went wrong fetching a JWKS; for the log, never shown to a client.
#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    /// The whole exchange took longer than the timeout.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// No answer (connect refused, reset).
    #[error("request failed: {0}")]
    Request(String),
    /// An answer other than 200.
    #[error("answered {0}")]
    Status(StatusCode),
    /// A body over the limit, refused from its Content-Length or cut off while read.
    #[error("body exceeds {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The body broke off.
    #[error("body: {0}")]
    Body(String),
    /// The body is not a JWKS.
    #[error("{0}")]
    NotJwks(&'static str),
}

/// GETs a document, at most `max_bytes` of it, within `timeout`.
#[derive(Clone)]
pub(super) struct JwksFetcher {
    client: HttpClient,
    timeout: Duration,
    max_bytes: usize,
}

impl JwksFetcher {
    pub(super) fn new(client: HttpClient, timeout: Duration, max_bytes: usize) -> JwksFetcher {
        JwksFetcher {
            client,
            timeout,
            max_bytes,
        }
    }

    /// The body at `url`. Redirects are not followed: a JWKS URL is configured exactly.
    pub(super) async fn get(&self, url: &Uri) -> Result<Bytes, FetchError> {
        tokio::time::timeout(self.timeout, self.get_untimed(url))
            .await
            .map_err(|_| FetchError::TimedOut(self.timeout))?
    }

    async fn get_untimed(&self, url: &Uri) -> Result<Bytes, FetchError> {
        let request = http::Request::get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| FetchError::Request(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| FetchError::Request(error_chain(&e)))?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let too_large = FetchError::TooLarge {
            max: self.max_bytes,
        };
        // Refused before a byte of the body is read when the server says how long it is.
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_bytes as u64) {
            return Err(too_large);
        }
        match Limited::new(response.into_body(), self.max_bytes)
            .collect()
            .await
        {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
            Err(e) => Err(FetchError::Body(e.to_string())),
        }
    }
}

/// An error and its causes, one line ("client error (Connect): tcp connect error: …").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_http_and_https_urls_are_taken() {
        assert!(jwks_uri("http://127.0.0.1:8080/jwks").is_ok());
        assert!(jwks_uri("https://auth.example/jwks").is_ok());
        let scheme = "must start with https:// or http://";
        assert_eq!(jwks_uri("gopher://auth.example/jwks").unwrap_err(), scheme);
        assert_eq!(jwks_uri("/jwks").unwrap_err(), scheme);
        assert_eq!(jwks_uri("ftp://x/").unwrap_err(), scheme);
        assert_eq!(jwks_uri("https:///jwks").unwrap_err(), "is not a URL");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("jwks-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let err = http_client(Some(&empty), false).unwrap_err();
        assert!(
            err.contains("empty.pem") && err.contains("no usable CA"),
            "{err}"
        );
        let err = http_client(Some(&dir.join("missing.pem")), true).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
