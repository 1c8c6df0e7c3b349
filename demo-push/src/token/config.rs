//! `[tokens]`: which JWTs a room accepts, and from whom.
//!
//! ```toml
//! [tokens.jwt]
//! leeway_secs = 30                    # clock skew allowed on exp and nbf
//! # hs256_secret = "…"                # the system secret: HS256 JWTs without an iss claim
//! # audience = "longlink"             # then required in those tokens' aud
//! jwks_refresh_interval_secs = 30     # at most one JWKS fetch per issuer this often
//! jwks_max_age_secs = 3600            # a key set older than this is fetched again
//! jwks_fetch_timeout_secs = 5
//! jwks_max_bytes = 65536
//! max_keys_per_issuer = 16
//!
//! [[tokens.jwt.issuers]]              # RS256/ES256 keys from the issuer's JWKS
//! issuer = "https://auth.example.com/"
//! audience = "longlink"
//! algorithms = ["RS256", "ES256"]
//! jwks_url = "http://auth.internal/.well-known/jwks.json"
//!
//! [[tokens.jwt.issuers]]              # public keys in the file
//! issuer = "shop-backend"
//! algorithms = ["ES256"]
//! public_keys = [{ kid = "2026-01", pem = """
//! -----BEGIN PUBLIC KEY-----
//! MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOHz2tohgZIOaoepO6G3+9w4CRRfA
//! rHHYsWxiZSQXDUL/J2Xi9oLYJdxp5VsUxVDH8t0214dTnT/rQvDSMx7kgQ==
//! -----END PUBLIC KEY-----
//! """ }]
//!
//! [[tokens.jwt.issuers]]              # an app's backend with its own HS256 secret
//! issuer = "billing"
//! algorithms = ["HS256"]
//! hs256_secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
//! ```
//!
//! Without `[tokens.jwt]` only the HMAC tokens are accepted, as before. The algorithms an
//! issuer accepts are always the configured ones, never the token's `alg`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[tokens]` table.
///
/// ```
/// use longlink_push::token::TokensConfig;
///
/// let config: TokensConfig = toml::from_str(r#"
///     [jwt]
///     issuers = [{ issuer = "https://auth.example/", jwks_url = "http://127.0.0.1:9/jwks", algorithms = ["RS256"] }]
/// "#).unwrap();
/// let jwt = config.jwt.unwrap();
/// assert_eq!(jwt.leeway.as_secs(), 30);
/// assert_eq!(jwt.issuers[0].issuer, "https://auth.example/");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TokensConfig {
    /// JWT verification (`None`: HMAC tokens only).
    pub jwt: Option<JwtConfig>,
}

impl TokensConfig {
    /// HMAC tokens and the JWTs `jwt` describes.
    pub fn with_jwt(jwt: JwtConfig) -> TokensConfig {
        TokensConfig { jwt: Some(jwt) }
    }
}

/// The `[tokens.jwt]` table. Checked by [`Verifier::new`](super::Verifier::new).
///
/// ```
/// use std::time::Duration;
/// use longlink_push::token::{IssuerConfig, JwtAlgorithm, JwtConfig, Secret};
///
/// let mut jwt = JwtConfig::default();
/// jwt.hs256_secret = Some(Secret::new("a system secret of at least 32 bytes"));
/// jwt.leeway = Duration::from_secs(10);
/// jwt.issuers.push(IssuerConfig::jwks(
///     "https://auth.example/",
///     [JwtAlgorithm::Rs256],
///     "http://127.0.0.1:9/jwks",
/// ));
/// assert!(!format!("{jwt:?}").contains("a system secret"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct JwtConfig {
    /// Clock skew allowed on `exp` and `nbf` (default 30 s; at most
    /// [`MAX_LEEWAY`](super::MAX_LEEWAY)).
    #[serde(rename = "leeway_secs", with = "crate::serde_duration::secs")]
    pub leeway: Duration,
    /// The system secret: verifies HS256 JWTs that carry no `iss` (at least 32 bytes; the
    /// key is the string's bytes, as for `token_secret`).
    pub hs256_secret: Option<Secret>,
    /// When set, the system secret's tokens must name it in `aud`.
    pub audience: Option<String>,
    /// The issuers whose tokens are accepted, each by its `iss`.
    pub issuers: Vec<IssuerConfig>,
    /// Least time between two fetches of one issuer's JWKS, for an unknown `kid` or an old
    /// key set (default 30 s): a flood of made-up `kid`s costs the issuer one fetch per
    /// interval.
    #[serde(
        rename = "jwks_refresh_interval_secs",
        with = "crate::serde_duration::secs"
    )]
    pub jwks_refresh_interval: Duration,
    /// A key set older than this is fetched again on its next use, so a key removed from
    /// the JWKS stops verifying (default 1 h).
    #[serde(rename = "jwks_max_age_secs", with = "crate::serde_duration::secs")]
    pub jwks_max_age: Duration,
    /// How long one JWKS fetch may take, connect to last byte (default 5 s).
    #[serde(
        rename = "jwks_fetch_timeout_secs",
        with = "crate::serde_duration::secs"
    )]
    pub jwks_fetch_timeout: Duration,
    /// Largest JWKS body read (default 64 KiB); a larger one is refused unread.
    pub jwks_max_bytes: usize,
    /// Most keys kept per issuer (default 16); a JWKS's keys past it are ignored.
    pub max_keys_per_issuer: usize,
    /// The CA certificates (PEM) trusted for `https://` JWKS URLs; default: the system's
    /// bundle (`SSL_CERT_FILE`, or `/etc/ssl/certs/ca-certificates.crt` and the other
    /// usual places).
    pub jwks_ca: Option<std::path::PathBuf>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            leeway: Duration::from_secs(30),
            hs256_secret: None,
            audience: None,
            issuers: Vec::new(),
            jwks_refresh_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(3600),
            jwks_fetch_timeout: Duration::from_secs(5),
            jwks_max_bytes: 64 * 1024,
            max_keys_per_issuer: 16,
            jwks_ca: None,
        }
    }
}

