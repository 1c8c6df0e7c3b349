//! Connection tokens: the HMAC token, and JWTs (HS256, RS256, ES256) from configured issuers.
//!
//! An HMAC token is `base64url(uid) "." expiry "." base64url(hmac(secret, base64url(uid) "."
//! expiry))`: the business backend that knows the secret issues them ([`Tokens`]). A JWT is
//! issued by any backend with a JWT library and checked against the `[tokens.jwt]`
//! configuration ([`TokensConfig`]): HS256 with the system secret or an issuer's own,
//! RS256/ES256 with public keys in the file or fetched from the issuer's JWKS.
//!
//! A room checks both through one call, [`Verifier::verify`], and gets back who the token
//! is for, until when, and which apps and device it allows ([`Verified`]):
//!
//! ```
//! use longlink_push::token::{TokenError, Tokens, TokensConfig, Verifier};
//!
//! let config: TokensConfig = toml::from_str(r#"
//!     [jwt]
//!     hs256_secret = "a system secret of at least 32 bytes"
//!     [[jwt.issuers]]
//!     issuer = "https://auth.example/"
//!     algorithms = ["RS256", "ES256"]
//!     jwks_url = "http://127.0.0.1:9/.well-known/jwks.json"
//! "#).unwrap();
//! let hmac = Tokens::new(b"token secret");
//! let verifier = Verifier::new(hmac.clone(), &config).unwrap();
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let token = hmac.issue_until("u1", 2_000_000_000);
//! let verified = verifier.verify_at(&token, "u1", "phone", 1_900_000_000).await.unwrap();
//! assert_eq!(verified.uid, "u1");
//! assert_eq!(
//!     verifier.verify_at(&token, "u1", "phone", 2_000_000_000).await,
//!     Err(TokenError::Expired { expired_at: 2_000_000_000 })
//! );
//! # });
//! ```
//!
//! Keys are always found by (issuer, `kid`); the accepted algorithms always come from the
//! configuration, never from a token's header; `alg: none`, `crit` extensions and keys
//! named inside a token (`jku`, `jwk`, `x5u`) are never used. The wire format and how a
//! backend issues JWTs: `docs/tokens.md`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

mod claims;
mod config;
mod error;
mod issuer;
mod jwks_cache;
mod jwks_fetcher;
mod key_set;
mod verifier;

pub use config::{IssuerConfig, JwtAlgorithm, JwtConfig, PublicKeyConfig, Secret, TokensConfig};
pub use error::{ConfigError, ConfigProblem, MAX_ECHO_CHARS, TokenError};
pub use verifier::{TokenKind, Verified, Verifier};

/// The longest JWT accepted (8 KiB); a longer token is refused before it is decoded.
/// Identity providers' tokens run to 1–2 KiB; an AUTH frame is bounded separately.
pub const MAX_JWT_BYTES: usize = 8 * 1024;

/// The largest `leeway_secs` a configuration may set (5 minutes): past that a leeway no
/// longer covers clock skew, it extends every token.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The shortest HS256 secret accepted (32 bytes, the hash's size: RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Issues and checks tokens.
///
/// ```
/// use std::time::Duration;
/// use longlink_push::token::{TokenError, Tokens};
///
/// let tokens = Tokens::new(b"secret");
/// let token = tokens.issue("u1", Duration::from_secs(60));
/// assert_eq!(tokens.verify(&token, "u1"), Ok(()));
/// assert_eq!(tokens.verify(&token, "u2"), Err(TokenError::WrongUser));
/// assert_eq!(Tokens::new(b"other").verify(&token, "u1"), Err(TokenError::BadSignature));
/// ```
#[derive(Clone)]
pub struct Tokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<secret>)")
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Tokens {
    /// Signs and checks with `secret`.
    pub fn new(secret: &[u8]) -> Tokens {
        Tokens {
            key: secret.to_vec(),
        }
    }

    fn sign(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `uid`, valid for `valid_for`.
    pub fn issue(&self, uid: &str, valid_for: Duration) -> String {
        self.issue_until(uid, unix_now() + valid_for.as_secs())
    }

    /// A token for `uid`, valid until `expires_at` (Unix seconds).
    pub fn issue_until(&self, uid: &str, expires_at: u64) -> String {
        let payload = format!("{}.{expires_at}", B64.encode(uid));
        let signature = B64.encode(self.sign(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// Checks that `token` was issued by us for `uid` and has not expired.
    pub fn verify(&self, token: &str, uid: &str) -> Result<(), TokenError> {
        self.verify_at(token, uid, unix_now())
    }

    /// [`verify`](Tokens::verify) at a given time (Unix seconds).
    pub fn verify_at(&self, token: &str, uid: &str, now: u64) -> Result<(), TokenError> {
        self.check_at(token, uid, now).map(|_| ())
    }

    /// [`verify_at`](Tokens::verify_at), giving the token's expiry.
    pub(crate) fn check_at(&self, token: &str, uid: &str, now: u64) -> Result<u64, TokenError> {
        let (payload, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (uid_b64, expiry) = payload.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        // Constant-time comparison of the signature first: nothing about a forged token
        // is trusted before it.
        self.sign(payload)
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let expires_at: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        let token_uid = B64.decode(uid_b64).map_err(|_| TokenError::Malformed)?;
        if token_uid != uid.as_bytes() {
            return Err(TokenError::WrongUser);
        }
        if now >= expires_at {
            return Err(TokenError::Expired {
                expired_at: expires_at,
            });
        }
        Ok(expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_malformed_and_tampered_tokens_are_refused() {
        let tokens = Tokens::new(b"k");
        let token = tokens.issue_until("a.b", 1_000);
        assert_eq!(tokens.verify_at(&token, "a.b", 999), Ok(()));
        assert_eq!(
            tokens.verify_at(&token, "a.b", 1_000),
            Err(TokenError::Expired { expired_at: 1_000 })
        );
        assert_eq!(
            tokens.verify_at("nonsense", "a.b", 0),
            Err(TokenError::Malformed)
        );
        // Changing the expiry breaks the signature.
        let forged = token.replacen(".1000.", ".9999999999.", 1);
        assert_eq!(
            tokens.verify_at(&forged, "a.b", 0),
            Err(TokenError::BadSignature)
        );
    }
}
