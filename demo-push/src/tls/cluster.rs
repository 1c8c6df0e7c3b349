//! TLS between the processes of a cluster (`[cluster.tls]`): every cluster RPC server
//! serves it, every cluster RPC client speaks it, and by default each side proves itself
//! to the other with a certificate from the cluster's private CA (mutual TLS).

use std::path::{Path, PathBuf};

use longlink_rpc::{TlsClient, TlsServer};

use super::TlsError;

/// The `[cluster.tls]` section: the cluster's private CA and this process's certificate,
/// used both as its RPC server's certificate and as its identity when it calls others.
///
/// ```toml
/// [cluster.tls]
/// ca = "/etc/longlink/cluster-ca.pem"   # the private CA every process trusts
/// cert = "/etc/longlink/node.pem"       # this process's chain (server and client auth)
/// key = "/etc/longlink/node-key.pem"
/// mutual = true                         # servers require client certificates from `ca`
/// # server_name = "rpc.internal"        # checked instead of the host of each address
/// ```
///
/// ```
/// let c = longlink_push::config::Config::from_toml(
///     "[cluster.tls]\nca = \"ca.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"",
/// )
/// .unwrap();
/// let tls = c.cluster.tls.unwrap();
/// assert!(tls.mutual && tls.server_name.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// The private CA's certificate (PEM): what servers' certificates, and with `mutual`
    /// clients' certificates, must chain to.
    pub ca: PathBuf,
    /// This process's certificate chain (PEM, the leaf first); it needs both the server and
    /// the client extended key usage when `mutual` is on.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Servers require a client certificate from `ca` (default on); off, servers ask for
    /// none and anyone who trusts `ca` may call.
    #[serde(default = "yes")]
    pub mutual: bool,
    /// The name every server's certificate must carry (default: the host of the address
    /// dialled, an IP address or a DNS name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

fn yes() -> bool {
    true
}

impl ClusterTlsConfig {
    /// What this process's RPC clients speak: trust `ca`, present `cert`.
    pub fn client(&self) -> Result<TlsClient, TlsError> {
        let (ca, cert, key) = (read(&self.ca)?, read(&self.cert)?, read(&self.key)?);
        let tls = TlsClient::from_pem(ca)
            .and_then(|t| t.identity(cert, key))
            .map_err(|e| self.error(e))?;
        match &self.server_name {
            Some(name) => tls.server_name(name).map_err(|e| self.error(e)),
            None => Ok(tls),
        }
    }

    /// What this process's RPC server serves: `cert`, and with `mutual` a client
    /// certificate from `ca` required.
    pub fn server(&self) -> Result<TlsServer, TlsError> {
        let tls =
            TlsServer::from_pem(read(&self.cert)?, read(&self.key)?).map_err(|e| self.error(e))?;
        if self.mutual {
            return tls.client_ca(read(&self.ca)?).map_err(|e| self.error(e));
        }
        Ok(tls)
    }

    /// The rpc crate's error, naming the file it is about.
    fn error(&self, e: longlink_rpc::tls::TlsError) -> TlsError {
        use longlink_rpc::tls::TlsError as Rpc;
        match e {
            Rpc::Pem { what, reason } => TlsError::Pem {
                path: match what {
                    "CA certificates" => self.ca.clone(),
                    "private key" => self.key.clone(),
                    _ => self.cert.clone(),
                },
                reason,
            },
            Rpc::Rustls(e) => TlsError::Rustls(e),
            Rpc::ClientCa(e) => TlsError::Pem {
                path: self.ca.clone(),
                reason: e.to_string(),
            },
            other => TlsError::Invalid(format!("cluster.tls: {other}")),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}
