//! TLS for every listener a client reaches: the rooms' `wss://` and TCP+TLS ports and the
//! center's (and dispatcher's) HTTPS, from one certificate and key in PEM files (`[tls]`);
//! and between the processes of a cluster, over longlink-rpc ([`ClusterTlsConfig`],
//! `[cluster.tls]`).
//!
//! ```toml
//! [tls]
//! cert = "/etc/longlink/fullchain.pem"
//! key = "/etc/longlink/privkey.pem"
//! reload_check_secs = 10   # also on SIGHUP
//! ```
//!
//! The files are read again on SIGHUP and whenever their modification time changes
//! ([`Certificates::watch`]): new handshakes use the new certificate, open connections keep
//! theirs. A reload that fails (a half-written file, a key that does not match) keeps the
//! certificate in use and is counted (`tls_reload_failures`).
//!
//! The crypto provider is *ring*: it builds with a C compiler alone (aws-lc-rs wants CMake
//! and, for its FIPS build, Go) and its handshakes are as fast here.

mod certs;
mod cluster;
pub mod https;
mod selfsigned;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use certs::{Certificates, load_chain};
pub use cluster::ClusterTlsConfig;
pub use selfsigned::{SelfSigned, self_signed};

/// The `[tls]` section: the certificate chain and key every TLS listener of the process
/// serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM (the leaf first).
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification times are checked (they are also read again on
    /// SIGHUP); 0 checks on SIGHUP only.
    #[serde(
        rename = "reload_check_secs",
        with = "crate::serde_duration::secs",
        default = "default_reload_check"
    )]
    pub reload_check: Duration,
}

fn default_reload_check() -> Duration {
    Duration::from_secs(10)
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A file held no certificate, or no key, or something that is not PEM.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the certificate or key (a key that does not match the certificate,
    /// an algorithm it does not support).
    #[error("the certificate and key do not make a usable pair: {0}")]
    Rustls(#[from] rustls::Error),
    /// Generating a self-signed certificate failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    /// A setting that cannot be used (a `server_name` that is not a name).
    #[error("{0}")]
    Invalid(String),
}

/// Where Linux distributions keep the system's CA bundle (rustls-native-certs and
/// OpenSSL look in the same places).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A client config (no ALPN; HTTP clients set their own) trusting the CA certificates in
/// `ca` (PEM), or the system's bundle (`SSL_CERT_FILE`, or the usual places) when `ca` is
/// `None`. For the process's outgoing HTTPS: JWKS fetches, the CLI client.
pub fn client_config(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let path = match ca {
        Some(path) => path.to_owned(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
            })
            .ok_or("no system CA bundle found (SSL_CERT_FILE, /etc/ssl/certs/ca-certificates.crt, …): name a CA file")?,
    };
    let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        // A bundle may hold a certificate rustls cannot parse; the others still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{}: no usable CA certificate", path.display()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// ALPN for the rooms' `wss://` port and HTTPS: HTTP/1.1 (the WebSocket upgrade is one).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN for the rooms' TCP+TLS port: the push protocol's binary frames.
pub const ALPN_PUSH: &[u8] = b"longlink-push";

/// The crypto provider every config here uses (*ring*).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config serving `certs` with these ALPN protocols. A client that offers ALPN
/// without any of them is refused (`no_application_protocol`); one that offers none is
/// served. No 0-RTT (early data could be replayed); TLS 1.2 and 1.3.
///
/// Sessions resume from **stateless tickets** (rustls's ticketer: keys in memory, rotated
/// every 6 hours) and nothing is kept per client on the server: a phone that reconnects
/// after a network change skips the certificate signature, the bulk of a full handshake,
/// and 100k clients cost no session cache. One ticket per TLS 1.3 handshake.
pub fn server_config(
    certs: &Arc<Certificates>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(certs) as Arc<dyn rustls::server::ResolvesServerCert>);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.max_early_data_size = 0;
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}
