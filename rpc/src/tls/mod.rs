//! TLS for both sides (feature `tls`): rustls on *ring* through tokio-rustls, optionally
//! mutual (client certificates from a private CA).
//!
//! - [`TlsClient`] for [`ClientBuilder::tls`](crate::ClientBuilder::tls): the CAs to trust,
//!   the certificate to present, the name to check (default: the host of the address).
//! - [`TlsServer`] (or any `Arc<rustls::ServerConfig>`) for
//!   [`ServerBuilder::tls`](crate::ServerBuilder::tls).
//!
//! Every strategy works over TLS. A client's handshake runs inside its connect timeout; one
//! that fails (a certificate from an unknown CA or for another name, a server that wants a
//! client certificate, a server that does not speak TLS) fails the call with
//! [`RpcError::Tls`](crate::RpcError::Tls): it did not run, and trying again will not help
//! until the configuration changes. A plaintext client that meets a TLS server is answered
//! `ERR PROTOCOL_MISMATCH` ("this server requires TLS"), so it fails with
//! `ProtocolMismatch` at once instead of timing out. The server runs each handshake in the
//! connection's task, bounded by
//! [`tls_handshake_timeout`](crate::ServerBuilder::tls_handshake_timeout), and counts them
//! ([`ServerStats::tls_handshakes`](crate::ServerStats::tls_handshakes),
//! [`tls_handshake_failures`](crate::ServerStats::tls_handshake_failures)).
//!
//! *ring* builds with a C compiler alone (aws-lc-rs wants CMake), as in the rest of the
//! workspace. The rustls this crate uses is re-exported as [`rustls`].

mod client;
mod pem;
mod server;

use std::sync::Arc;

pub use client::TlsClient;
pub use rustls;
pub use server::TlsServer;

/// The ALPN protocol the PEM helpers offer.
pub const ALPN: &[u8] = b"longlink-rpc";

/// The crypto provider of every config built here (*ring*).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a TLS configuration could not be built from PEM text.
///
/// ```
/// use longlink_rpc::TlsClient;
/// let e = TlsClient::from_pem("not pem").unwrap_err();
/// assert_eq!(e.to_string(), "CA certificates: no certificate in the PEM text");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The text held no certificate (or no key), or something that is not PEM.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input: `CA certificates`, `certificate chain` or `private key`.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused what it was given (a key that does not match its certificate, an
    /// algorithm it does not support).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the CAs.
    #[error("client CA: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
    /// Not a DNS name or an IP address.
    #[error("{name:?} is not a valid TLS server name")]
    ServerName {
        /// The name given.
        name: String,
    },
}

/// What a rustls failure inside `e` means, for an error message; `None` when `e` is an
/// I/O error of the socket (the peer went away, a reset), not a TLS refusal.
pub(crate) fn describe(e: &std::io::Error) -> Option<String> {
    use rustls::{AlertDescription as Alert, CertificateError, Error};
    let tls = e.get_ref()?.downcast_ref::<Error>()?;
    let hint = match tls {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the server's certificate is not signed by a CA this client trusts)"
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => " (the server's certificate is for another name)",
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            " (the peer does not speak TLS: a plaintext server?)"
        }
        Error::AlertReceived(Alert::CertificateRequired) => {
            " (the server requires a client certificate)"
        }
        Error::AlertReceived(Alert::UnknownCA | Alert::BadCertificate | Alert::AccessDenied) => {
            " (the peer refused our certificate)"
        }
        // What rustls sends for a certificate whose signature does not verify: one from
        // another CA of the same name, for instance.
        Error::AlertReceived(Alert::DecryptError) => {
            " (the peer refused our certificate: a signature did not verify)"
        }
        _ => "",
    };
    Some(format!("{tls}{hint}"))
}
