//! [`Verifier`]: the one entry point a room calls on AUTH (and REFRESH) for either kind of
//! token.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::claims::{Expected, Jwt};
use super::config::TokensConfig;
use super::error::{ConfigError, ConfigProblem, clip};
use super::issuer::Issuer;
use super::jwks_cache::JwksSettings;
use super::jwks_fetcher::{JwksFetcher, http_client};
use super::{MAX_JWT_BYTES, MAX_LEEWAY, TokenError, Tokens, unix_now};

/// Which kind of token a connection authenticated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// `base64url(uid).expiry.sig`, signed with `token_secret`.
    Hmac,
    /// A JWT (HS256, RS256 or ES256).
    Jwt,
}

/// What a verified token says about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The user: the uid the client claimed, which the token names.
    pub uid: String,
    /// When the token expires, Unix seconds (a JWT's `exp`, without the leeway). A room
    /// may close a connection whose token expired and was not refreshed within a grace.
    pub expires_at: u64,
    /// The apps the connection may subscribe (a JWT's `apps` claim); `None`: any app.
    pub apps: Option<Vec<String>>,
    /// The device the token is for (a JWT's `device` claim, equal to the claimed one);
    /// `None`: the token does not bind a device.
    pub device: Option<String>,
    /// The JWT's `iss` (`None` for an HMAC token and for the system secret's JWTs).
    pub issuer: Option<String>,
    /// Which kind of token it was.
    pub kind: TokenKind,
}

impl Verified {
    /// Whether the token lets the connection subscribe `app` (check it at AUTH and at each
    /// SUBSCRIBE).
    ///
    /// ```
    /// use longlink_push::token::Verified;
    ///
    /// let mut verified = Verified::from_hmac("u1", 2_000_000_000);
    /// assert!(verified.allows_app("demo")); // no apps claim: any app
    /// verified.apps = Some(vec!["demo".into()]);
    /// assert!(verified.allows_app("demo"));
    /// assert!(!verified.allows_app("shop"));
    /// ```
    pub fn allows_app(&self, app: &str) -> bool {
        self.apps
            .as_ref()
            .is_none_or(|apps| apps.iter().any(|a| a == app))
    }

    /// What an HMAC token for `uid` until `expires_at` proves (also a stand-in in tests).
    ///
    /// ```
    /// use longlink_push::token::{TokenKind, Verified};
    ///
    /// let verified = Verified::from_hmac("u1", 2_000_000_000);
    /// assert_eq!((verified.kind, verified.apps), (TokenKind::Hmac, None));
    /// ```
    pub fn from_hmac(uid: &str, expires_at: u64) -> Verified {
        Verified {
            uid: uid.to_owned(),
            expires_at,
            apps: None,
            device: None,
            issuer: None,
            kind: TokenKind::Hmac,
        }
    }
}

/// Checks the tokens clients present on AUTH: the HMAC token as before, and the JWTs a
/// `[tokens.jwt]` configuration accepts. Cheap to clone (one `Arc`); share one per process.
///
/// The two are told apart by shape: an HMAC token's middle part is digits; a JWT has three
/// parts and its first decodes to a JSON object. An HMAC token is checked as
/// [`Tokens::verify`] checks it, with no more work than telling the shapes apart (a scan
/// for dots and digits) and without awaiting: the future is ready on its first poll. So is
/// a JWT whose keys are in the configuration or already cached. Only a JWT whose issuer's
/// JWKS must be fetched waits, at most the fetch timeout.
///
/// ```
/// use longlink_push::token::{JwtConfig, Secret, TokenKind, Tokens, TokensConfig, Verifier};
///
/// let secret = "a system secret of at least 32 bytes";
/// let mut jwt = JwtConfig::default();
/// jwt.hs256_secret = Some(Secret::new(secret));
/// let hmac = Tokens::new(b"token secret");
/// let verifier = Verifier::new(hmac.clone(), &TokensConfig::with_jwt(jwt)).unwrap();
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let token = hmac.issue_until("u1", 2_000_000_000);
/// let verified = verifier.verify_at(&token, "u1", "phone", 1_900_000_000).await.unwrap();
/// assert_eq!((verified.kind, verified.expires_at), (TokenKind::Hmac, 2_000_000_000));
///
/// // What a business backend issues (here with jsonwebtoken; PyJWT or jose do the same).
/// let claims = serde_json::json!({ "sub": "u1", "exp": 2_000_000_000u64, "apps": ["demo"] });
/// let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
/// let jwt = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
/// let verified = verifier.verify_at(&jwt, "u1", "phone", 1_900_000_000).await.unwrap();
/// assert_eq!(verified.kind, TokenKind::Jwt);
/// assert!(verified.allows_app("demo") && !verified.allows_app("shop"));
/// assert!(verifier.verify_at(&jwt, "u2", "phone", 1_900_000_000).await.is_err());
/// # });
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    hmac: Tokens,
    jwt: Option<JwtIssuers>,
}

