//! Why a token was refused ([`TokenError`]) and why a configuration was ([`ConfigError`]).
//!
//! Every message is lowercase, says what to fix, and holds neither the token nor a secret:
//! what it repeats from a token (an issuer, a `kid`, an `alg`) is clipped to
//! [`MAX_ECHO_CHARS`] and printed escaped, so a hostile token cannot fill a log line or
//! forge one.

use std::fmt;

use super::config::JwtAlgorithm;

/// The most characters of a token's own text (issuer, `kid`, `alg`) an error repeats.
pub const MAX_ECHO_CHARS: usize = 64;

/// Why a token was refused.
///
/// The first four are the HMAC token's refusals, unchanged; the rest come from JWTs.
/// [`is_retryable`](TokenError::is_retryable) tells whether the same token may pass later.
///
/// ```
/// use longlink_push::token::TokenError;
///
/// assert_eq!(TokenError::WrongUser.to_string(), "token is for another user");
/// assert!(TokenError::KeysUnavailable { issuer: "https://auth.example".into() }.is_retryable());
/// assert!(!TokenError::Expired { expired_at: 1 }.is_retryable());
/// ```
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
    /// Shaped like a JWT, but a part of it does not decode.
    #[error("malformed jwt: {reason}")]
    MalformedJwt {
        /// Which part, and what is wrong with it.
        reason: &'static str,
    },
    /// Longer than any token this server issues or accepts; refused before it is decoded.
    #[error("token of {bytes} bytes exceeds limit {max}")]
    TooLong {
        /// The token's length.
        bytes: usize,
        /// [`MAX_JWT_BYTES`](super::MAX_JWT_BYTES).
        max: usize,
    },
    /// A JWT reached a server that accepts only HMAC tokens.
    #[error("jwt tokens are not accepted here: the server has no [tokens.jwt] configuration")]
    JwtNotEnabled,
    /// An unsigned JWT (`alg: none`): never accepted.
    #[error("unsigned jwt (alg none) refused: sign it with an algorithm configured for its issuer")]
    AlgNone,
    /// The JWT's `alg` is not among those configured for its issuer (this is how an HS256
    /// token made with an RS256 issuer's public key as its secret is refused).
    #[error(
        "jwt alg {alg:?} is not accepted for {}: sign with {}",
        issuer_name(issuer.as_deref()),
        algorithm_list(accepted)
    )]
    AlgorithmNotAllowed {
        /// The token's `alg`, clipped.
        alg: String,
        /// The token's issuer (`None`: a token for the system secret, without `iss`).
        issuer: Option<String>,
        /// The algorithms configured for that issuer.
        accepted: Vec<JwtAlgorithm>,
    },
    /// The key the JWT's `kid` names is of another type than its `alg` (an ES256 token
    /// naming an RSA key), or declares another `alg` in its JWK.
    #[error("jwt alg {alg} does not fit the key with kid {}", kid_name(kid.as_deref()))]
    KeyMismatch {
        /// The token's `alg`.
        alg: JwtAlgorithm,
        /// The token's `kid`, clipped.
        kid: Option<String>,
    },
    /// The JWT's `iss` is not configured.
    #[error("jwt issuer {issuer:?} is not configured: add it to [[tokens.jwt.issuers]]")]
    UnknownIssuer {
        /// The token's `iss`, clipped.
        issuer: String,
    },
    /// A claim this server requires is absent (`exp`, `sub`; `iss` when no system
    /// `hs256_secret` is configured; `aud` when the issuer has an `audience`).
    #[error("jwt lacks the required claim {claim:?}")]
    MissingClaim {
        /// The claim's name.
        claim: &'static str,
    },
    /// `nbf` is still ahead (beyond the leeway).
    #[error("jwt not valid before {not_before} (nbf): wait, or check the issuer's clock")]
    NotYetValid {
        /// Unix seconds.
        not_before: u64,
    },
    /// The JWT's `device` claim names another device than the one the client claims.
    #[error("token is for another device")]
    WrongDevice,
    /// The issuer has an `audience` and the JWT's `aud` does not name it.
    #[error("jwt audience does not include {expected:?}")]
    WrongAudience {
        /// The configured audience.
        expected: String,
    },
    /// No key of the issuer has the JWT's `kid`: for a JWKS issuer, even after its key set
    /// was fetched again (at most once per refresh interval).
    #[error(
        "issuer {issuer:?} has no key with kid {}{}",
        kid_name(kid.as_deref()),
        if *refreshed { " (after refreshing its key set)" } else { "" }
    )]
    UnknownKey {
        /// The issuer (`"(system)"` for the system secret, which has no `kid`s).
        issuer: String,
        /// The token's `kid`, clipped.
        kid: Option<String>,
        /// Whether the issuer's JWKS was fetched for it (or within the refresh interval).
        refreshed: bool,
    },
    /// The issuer's JWKS could not be fetched (down, too slow, too large, not JSON) and no
    /// cached key fits.
    #[error("keys of issuer {issuer:?} could not be fetched: try again later")]
    KeysUnavailable {
        /// The issuer.
        issuer: String,
    },
}

