//! The server side: the certificate it serves, and whom it asks for one.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};

use super::{ALPN, TlsError, pem, provider};

/// A server's TLS from PEM text: the certificate chain and key it serves and, for mutual
/// TLS, the private CA whose certificates clients must present.
///
/// It becomes the `Arc<rustls::ServerConfig>` that
/// [`Server::builder().tls(..)`](crate::ServerBuilder::tls) takes (TLS 1.2 and 1.3, ALPN
/// `longlink-rpc` offered, no 0-RTT: early data could be replayed).
///
/// ```no_run
/// use longlink_rpc::{Server, TlsServer};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let read = |path: &str| std::fs::read(path);
/// let tls = TlsServer::from_pem(read("/etc/longlink/cert.pem")?, read("/etc/longlink/key.pem")?)?
///     .client_ca(read("/etc/longlink/ca.pem")?)?; // mutual TLS: clients need a cert it signed
/// let server = Server::builder().tls(tls).bind("0.0.0.0:7810").await?;
/// # let _ = server; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TlsServer {
    key: Arc<CertifiedKey>,
    /// `None`: no client certificate asked for.
    clients: Option<Arc<dyn ClientCertVerifier>>,
}

impl TlsServer {
    /// Serves this certificate chain (the leaf first) and key; asks clients for no
    /// certificate. Fails if the text holds no certificate or no key, or they do not match.
    pub fn from_pem(
        cert_chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<TlsServer, TlsError> {
        Ok(TlsServer {
            key: pem::certified_key(cert_chain_pem.as_ref(), key_pem.as_ref())?,
            clients: None,
        })
    }

    /// Requires every client to present a certificate the CAs in `ca_pem` signed (mutual
    /// TLS, through rustls's `WebPkiClientVerifier`). A client without one, or with one
    /// from another CA, fails its handshake: nothing it sends is read.
    pub fn client_ca(self, ca_pem: impl AsRef<[u8]>) -> Result<TlsServer, TlsError> {
        let roots = pem::roots(ca_pem.as_ref())?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?;
        Ok(TlsServer {
            clients: Some(verifier),
            ..self
        })
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.clients.is_some()
    }

    /// The rustls config.
    pub fn config(&self) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            // ring offers suites for every version rustls knows: this cannot fail.
            .expect("ring supports TLS 1.2 and 1.3");
        let builder = match &self.clients {
            Some(verifier) => builder.with_client_cert_verifier(Arc::clone(verifier)),
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(&self.key))));
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.max_early_data_size = 0;
        Arc::new(config)
    }
}

impl From<TlsServer> for Arc<ServerConfig> {
    fn from(tls: TlsServer) -> Arc<ServerConfig> {
        tls.config()
    }
}