struct JwtIssuers {
    leeway_secs: u64,
    /// For HS256 tokens without `iss`.
    system: Option<Issuer>,
    /// By `iss`. Each issuer holds its own keys, so a key is found by (issuer, kid).
    issuers: HashMap<String, Issuer>,
}

impl Verifier {
    /// A verifier for HMAC tokens signed with `hmac`'s secret and for the JWTs `config`
    /// accepts. Checks the whole configuration (secrets' length, PEM keys, URLs,
    /// algorithms against key sources) and fetches nothing: a JWKS is fetched when a token
    /// first needs it. Needs no runtime; [`verify`](Verifier::verify) needs Tokio's.
    pub fn new(hmac: Tokens, config: &TokensConfig) -> Result<Verifier, ConfigError> {
        let jwt = match &config.jwt {
            None => None,
            Some(config) => Some(JwtIssuers::new(config)?),
        };
        Ok(Verifier {
            inner: Arc::new(Inner { hmac, jwt }),
        })
    }

    /// A verifier for HMAC tokens only (a JWT is refused with
    /// [`TokenError::JwtNotEnabled`]); the same as [`new`](Verifier::new) without
    /// `[tokens.jwt]`.
    ///
    /// ```
    /// use futures_util::FutureExt;
    /// use longlink_push::token::{Tokens, Verifier};
    ///
    /// let verifier = Verifier::hmac_only(Tokens::new(b"secret"));
    /// let token = verifier.hmac().issue_until("u1", 2_000_000_000);
    /// let checked = verifier.verify_at(&token, "u1", "phone", 1_900_000_000).now_or_never();
    /// assert_eq!(checked.expect("ready at once").unwrap().expires_at, 2_000_000_000);
    /// ```
    pub fn hmac_only(hmac: Tokens) -> Verifier {
        Verifier {
            inner: Arc::new(Inner { hmac, jwt: None }),
        }
    }

    /// The HMAC tokens it checks (to issue one).
    pub fn hmac(&self) -> &Tokens {
        &self.inner.hmac
    }

    /// Checks that `token` lets `uid` on `device` connect now; what it allows comes back
    /// in [`Verified`]. Each refusal says why ([`TokenError`]).
    pub async fn verify(
        &self,
        token: &str,
        uid: &str,
        device: &str,
    ) -> Result<Verified, TokenError> {
        self.verify_at(token, uid, device, unix_now()).await
    }

    /// [`verify`](Verifier::verify) at `now` (Unix seconds).
    pub async fn verify_at(
        &self,
        token: &str,
        uid: &str,
        device: &str,
        now: u64,
    ) -> Result<Verified, TokenError> {
        if !looks_like_hmac(token) {
            // Before anything is decoded.
            if token.len() > MAX_JWT_BYTES {
                return Err(TokenError::TooLong {
                    bytes: token.len(),
                    max: MAX_JWT_BYTES,
                });
            }
            if let Some(jwt) = Jwt::parse(token) {
                let issuers = self.inner.jwt.as_ref().ok_or(TokenError::JwtNotEnabled)?;
                return issuers.verify(&jwt, uid, device, now).await;
            }
        }
        // Everything that is not a JWT gets the HMAC check, refused as it always was.
        let expires_at = self.inner.hmac.check_at(token, uid, now)?;
        Ok(Verified::from_hmac(uid, expires_at))
    }
}

