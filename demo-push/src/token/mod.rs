//! Connection tokens: HMAC-SHA256 over the user id and an expiry.
//!
//! A token is `base64url(uid) "." expiry "." base64url(hmac(secret, base64url(uid) "." expiry))`.
//! The business backend that knows the secret issues them; a room checks them on AUTH.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token at all.
    #[error("malformed token")]
    Malformed,
    /// Not signed with our secret (forged or for another system).
    #[error("bad token signature")]
    BadSignature,
    /// Valid, but expired.
    #[error("token expired at {expired_at}")]
    Expired {
        /// Unix seconds.
        expired_at: u64,
    },
    /// Valid, for another user.
    #[error("token is for another user")]
    WrongUser,
}

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

fn unix_now() -> u64 {
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
        Ok(())
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