/// One `[[tokens.jwt.issuers]]` entry: an `iss`, its algorithms, and exactly one key source
/// (`jwks_url`, `public_keys` or `hs256_secret`).
///
/// ```
/// use longlink_push::token::{IssuerConfig, JwtAlgorithm, PublicKeyConfig};
///
/// let pem = "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n";
/// let issuer = IssuerConfig::public_keys(
///     "shop-backend",
///     [JwtAlgorithm::Es256],
///     [PublicKeyConfig::new(Some("2026-01"), pem)],
/// );
/// assert_eq!(issuer.public_keys[0].kid.as_deref(), Some("2026-01"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IssuerConfig {
    /// The `iss` claim its tokens carry, compared exactly.
    pub issuer: String,
    /// The algorithms accepted from it: HS256 alone (with `hs256_secret`), or RS256 and/or
    /// ES256 (with keys).
    pub algorithms: Vec<JwtAlgorithm>,
    /// When set, its tokens must name it in `aud`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Its JWKS (`https://`, or `http://` on a trusted network), fetched when first needed.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Its public keys, in PEM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<PublicKeyConfig>,
    /// Its HS256 secret (at least 32 bytes; the key is the string's bytes).
    #[serde(default)]
    pub hs256_secret: Option<Secret>,
}

impl IssuerConfig {
    /// An issuer with no key source yet: set one of the fields, or use
    /// [`jwks`](IssuerConfig::jwks), [`public_keys`](IssuerConfig::public_keys) or
    /// [`hs256`](IssuerConfig::hs256).
    pub fn new(
        issuer: impl Into<String>,
        algorithms: impl IntoIterator<Item = JwtAlgorithm>,
    ) -> IssuerConfig {
        IssuerConfig {
            issuer: issuer.into(),
            algorithms: algorithms.into_iter().collect(),
            audience: None,
            jwks_url: None,
            public_keys: Vec::new(),
            hs256_secret: None,
        }
    }

    /// An issuer whose keys are fetched from `jwks_url`.
    pub fn jwks(
        issuer: impl Into<String>,
        algorithms: impl IntoIterator<Item = JwtAlgorithm>,
        jwks_url: impl Into<String>,
    ) -> IssuerConfig {
        IssuerConfig {
            jwks_url: Some(jwks_url.into()),
            ..IssuerConfig::new(issuer, algorithms)
        }
    }

    /// An issuer with public keys held in memory (tests, or keys pinned in the file).
    pub fn public_keys(
        issuer: impl Into<String>,
        algorithms: impl IntoIterator<Item = JwtAlgorithm>,
        keys: impl IntoIterator<Item = PublicKeyConfig>,
    ) -> IssuerConfig {
        IssuerConfig {
            public_keys: keys.into_iter().collect(),
            ..IssuerConfig::new(issuer, algorithms)
        }
    }

    /// An issuer signing HS256 with its own secret.
    pub fn hs256(issuer: impl Into<String>, secret: Secret) -> IssuerConfig {
        IssuerConfig {
            hs256_secret: Some(secret),
            ..IssuerConfig::new(issuer, [JwtAlgorithm::Hs256])
        }
    }
}

