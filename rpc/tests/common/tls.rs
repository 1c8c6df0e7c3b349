//! Certificates for the TLS tests, made in the test: a private CA and leaves it signs.

use longlink_rpc::{TlsClient, TlsServer};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A private CA (its key kept, to sign leaves).
pub struct Ca {
    /// Its certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), usable by a server and by a
    /// client.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A certificate that was valid through 2020 only.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 12, 31);
        })
    }

    fn leaf_with(&self, names: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        tweak(&mut params);
        params
            .distinguished_name
            .push(DnType::CommonName, "longlink-rpc test");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// One private CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate, all from it.
pub struct Pki {
    pub ca: Ca,
    pub server: Leaf,
    pub client: Leaf,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Ca::new("longlink-rpc test CA");
        let server = ca.leaf(&["127.0.0.1", "localhost"]);
        let client = ca.leaf(&["client.test"]);
        Pki { ca, server, client }
    }

    /// The server's TLS, no client certificate asked for.
    pub fn server_tls(&self) -> TlsServer {
        TlsServer::from_pem(&self.server.cert, &self.server.key).unwrap()
    }

    /// The server's TLS, requiring client certificates from this CA.
    pub fn mutual_server_tls(&self) -> TlsServer {
        self.server_tls().client_ca(&self.ca.pem).unwrap()
    }

    /// A client trusting this CA, presenting no certificate.
    pub fn client_tls(&self) -> TlsClient {
        TlsClient::from_pem(&self.ca.pem).unwrap()
    }

    /// A client trusting this CA and presenting its client certificate.
    pub fn mutual_client_tls(&self) -> TlsClient {
        self.client_tls()
            .identity(&self.client.cert, &self.client.key)
            .unwrap()
    }
}
