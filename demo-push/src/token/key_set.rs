//! One issuer's verification keys, by `kid`: from PEM in the configuration or from a JWKS.
//!
//! A set belongs to one issuer and is only ever reached through that issuer, so a key is
//! found by (issuer, kid), never by `kid` alone: a token from issuer B cannot select
//! issuer A's key of the same `kid` (the mistake behind CVE-2026-49998).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};

use super::TokenError;
use super::config::{JwtAlgorithm, KeyFamily, Secret};

/// A key and what it may verify.
pub(super) struct Key {
    family: KeyFamily,
    /// The `alg` its JWK declares, if any: then only that algorithm may use it.
    alg: Option<JwtAlgorithm>,
    decoding: DecodingKey,
}

impl Key {
    /// An HS256 secret.
    pub(super) fn secret(secret: &Secret) -> Key {
        Key {
            family: KeyFamily::Secret,
            alg: Some(JwtAlgorithm::Hs256),
            // Refused only when empty; the configuration refuses secrets under 32 bytes first.
            decoding: DecodingKey::from_secret(secret.as_bytes())
                .expect("a secret of 32 bytes or more"),
        }
    }

    /// An RSA or EC P-256 public key in PEM; `None` if it is neither (or does not parse).
    pub(super) fn from_pem(pem: &str) -> Option<Key> {
        let (family, decoding) = if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
            (KeyFamily::Rsa, key)
        } else {
            (
                KeyFamily::EcP256,
                DecodingKey::from_ec_pem(pem.as_bytes()).ok()?,
            )
        };
        Key::checked(family, None, decoding)
    }

    /// A signing key from a JWKS; `None` for what this server will not verify with: an
    /// encryption key, an algorithm other than RS256/ES256, a curve other than P-256, and
    /// a symmetric (`oct`) key — a secret published in a key set is no secret.
    pub(super) fn from_jwk(jwk: &Jwk) -> Option<Key> {
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(KeyAlgorithm::RS256) => Some(JwtAlgorithm::Rs256),
            Some(KeyAlgorithm::ES256) => Some(JwtAlgorithm::Es256),
            Some(_) => return None,
        };
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                KeyFamily::EcP256
            }
            _ => return None,
        };
        if alg.is_some_and(|alg| alg.family() != family) {
            return None;
        }
        Key::checked(family, alg, DecodingKey::from_jwk(jwk).ok()?)
    }

    /// The key, if the crypto backend can build a verifier from it: a bad modulus or a
    /// point off the curve is found here, not on the first login.
    fn checked(family: KeyFamily, alg: Option<JwtAlgorithm>, decoding: DecodingKey) -> Option<Key> {
        let probe = match family {
            KeyFamily::Rsa => JwtAlgorithm::Rs256,
            KeyFamily::EcP256 => JwtAlgorithm::Es256,
            KeyFamily::Secret => JwtAlgorithm::Hs256,
        };
        let provider = CryptoProvider::try_get_default()?;
        (provider.verifier_factory)(&probe.to_jsonwebtoken(), &decoding).ok()?;
        Some(Key {
            family,
            alg,
            decoding,
        })
    }

    /// What kind of key it is.
    pub(super) fn family(&self) -> KeyFamily {
        self.family
    }

    /// Whether `alg` may be verified with it.
    pub(super) fn fits(&self, alg: JwtAlgorithm) -> bool {
        alg.family() == self.family && self.alg.is_none_or(|own| own == alg)
    }

    /// Checks `signature` (the token's third part) over `message` (its first two parts and
    /// the dot between). The caller has checked [`fits`](Key::fits).
    pub(super) fn verify(
        &self,
        message: &str,
        signature: &str,
        alg: JwtAlgorithm,
    ) -> Result<(), TokenError> {
        match jsonwebtoken::crypto::verify(
            signature,
            message.as_bytes(),
            &self.decoding,
            alg.to_jsonwebtoken(),
        ) {
            Ok(true) => Ok(()),
            Ok(false) => Err(TokenError::BadSignature),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::Base64(_) => Err(TokenError::MalformedJwt {
                    reason: "signature is not base64url",
                }),
                _ => Err(TokenError::BadSignature),
            },
        }
    }
}

/// An issuer's keys by `kid`, and at most one without.
#[derive(Default)]
pub(super) struct KeySet {
    by_kid: HashMap<Box<str>, Arc<Key>>,
    unnamed: Option<Arc<Key>>,
}

impl KeySet {
    /// The key a token's `kid` selects: the one with that `kid`; for a token without one,
    /// the key without one, or the only key.
    pub(super) fn get(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None => self.unnamed.clone().or_else(|| {
                if self.by_kid.len() == 1 {
                    self.by_kid.values().next().cloned()
                } else {
                    None
                }
            }),
        }
    }

    /// Adds `key` under `kid`; `false` (and nothing added) if that `kid` is taken.
    pub(super) fn insert(&mut self, kid: Option<&str>, key: Key) -> bool {
        let key = Arc::new(key);
        match kid {
            Some(kid) if !self.by_kid.contains_key(kid) => {
                self.by_kid.insert(kid.into(), key);
                true
            }
            None if self.unnamed.is_none() => {
                self.unnamed = Some(key);
                true
            }
            _ => false,
        }
    }

    /// How many keys it holds.
    pub(super) fn len(&self) -> usize {
        self.by_kid.len() + usize::from(self.unnamed.is_some())
    }

    /// The keys of a JWKS document that this issuer can use (a family among `algorithms`),
    /// at most `max_keys` of them in document order, and how many were passed over.
    /// `Err` if it is not a JWKS at all. One key this server cannot read does not spoil
    /// the others.
    pub(super) fn from_jwks(
        body: &[u8],
        algorithms: &[JwtAlgorithm],
        max_keys: usize,
    ) -> Result<(KeySet, usize), &'static str> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_slice(body).map_err(|_| "not a JWKS (a JSON object with keys)")?;
        let mut set = KeySet::default();
        let mut skipped = 0;
        for value in document.keys {
            let jwk: Option<Jwk> = serde_json::from_value(value).ok();
            let usable = jwk.as_ref().and_then(|jwk| {
                let key = Key::from_jwk(jwk)?;
                algorithms
                    .iter()
                    .any(|&alg| key.fits(alg))
                    .then_some((jwk.common.key_id.as_deref(), key))
            });
            let kept = match usable {
                Some((kid, key)) if set.len() < max_keys => set.insert(kid, key),
                _ => false,
            };
            skipped += usize::from(!kept);
        }
        Ok((set, skipped))
    }
}

impl fmt::Debug for KeySet {
    /// The `kid`s, never the key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.by_kid.keys().map(|k| &**k).collect();
        kids.sort_unstable();
        if self.unnamed.is_some() {
            kids.push("(no kid)");
        }
        f.debug_set().entries(kids).finish()
    }
}