impl TokenError {
    /// Whether the same token may be accepted later without change: its issuer's keys
    /// could not be fetched, its `kid` may be a key published after the last refresh, or
    /// its `nbf` is just ahead. A client may try again after a pause; for every other
    /// refusal it needs a new token.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TokenError::KeysUnavailable { .. }
                | TokenError::UnknownKey {
                    refreshed: true,
                    ..
                }
                | TokenError::NotYetValid { .. }
        )
    }
}

/// The first [`MAX_ECHO_CHARS`] characters of a token's own text, for an error.
pub(super) fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn issuer_name(issuer: Option<&str>) -> String {
    match issuer {
        Some(issuer) => format!("issuer {issuer:?}"),
        None => "the system secret (a jwt without iss)".to_owned(),
    }
}

fn kid_name(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("{kid:?}"),
        None => "(none)".to_owned(),
    }
}

fn algorithm_list(algorithms: &[JwtAlgorithm]) -> String {
    let names: Vec<&str> = algorithms.iter().map(|a| a.as_str()).collect();
    names.join(" or ")
}

/// Why a `[tokens.jwt]` configuration was refused by [`Verifier::new`](super::Verifier::new).
///
/// Found when the verifier is built, so a mistake stops the start instead of refusing
/// every login. Messages never hold a secret.
///
/// ```
/// use longlink_push::token::{ConfigError, IssuerConfig, JwtAlgorithm, JwtConfig, Tokens, TokensConfig, Verifier};
///
/// let mut jwt = JwtConfig::default();
/// jwt.issuers.push(IssuerConfig::new("https://auth.example", [JwtAlgorithm::Rs256]));
/// let err = Verifier::new(Tokens::new(b"k"), &TokensConfig::with_jwt(jwt)).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "[tokens.jwt] issuer \"https://auth.example\": give it one of jwks_url, public_keys or hs256_secret"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[tokens.jwt] {}{problem}", match issuer { Some(i) => format!("issuer {i:?}: "), None => String::new() })]
pub struct ConfigError {
    /// The issuer the problem is in (`None`: the `[tokens.jwt]` table itself).
    pub issuer: Option<String>,
    /// What is wrong.
    pub problem: ConfigProblem,
}

