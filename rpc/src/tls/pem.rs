//! Reading certificates, keys and CA sets from PEM text.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{TlsError, provider};

/// Every certificate in `pem` (at least one); `what` names it in errors.
pub(super) fn certificates(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no certificate in the PEM text".into(),
        });
    }
    Ok(certs)
}

/// The trust anchors in `pem` (a private CA, or several).
pub(super) fn roots(pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(pem, "CA certificates")? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            what: "CA certificates",
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// A certificate chain (the leaf first) and its private key (PKCS#8, PKCS#1 or SEC1),
/// checked to match.
pub(super) fn certified_key(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(cert_chain_pem, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        what: "private key",
        reason: e.to_string(),
    })?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider())?))
}
