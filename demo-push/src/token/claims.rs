//! A JWT taken apart: its header (read before the signature is checked, to pick the key)
//! and its claims (trusted only after).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::TokenError;
use super::verifier::{TokenKind, Verified};

/// A compact JWS: `header "." payload "." signature`, each base64url without padding.
pub(super) struct Jwt<'a> {
    /// `header "." payload`: what the signature covers.
    pub(super) message: &'a str,
    payload: &'a str,
    pub(super) signature: &'a str,
    pub(super) header: Header,
}

/// The header fields this server reads. `jku`, `x5u` and `jwk` are ignored: keys come
/// from the configuration, never from a token.
#[derive(Deserialize)]
pub(super) struct Header {
    pub(super) alg: Option<String>,
    #[serde(default)]
    pub(super) kid: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

impl<'a> Jwt<'a> {
    /// `token` as a JWT if it has three parts and its first decodes to a JSON object; `None`
    /// for anything else (the HMAC token among it).
    pub(super) fn parse(token: &'a str) -> Option<Jwt<'a>> {
        let (message, signature) = token.rsplit_once('.')?;
        let (header, payload) = message.split_once('.')?;
        if payload.contains('.') {
            return None;
        }
        let json = B64.decode(header).ok()?;
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        // An object that is not a header of the expected types is a JWT still, and malformed.
        let header = serde_json::from_slice(&json).unwrap_or(Header {
            alg: None,
            kid: None,
            crit: None,
        });
        Some(Jwt {
            message,
            payload,
            signature,
            header,
        })
    }

    /// Refusals the header alone decides: no `alg`, `alg: none`, critical extensions.
    pub(super) fn check_header(&self) -> Result<&str, TokenError> {
        let Some(alg) = self.header.alg.as_deref() else {
            return Err(TokenError::MalformedJwt {
                reason: "header has no alg (a string)",
            });
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgNone);
        }
        if self.header.crit.is_some() {
            return Err(TokenError::MalformedJwt {
                reason: "header names critical extensions (crit), which this server does not implement",
            });
        }
        Ok(alg)
    }

    /// The claims, not yet trusted.
    pub(super) fn claims(&self) -> Result<Claims, TokenError> {
        let json = B64
            .decode(self.payload)
            .map_err(|_| TokenError::MalformedJwt {
                reason: "payload is not base64url without padding",
            })?;
        serde_json::from_slice(&json).map_err(|_| TokenError::MalformedJwt {
            reason: "claims are not a JSON object of the expected types \
                     (sub, iss, device: strings; exp, nbf: numbers; aud: a string or strings; apps: strings)",
        })
    }
}

/// The claims this server reads; others are ignored.
#[derive(Deserialize)]
pub(super) struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    nbf: Option<u64>,
    #[serde(default)]
    pub(super) iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    apps: Option<Vec<String>>,
    #[serde(default)]
    device: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, expected: &str) -> bool {
        match self {
            Audience::One(aud) => aud == expected,
            Audience::Many(auds) => auds.iter().any(|aud| aud == expected),
        }
    }
}

/// What the claims must say, beyond the signature.
pub(super) struct Expected<'a> {
    pub(super) uid: &'a str,
    pub(super) device: &'a str,
    pub(super) audience: Option<&'a str>,
    pub(super) issuer: Option<&'a str>,
    pub(super) now: u64,
    pub(super) leeway_secs: u64,
}

impl Claims {
    /// Checks the claims of a token whose signature has been verified.
    ///
    /// `exp` is required and the token is refused from `exp + leeway` on; `nbf`, when
    /// present, refuses it until `nbf - leeway`. `Verified::expires_at` is `exp` itself.
    pub(super) fn check(self, expected: Expected<'_>) -> Result<Verified, TokenError> {
        let sub = self.sub.ok_or(TokenError::MissingClaim { claim: "sub" })?;
        if sub != expected.uid {
            return Err(TokenError::WrongUser);
        }
        if self.device.as_deref().is_some_and(|d| d != expected.device) {
            return Err(TokenError::WrongDevice);
        }
        if let Some(audience) = expected.audience {
            let aud = self.aud.ok_or(TokenError::MissingClaim { claim: "aud" })?;
            if !aud.names(audience) {
                return Err(TokenError::WrongAudience {
                    expected: audience.to_owned(),
                });
            }
        }
        let exp = self.exp.ok_or(TokenError::MissingClaim { claim: "exp" })?;
        if expected.now >= exp.saturating_add(expected.leeway_secs) {
            return Err(TokenError::Expired { expired_at: exp });
        }
        if let Some(nbf) = self.nbf
            && expected.now.saturating_add(expected.leeway_secs) < nbf
        {
            return Err(TokenError::NotYetValid { not_before: nbf });
        }
        Ok(Verified {
            uid: sub,
            expires_at: exp,
            apps: self.apps,
            device: self.device,
            issuer: expected.issuer.map(str::to_owned),
            kind: TokenKind::Jwt,
        })
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, an integer or not; negative refused.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(secs) = number.as_u64() {
        return Ok(Some(secs));
    }
    match number.as_f64() {
        Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(Some(secs as u64)),
        _ => Err(serde::de::Error::custom("a date before 1970")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", B64.encode(header), B64.encode(payload))
    }

    #[test]
    fn only_three_parts_with_a_json_object_header_are_a_jwt() {
        assert!(Jwt::parse(&jwt(r#"{"alg":"HS256"}"#, "{}")).is_some());
        assert!(Jwt::parse(&jwt(r#" {"typ":"JWT"}"#, "{}")).is_some());
        assert!(Jwt::parse("dTE.1767225600.ZZYWXZD701wJPLbBB0WaufvUbLjTrSTAupgxkFFNyK0").is_none());
        assert!(Jwt::parse(&format!("{}.e30", B64.encode("{}"))).is_none());
        assert!(Jwt::parse(&format!("{}.e30.a.b", B64.encode("{}"))).is_none());
        assert!(Jwt::parse(&jwt("[1]", "{}")).is_none());
    }

    #[test]
    fn the_header_decides_none_missing_alg_and_crit() {
        let check = |h: &str| {
            Jwt::parse(&jwt(h, "{}"))
                .unwrap()
                .check_header()
                .map(str::to_owned)
        };
        assert_eq!(check(r#"{"alg":"ES256","kid":"k"}"#), Ok("ES256".into()));
        assert_eq!(check(r#"{"alg":"none"}"#), Err(TokenError::AlgNone));
        assert_eq!(check(r#"{"alg":"nOnE"}"#), Err(TokenError::AlgNone));
        assert!(matches!(
            check(r#"{"typ":"JWT"}"#),
            Err(TokenError::MalformedJwt { .. })
        ));
        assert!(matches!(
            check(r#"{"alg":7}"#),
            Err(TokenError::MalformedJwt { .. })
        ));
        assert!(matches!(
            check(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#),
            Err(TokenError::MalformedJwt { .. })
        ));
    }

    #[test]
    fn numeric_dates_may_be_fractional_but_not_negative() {
        let claims = |p: &str| Jwt::parse(&jwt(r#"{"alg":"HS256"}"#, p)).unwrap().claims();
        assert_eq!(claims(r#"{"exp":10.9}"#).ok().unwrap().exp, Some(10));
        assert!(claims(r#"{"exp":-1}"#).is_err());
        assert!(claims(r#"{"exp":"10"}"#).is_err());
        assert!(claims(r#"{"apps":"demo"}"#).is_err());
        assert!(claims(r#"{"sub":"a","sub":"b"}"#).is_err());
    }
}