/// What is wrong in a `[tokens.jwt]` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// An `hs256_secret` shorter than 32 bytes (RFC 7518 §3.2: at least the hash's size).
    ShortSecret {
        /// Its length.
        bytes: usize,
    },
    /// `leeway_secs` above [`MAX_LEEWAY`](super::MAX_LEEWAY).
    LeewayTooLarge {
        /// The configured leeway, seconds.
        secs: u64,
    },
    /// A limit that must be positive is zero, or `jwks_max_age` is below the refresh interval.
    BadLimit {
        /// Which key.
        key: &'static str,
    },
    /// An issuer with an empty name.
    EmptyIssuer,
    /// Two issuers with the same name.
    DuplicateIssuer,
    /// No key source, or more than one.
    KeySources,
    /// No `algorithms`.
    NoAlgorithms,
    /// HS256 together with RS256/ES256, or an algorithm its key source cannot verify.
    AlgorithmsDoNotFitKeys,
    /// A `public_keys` entry that is not a PEM RSA or EC P-256 public key.
    BadPem {
        /// Its index in `public_keys`.
        index: usize,
    },
    /// A `public_keys` entry of a type none of the issuer's `algorithms` uses.
    KeyTypeNotInAlgorithms {
        /// Its index in `public_keys`.
        index: usize,
    },
    /// Two `public_keys` with the same `kid`, or two without one.
    DuplicateKid {
        /// Its index in `public_keys`.
        index: usize,
    },
    /// More `public_keys` than `max_keys_per_issuer`.
    TooManyKeys {
        /// How many are configured.
        count: usize,
        /// `max_keys_per_issuer`.
        max: usize,
    },
    /// A `jwks_url` that is not an absolute `http://` or `https://` URL.
    BadJwksUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA certificates for `https://` JWKS URLs could not be read.
    JwksCa {
        /// What failed, naming the file.
        reason: String,
    },
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigProblem::ShortSecret { bytes } => write!(
                f,
                "hs256_secret of {bytes} bytes is too short: use at least 32 (e.g. 64 hex characters)"
            ),
            ConfigProblem::LeewayTooLarge { secs } => write!(
                f,
                "leeway_secs = {secs} exceeds limit {}: fix the clocks instead",
                super::MAX_LEEWAY.as_secs()
            ),
            ConfigProblem::BadLimit { key } => write!(
                f,
                "{key} must be positive (and jwks_max_age_secs at least jwks_refresh_interval_secs)"
            ),
            ConfigProblem::EmptyIssuer => f.write_str("issuer must not be empty"),
            ConfigProblem::DuplicateIssuer => f.write_str("configured twice: merge the entries"),
            ConfigProblem::KeySources => {
                f.write_str("give it one of jwks_url, public_keys or hs256_secret")
            }
            ConfigProblem::NoAlgorithms => f.write_str(
                "list its algorithms (e.g. algorithms = [\"RS256\"]): they are never taken from a token",
            ),
            ConfigProblem::AlgorithmsDoNotFitKeys => f.write_str(
                "HS256 goes with hs256_secret alone, RS256 and ES256 with jwks_url or public_keys",
            ),
            ConfigProblem::BadPem { index } => write!(
                f,
                "public_keys[{index}] is not a PEM RSA or EC P-256 public key (-----BEGIN PUBLIC KEY-----)"
            ),
            ConfigProblem::KeyTypeNotInAlgorithms { index } => write!(
                f,
                "public_keys[{index}] is of a type none of its algorithms uses"
            ),
            ConfigProblem::DuplicateKid { index } => write!(
                f,
                "public_keys[{index}] repeats a kid (at most one key may go without one)"
            ),
            ConfigProblem::TooManyKeys { count, max } => write!(
                f,
                "{count} public_keys exceed max_keys_per_issuer = {max}"
            ),
            ConfigProblem::BadJwksUrl { reason } => write!(f, "jwks_url {reason}"),
            ConfigProblem::JwksCa { reason } => write!(f, "jwks_ca: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(clip("k1"), "k1");
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(clipped.ends_with('…'));
    }

    #[test]
    fn hmac_refusals_keep_their_messages() {
        assert_eq!(TokenError::Malformed.to_string(), "malformed token");
        assert_eq!(TokenError::BadSignature.to_string(), "bad token signature");
        assert_eq!(
            TokenError::Expired { expired_at: 5 }.to_string(),
            "token expired at 5"
        );
    }
}