/// `base64url(uid) "." digits "." sig`: the HMAC token's shape, found without allocating.
fn looks_like_hmac(token: &str) -> bool {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(expiry), Some(_), None) => {
            !expiry.is_empty() && expiry.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

impl JwtIssuers {
    fn new(config: &super::JwtConfig) -> Result<JwtIssuers, ConfigError> {
        let fail = |problem| ConfigError {
            issuer: None,
            problem,
        };
        if config.leeway > MAX_LEEWAY {
            return Err(fail(ConfigProblem::LeewayTooLarge {
                secs: config.leeway.as_secs(),
            }));
        }
        for (key, zero) in [
            (
                "jwks_refresh_interval_secs",
                config.jwks_refresh_interval.is_zero(),
            ),
            (
                "jwks_max_age_secs",
                config.jwks_max_age < config.jwks_refresh_interval,
            ),
            (
                "jwks_fetch_timeout_secs",
                config.jwks_fetch_timeout.is_zero(),
            ),
            ("jwks_max_bytes", config.jwks_max_bytes == 0),
            ("max_keys_per_issuer", config.max_keys_per_issuer == 0),
        ] {
            if zero {
                return Err(fail(ConfigProblem::BadLimit { key }));
            }
        }
        let system = match &config.hs256_secret {
            Some(secret) => Some(Issuer::system(secret, config.audience.as_deref())?),
            None => None,
        };
        // One client for every issuer's JWKS, built only if one has a URL; a CA bundle
        // only if one is https:// (or jwks_ca names one, which is then checked).
        let https = config.issuers.iter().any(|i| {
            i.jwks_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
        });
        let client = match config.issuers.iter().any(|i| i.jwks_url.is_some()) {
            true => Some(
                http_client(config.jwks_ca.as_deref(), https).map_err(|reason| ConfigError {
                    issuer: None,
                    problem: ConfigProblem::JwksCa { reason },
                })?,
            ),
            false => None,
        };
        let mut issuers = HashMap::with_capacity(config.issuers.len());
        for issuer_config in &config.issuers {
            let settings = || JwksSettings {
                fetcher: JwksFetcher::new(
                    client.clone().expect("built when an issuer has a JWKS URL"),
                    config.jwks_fetch_timeout,
                    config.jwks_max_bytes,
                ),
                refresh_interval: config.jwks_refresh_interval,
                max_age: config.jwks_max_age,
                max_keys: config.max_keys_per_issuer,
            };
            let issuer = Issuer::new(issuer_config, config.max_keys_per_issuer, settings)?;
            if issuers
                .insert(issuer_config.issuer.clone(), issuer)
                .is_some()
            {
                return Err(ConfigError {
                    issuer: Some(issuer_config.issuer.clone()),
                    problem: ConfigProblem::DuplicateIssuer,
                });
            }
        }
        Ok(JwtIssuers {
            leeway_secs: config.leeway.as_secs(),
            system,
            issuers,
        })
    }

    /// Header → issuer (by the unverified `iss`) → algorithm (from the issuer's list) →
    /// key (by the issuer and `kid`) → signature → claims. Nothing the claims say counts
    /// before the signature is verified, except `iss`, which only picks whose keys to try.
    async fn verify(
        &self,
        jwt: &Jwt<'_>,
        uid: &str,
        device: &str,
        now: u64,
    ) -> Result<Verified, TokenError> {
        let alg = jwt.check_header()?;
        let claims = jwt.claims()?;
        let issuer = match claims.iss.as_deref() {
            Some(iss) => self
                .issuers
                .get(iss)
                .ok_or_else(|| TokenError::UnknownIssuer { issuer: clip(iss) })?,
            None => self
                .system
                .as_ref()
                .ok_or(TokenError::MissingClaim { claim: "iss" })?,
        };
        let alg = issuer.accept(alg)?;
        let key = issuer.key(jwt.header.kid.as_deref(), alg).await?;
        key.verify(jwt.message, jwt.signature, alg)?;
        claims.check(Expected {
            uid,
            device,
            audience: issuer.audience(),
            issuer: issuer.name(),
            now,
            leeway_secs: self.leeway_secs,
        })
    }
}

impl fmt::Debug for Verifier {
    /// Issuers, algorithms, audiences and `kid`s; no secret, no key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Verifier");
        s.field("hmac", &self.inner.hmac);
        match &self.inner.jwt {
            None => s.field("jwt", &"disabled"),
            Some(jwt) => {
                let mut issuers: Vec<&Issuer> = jwt.issuers.values().collect();
                issuers.sort_by_key(|i| i.name());
                s.field("leeway_secs", &jwt.leeway_secs)
                    .field("system", &jwt.system)
                    .field("issuers", &issuers)
            }
        };
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hmac_shape_is_found_by_its_digits() {
        assert!(looks_like_hmac("dTE.1767225600.ZZYW"));
        assert!(!looks_like_hmac("dTE..ZZYW"));
        assert!(!looks_like_hmac("eyJh.eyJz.c2ln"));
        assert!(!looks_like_hmac("dTE.17.ZZ.YW"));
        assert!(!looks_like_hmac("nonsense"));
    }
}