/// A public key in PEM (`-----BEGIN PUBLIC KEY-----`, RSA or EC P-256; `BEGIN RSA PUBLIC
/// KEY` too), with the `kid` tokens name it by.
///
/// ```
/// use longlink_push::token::PublicKeyConfig;
///
/// let key = PublicKeyConfig::new(None, "-----BEGIN PUBLIC KEY-----\n…");
/// assert_eq!(key.kid, None); // tokens without a kid use it
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PublicKeyConfig {
    /// The `kid` that selects it (`None`: the key for tokens without one).
    #[serde(default)]
    pub kid: Option<String>,
    /// The key.
    pub pem: String,
}

impl PublicKeyConfig {
    /// The key `pem`, selected by `kid`.
    pub fn new(kid: Option<&str>, pem: impl Into<String>) -> PublicKeyConfig {
        PublicKeyConfig {
            kid: kid.map(str::to_owned),
            pem: pem.into(),
        }
    }
}

/// A JWT signature algorithm this server verifies. Written as in a JWT header.
///
/// ```
/// use longlink_push::token::JwtAlgorithm;
///
/// assert_eq!(JwtAlgorithm::from_name("ES256"), Some(JwtAlgorithm::Es256));
/// assert_eq!(JwtAlgorithm::from_name("none"), None);
/// assert_eq!(JwtAlgorithm::Rs256.to_string(), "RS256");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    #[serde(rename = "HS256")]
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
}

impl JwtAlgorithm {
    /// Its name in a JWT header.
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        }
    }

    /// The algorithm a header's `alg` names, if it is one of these.
    pub fn from_name(name: &str) -> Option<JwtAlgorithm> {
        match name {
            "HS256" => Some(JwtAlgorithm::Hs256),
            "RS256" => Some(JwtAlgorithm::Rs256),
            "ES256" => Some(JwtAlgorithm::Es256),
            _ => None,
        }
    }

    pub(super) fn family(self) -> KeyFamily {
        match self {
            JwtAlgorithm::Hs256 => KeyFamily::Secret,
            JwtAlgorithm::Rs256 => KeyFamily::Rsa,
            JwtAlgorithm::Es256 => KeyFamily::EcP256,
        }
    }

    pub(super) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            JwtAlgorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
            JwtAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            JwtAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of key an algorithm verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyFamily {
    Secret,
    Rsa,
    EcP256,
}

/// A secret from the configuration: its `Debug` shows `Secret(<redacted>)`, so a printed
/// configuration or verifier never holds it. Serialized as the plain string.
///
/// ```
/// use longlink_push::token::Secret;
///
/// let secret = Secret::new("correct horse battery staple, and then some");
/// assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The key bytes (the string's UTF-8 bytes).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The secret itself, for the one place that must use it (signing, comparing a hash);
    /// never for a log line or an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in bytes (for checking a minimum without exposing it).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Secret {
        Secret::new(secret)
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Secret {
        Secret(secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example at the top of this file is a valid `[tokens]` table.
    #[test]
    fn the_documented_example_parses_and_round_trips() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| {
                format!(
                    "{}\n",
                    l.strip_prefix("//!").unwrap().trim_start_matches(' ')
                )
            })
            .collect();
        #[derive(Deserialize)]
        struct File {
            tokens: TokensConfig,
        }
        let file: File = toml::from_str(&example).unwrap();
        let jwt = file.tokens.jwt.clone().unwrap();
        assert_eq!(jwt.issuers.len(), 3);
        assert_eq!(
            jwt.issuers[1].public_keys[0].kid.as_deref(),
            Some("2026-01")
        );
        assert!(
            jwt.issuers[1].public_keys[0]
                .pem
                .contains("BEGIN PUBLIC KEY")
        );
        assert_eq!(jwt.jwks_refresh_interval, Duration::from_secs(30));

        let again: TokensConfig = toml::from_str(&toml::to_string(&file.tokens).unwrap()).unwrap();
        assert_eq!(again, file.tokens);
    }

    #[test]
    fn unknown_keys_and_algorithms_are_refused() {
        let typo = toml::from_str::<JwtConfig>("leeway = 30");
        assert!(typo.unwrap_err().to_string().contains("unknown field"));
        let none = toml::from_str::<IssuerConfig>(
            r#"issuer = "a"
            algorithms = ["none"]
            jwks_url = "http://x/""#,
        );
        assert!(none.is_err());
    }
}
