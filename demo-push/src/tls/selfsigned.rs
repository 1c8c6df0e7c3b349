//! A development CA and a certificate it signs (`longlink-push all --tls-self-signed`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{TlsConfig, TlsError};

/// What [`self_signed`] wrote (or found from an earlier start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSigned {
    /// The CA certificate a client trusts (`tls/ca.pem`).
    pub ca: PathBuf,
    /// The `[tls]` section serving the certificate it signed.
    pub tls: TlsConfig,
    /// Written by this call (not found from an earlier start).
    pub generated: bool,
}

/// A CA and a certificate it signs for `localhost`, `127.0.0.1`, `::1` and `hosts`, in
/// `<data_dir>/tls/` (`ca.pem`, `cert.pem`, `key.pem`), made on the first call and kept
/// after. The CA's own key is not kept: nothing else can be signed with it, so trusting
/// `ca.pem` trusts this one certificate only. The certificate is valid for a year, for
/// servers and for clients: in a development cluster every process serves it and presents
/// it to the others (`[cluster.tls]`, mutual TLS). Files from before it was a client
/// certificate too are made again.
pub fn self_signed(data_dir: &Path, hosts: &[String]) -> Result<SelfSigned, TlsError> {
    let dir = data_dir.join("tls");
    let ca = dir.join("ca.pem");
    let tls = TlsConfig {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        reload_check: super::default_reload_check(),
    };
    if ca.exists() && tls.cert.exists() && tls.key.exists() && is_client_certificate(&ca, &tls) {
        return Ok(SelfSigned {
            ca,
            tls,
            generated: false,
        });
    }
    let failed = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "longlink-push development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(failed)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(failed)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    names.extend(hosts.iter().filter(|h| !h.is_empty()).cloned());
    names.sort();
    names.dedup();
    let mut params = CertificateParams::new(names).map_err(failed)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "longlink-push (development)");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(86_400);
    params.not_after = now + Duration::from_secs(365 * 86_400);
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.signed_by(&key, &issuer).map_err(failed)?;

    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Read {
        path: dir.clone(),
        source,
    })?;
    write(&ca, &ca_cert.pem())?;
    write(&tls.cert, &cert.pem())?;
    write(&tls.key, &key.serialize_pem())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&tls.key, std::fs::Permissions::from_mode(0o600));
    }
    Ok(SelfSigned {
        ca,
        tls,
        generated: true,
    })
}

/// Whether the certificate in `tls` chains to `ca` as a client certificate (false for
/// files made before it was one, and for anything unreadable).
fn is_client_certificate(ca: &Path, tls: &TlsConfig) -> bool {
    let (Ok(roots), Ok(chain)) = (super::load_chain(ca), super::load_chain(&tls.cert)) else {
        return false;
    };
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        if store.add(root).is_err() {
            return false;
        }
    }
    let Ok(verifier) = rustls::server::WebPkiClientVerifier::builder_with_provider(
        store.into(),
        super::provider(),
    )
    .build() else {
        return false;
    };
    verifier
        .verify_client_cert(&chain[0], &chain[1..], rustls_pki_types::UnixTime::now())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn writes_a_ca_and_a_certificate_once_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = self_signed(dir.path(), &["push.example".into()]).unwrap();
        assert!(first.generated);
        let pem = std::fs::read_to_string(&first.tls.cert).unwrap();
        let again = self_signed(dir.path(), &[]).unwrap();
        assert!(!again.generated);
        assert_eq!(std::fs::read_to_string(&again.tls.cert).unwrap(), pem);
        // The pair loads, and the certificate chains to the CA for the names given.
        let certs =
            crate::tls::Certificates::load(&first.tls, Default::default()).expect("a usable pair");
        let mut roots = rustls::RootCertStore::empty();
        for ca in crate::tls::load_chain(&first.ca).unwrap() {
            roots.add(ca).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            crate::tls::provider(),
        )
        .build()
        .unwrap();
        let chain = certs.chain();
        for name in ["localhost", "127.0.0.1", "push.example"] {
            let name = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(
                    &chain[0],
                    &[],
                    &name,
                    &[],
                    rustls_pki_types::UnixTime::now(),
                )
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        assert!(
            is_client_certificate(&first.ca, &first.tls),
            "usable as a client certificate"
        );
        let other = rustls_pki_types::ServerName::try_from("other.example").unwrap();
        assert!(
            verifier
                .verify_server_cert(
                    &chain[0],
                    &[],
                    &other,
                    &[],
                    rustls_pki_types::UnixTime::now()
                )
                .is_err()
        );
    }

    #[test]
    fn a_server_only_certificate_from_an_earlier_version_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = self_signed(dir.path(), &[]).unwrap();
        // What earlier versions wrote: a leaf for servers only, from another CA key.
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(&first.ca, ca_cert.pem()).unwrap();
        std::fs::write(&first.tls.cert, cert.pem()).unwrap();
        std::fs::write(&first.tls.key, key.serialize_pem()).unwrap();
        assert!(!is_client_certificate(&first.ca, &first.tls));
        let again = self_signed(dir.path(), &[]).unwrap();
        assert!(again.generated);
        assert!(is_client_certificate(&again.ca, &again.tls));
    }
}
