//! One accepted issuer: its algorithms, its audience and where its keys come from, checked
//! from its configuration.

use std::fmt;
use std::sync::Arc;

use super::config::{IssuerConfig, JwtAlgorithm, KeyFamily, Secret};
use super::error::{ConfigError, ConfigProblem, clip};
use super::jwks_cache::{JwksCache, JwksSettings};
use super::jwks_fetcher::jwks_uri;
use super::key_set::{Key, KeySet};
use super::{MIN_SECRET_BYTES, TokenError};

/// An issuer (or the system secret, which has no name).
pub(super) struct Issuer {
    /// `None`: the system secret, for tokens without `iss`.
    name: Option<Arc<str>>,
    audience: Option<String>,
    algorithms: Vec<JwtAlgorithm>,
    keys: Keys,
}

enum Keys {
    Secret(Arc<Key>),
    Pinned(KeySet),
    /// Boxed: the cache (its lock, gate and HTTP client) is several times a key set's size.
    Jwks(Box<JwksCache>),
}

impl Issuer {
    /// The system secret's issuer.
    pub(super) fn system(secret: &Secret, audience: Option<&str>) -> Result<Issuer, ConfigError> {
        check_secret(secret, None)?;
        Ok(Issuer {
            name: None,
            audience: audience.map(str::to_owned),
            algorithms: vec![JwtAlgorithm::Hs256],
            keys: Keys::Secret(Arc::new(Key::secret(secret))),
        })
    }

    /// A configured issuer; `jwks` sets up its cache if it has a `jwks_url`.
    pub(super) fn new(
        config: &IssuerConfig,
        max_keys: usize,
        jwks: impl FnOnce() -> JwksSettings,
    ) -> Result<Issuer, ConfigError> {
        let fail = |problem| ConfigError {
            issuer: Some(config.issuer.clone()),
            problem,
        };
        if config.issuer.is_empty() {
            return Err(fail(ConfigProblem::EmptyIssuer));
        }
        let sources = usize::from(config.jwks_url.is_some())
            + usize::from(!config.public_keys.is_empty())
            + usize::from(config.hs256_secret.is_some());
        if sources != 1 {
            return Err(fail(ConfigProblem::KeySources));
        }
        if config.algorithms.is_empty() {
            return Err(fail(ConfigProblem::NoAlgorithms));
        }
        // HS256 beside a public-key algorithm is the algorithm-confusion setup: refused.
        let secret_algs = config
            .algorithms
            .iter()
            .filter(|a| a.family() == KeyFamily::Secret)
            .count();
        let fits = match config.hs256_secret {
            Some(_) => secret_algs == config.algorithms.len(),
            None => secret_algs == 0,
        };
        if !fits {
            return Err(fail(ConfigProblem::AlgorithmsDoNotFitKeys));
        }
        let name: Arc<str> = config.issuer.as_str().into();
        let keys = if let Some(secret) = &config.hs256_secret {
            check_secret(secret, Some(&config.issuer))?;
            Keys::Secret(Arc::new(Key::secret(secret)))
        } else if let Some(url) = &config.jwks_url {
            let uri = jwks_uri(url).map_err(|reason| fail(ConfigProblem::BadJwksUrl { reason }))?;
            Keys::Jwks(Box::new(JwksCache::new(
                Arc::clone(&name),
                uri,
                config.algorithms.clone(),
                jwks(),
            )))
        } else {
            let count = config.public_keys.len();
            if count > max_keys {
                return Err(fail(ConfigProblem::TooManyKeys {
                    count,
                    max: max_keys,
                }));
            }
            let mut set = KeySet::default();
            for (index, pinned) in config.public_keys.iter().enumerate() {
                let key =
                    Key::from_pem(&pinned.pem).ok_or(fail(ConfigProblem::BadPem { index }))?;
                if !config.algorithms.iter().any(|&alg| key.fits(alg)) {
                    return Err(fail(ConfigProblem::KeyTypeNotInAlgorithms { index }));
                }
                if !set.insert(pinned.kid.as_deref(), key) {
                    return Err(fail(ConfigProblem::DuplicateKid { index }));
                }
            }
            Keys::Pinned(set)
        };
        Ok(Issuer {
            name: Some(name),
            audience: config.audience.clone(),
            algorithms: config.algorithms.clone(),
            keys,
        })
    }

    pub(super) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(super) fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The algorithm `alg` names, if this issuer accepts it. The list is the configured
    /// one: a token's header only picks among it.
    pub(super) fn accept(&self, alg: &str) -> Result<JwtAlgorithm, TokenError> {
        JwtAlgorithm::from_name(alg)
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or_else(|| TokenError::AlgorithmNotAllowed {
                alg: clip(alg),
                issuer: self.name.as_deref().map(clip),
                accepted: self.algorithms.clone(),
            })
    }

    /// The key for a token of this issuer with `kid` and `alg` (already accepted).
    pub(super) async fn key(
        &self,
        kid: Option<&str>,
        alg: JwtAlgorithm,
    ) -> Result<Arc<Key>, TokenError> {
        let key = match &self.keys {
            // A secret is the issuer's only key: a token's kid does not select it.
            Keys::Secret(key) => Arc::clone(key),
            Keys::Pinned(set) => set.get(kid).ok_or_else(|| TokenError::UnknownKey {
                issuer: self.name.as_deref().map_or_else(|| "(system)".into(), clip),
                kid: kid.map(clip),
                refreshed: false,
            })?,
            Keys::Jwks(cache) => cache.key(kid).await?,
        };
        if !key.fits(alg) {
            return Err(TokenError::KeyMismatch {
                alg,
                kid: kid.map(clip),
            });
        }
        debug_assert_eq!(key.family(), alg.family());
        Ok(key)
    }
}

fn check_secret(secret: &Secret, issuer: Option<&str>) -> Result<(), ConfigError> {
    let bytes = secret.as_bytes().len();
    if bytes < MIN_SECRET_BYTES {
        return Err(ConfigError {
            issuer: issuer.map(str::to_owned),
            problem: ConfigProblem::ShortSecret { bytes },
        });
    }
    Ok(())
}

impl fmt::Debug for Issuer {
    /// Names, algorithms and `kid`s; never a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Issuer");
        s.field("name", &self.name.as_deref().unwrap_or("(system, no iss)"))
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms);
        match &self.keys {
            Keys::Secret(_) => s.field("keys", &"hs256 secret <redacted>"),
            Keys::Pinned(set) => s.field("keys", set),
            Keys::Jwks(cache) => s.field("keys", cache),
        };
        s.finish()
    }
}
