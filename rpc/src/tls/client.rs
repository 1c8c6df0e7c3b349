//! The client side: whom to trust, what to present, which name to check.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::sign::SingleCertAndKey;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{ALPN, TlsError, describe, pem, provider};
use crate::RpcError;

/// How a client speaks TLS: a rustls client config (the CAs it trusts, and for mutual TLS
/// the certificate it presents) and the name the server's certificate must carry — by
/// default the host part of the target's address (`10.0.0.5` of `10.0.0.5:7810`, `rpc.internal`
/// of `rpc.internal:7810`).
///
/// Give it to [`Client::builder(..).tls(..)`](crate::ClientBuilder::tls). Each connection
/// handshakes inside the connect timeout; a handshake that fails fails the call with
/// [`RpcError::Tls`] (it did not run). The PEM helpers offer ALPN `longlink-rpc`.
///
/// ```no_run
/// use longlink_rpc::{Client, TlsClient};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let read = |path: &str| std::fs::read(path);
/// let tls = TlsClient::from_pem(read("/etc/longlink/ca.pem")?)?  // trust the private CA only
///     .identity(read("/etc/longlink/cert.pem")?, read("/etc/longlink/key.pem")?)?; // mutual TLS
/// let client = Client::builder("10.0.0.5:7810").tls(tls).build(); // checks the name 10.0.0.5
/// # let _ = client; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    /// `None`: the host part of the address each connection dials.
    server_name: Option<ServerName<'static>>,
}

impl TlsClient {
    /// Speaks TLS with `config` as it is (its roots, its client certificate if any, its
    /// ALPN).
    pub fn new(config: Arc<ClientConfig>) -> TlsClient {
        TlsClient {
            config,
            server_name: None,
        }
    }

    /// Trusts the CA certificates in `ca_pem` and nothing else (not the system's roots):
    /// the way to reach servers whose certificates a private CA signed. No client
    /// certificate; TLS 1.2 and 1.3.
    pub fn from_pem(ca_pem: impl AsRef<[u8]>) -> Result<TlsClient, TlsError> {
        let roots = pem::roots(ca_pem.as_ref())?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(TlsClient::new(Arc::new(config)))
    }

    /// Presents this certificate chain (the leaf first) and key when the server asks
    /// (mutual TLS). Fails if the key does not match the certificate.
    pub fn identity(
        self,
        cert_chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<TlsClient, TlsError> {
        let key = pem::certified_key(cert_chain_pem.as_ref(), key_pem.as_ref())?;
        let mut config = (*self.config).clone();
        config.client_auth_cert_resolver = Arc::new(SingleCertAndKey::from(key));
        Ok(TlsClient {
            config: Arc::new(config),
            server_name: self.server_name,
        })
    }

    /// Checks the server's certificate for `name` (a DNS name or an IP address) instead of
    /// the host of the address.
    pub fn server_name(self, name: &str) -> Result<TlsClient, TlsError> {
        let name = ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName {
            name: name.to_owned(),
        })?;
        Ok(TlsClient {
            server_name: Some(name),
            ..self
        })
    }

    /// The rustls config.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The name checked for a connection to `addr`.
    fn name_for(&self, addr: &str) -> Result<ServerName<'static>, RpcError> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = host_of(addr);
        ServerName::try_from(host.to_owned()).map_err(|_| RpcError::Tls {
            reason: format!(
                "{host:?} (of {addr}) is not a name a certificate can carry; \
                 set one with TlsClient::server_name"
            ),
        })
    }

    /// Runs the client handshake on a connected socket.
    pub(crate) async fn connect(
        &self,
        addr: &str,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, RpcError> {
        let name = self.name_for(addr)?;
        TlsConnector::from(Arc::clone(&self.config))
            .connect(name, stream)
            .await
            .map_err(|e| match describe(&e) {
                Some(reason) => RpcError::Tls {
                    reason: format!("handshake with {addr}: {reason}"),
                },
                None => RpcError::Unavailable {
                    reason: format!("TLS handshake with {addr}: {e}"),
                },
            })
    }
}

impl From<Arc<ClientConfig>> for TlsClient {
    fn from(config: Arc<ClientConfig>) -> TlsClient {
        TlsClient::new(config)
    }
}

impl From<ClientConfig> for TlsClient {
    fn from(config: ClientConfig) -> TlsClient {
        TlsClient::new(Arc::new(config))
    }
}

/// The host part of `host:port`, `[v6]:port`, or `host`.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        Some(_) => addr,
        None => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address_is_the_default_name() {
        assert_eq!(host_of("10.0.0.5:7810"), "10.0.0.5");
        assert_eq!(host_of("rpc.internal:7810"), "rpc.internal");
        assert_eq!(host_of("[::1]:7810"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
