//! One issuer's JWKS: cached, fetched again for an unknown `kid` or when old, at most once
//! per refresh interval, with concurrent lookups sharing one fetch.
//!
//! Lookups read the cached [`KeySet`] under a short read lock and never wait for the
//! network while it holds a key they can use. Only a lookup for a `kid` the set lacks
//! waits on the fetch gate (a Tokio mutex held by the one task fetching), then reads
//! what that fetch brought; every fetch is bounded by the fetcher's timeout, so the wait
//! is too.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Uri;

use super::TokenError;
use super::config::JwtAlgorithm;
use super::jwks_fetcher::{FetchError, JwksFetcher};
use super::key_set::{Key, KeySet};

/// The cache of one issuer's JWKS.
pub(super) struct JwksCache {
    issuer: Arc<str>,
    url: Uri,
    fetcher: JwksFetcher,
    algorithms: Vec<JwtAlgorithm>,
    refresh_interval: Duration,
    max_age: Duration,
    max_keys: usize,
    state: parking_lot::RwLock<State>,
    /// Held by the task that fetches, for the fetch; a lookup for an unknown `kid` waits
    /// here, so concurrent ones share one fetch. A fetch dropped half-way releases it and
    /// leaves `state` as it was, so the next waiter may fetch.
    fetch_gate: tokio::sync::Mutex<()>,
}

struct State {
    keys: Arc<KeySet>,
    /// When the last fetch ended, well or not: the rate limit counts from here.
    fetched_at: Option<Instant>,
    /// Whether that fetch failed (the keys are then the ones before it).
    failed: bool,
}

/// How [`JwksCache`] is set up.
pub(super) struct JwksSettings {
    pub(super) fetcher: JwksFetcher,
    pub(super) refresh_interval: Duration,
    pub(super) max_age: Duration,
    pub(super) max_keys: usize,
}

impl JwksCache {
    pub(super) fn new(
        issuer: Arc<str>,
        url: Uri,
        algorithms: Vec<JwtAlgorithm>,
        settings: JwksSettings,
    ) -> JwksCache {
        JwksCache {
            issuer,
            url,
            fetcher: settings.fetcher,
            algorithms,
            refresh_interval: settings.refresh_interval,
            max_age: settings.max_age,
            max_keys: settings.max_keys,
            state: parking_lot::RwLock::new(State {
                keys: Arc::new(KeySet::default()),
                fetched_at: None,
                failed: false,
            }),
            fetch_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// The key with `kid`, fetching the JWKS first when the cache lacks it (or is older
    /// than the max age) and the refresh interval allows.
    pub(super) async fn key(&self, kid: Option<&str>) -> Result<Arc<Key>, TokenError> {
        let (cached, stale) = {
            let state = self.state.read();
            let stale = state
                .fetched_at
                .is_some_and(|at| at.elapsed() >= self.max_age);
            (state.keys.get(kid), stale)
        };
        if let Some(key) = cached {
            if !stale {
                return Ok(key);
            }
            // An old set: one lookup fetches it again, the others go on with what they
            // have; if the JWKS is down, its old keys keep serving.
            let Ok(_gate) = self.fetch_gate.try_lock() else {
                return Ok(key);
            };
            if !self.may_fetch() || Box::pin(self.refresh()).await.is_err() {
                return Ok(key);
            }
            // A key gone from the new set was withdrawn by the issuer.
            return self
                .state
                .read()
                .keys
                .get(kid)
                .ok_or_else(|| self.unknown(kid));
        }
        let _gate = self.fetch_gate.lock().await;
        {
            let state = self.state.read();
            // The fetch this lookup waited for may have brought it.
            if let Some(key) = state.keys.get(kid) {
                return Ok(key);
            }
            if !self.may_fetch_in(&state) {
                return Err(if state.failed {
                    self.unavailable()
                } else {
                    self.unknown(kid)
                });
            }
        }
        match Box::pin(self.refresh()).await {
            Ok(()) => self
                .state
                .read()
                .keys
                .get(kid)
                .ok_or_else(|| self.unknown(kid)),
            Err(()) => Err(self.unavailable()),
        }
    }

    fn may_fetch(&self) -> bool {
        self.may_fetch_in(&self.state.read())
    }

    fn may_fetch_in(&self, state: &State) -> bool {
        state
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.refresh_interval)
    }

    /// Fetches the JWKS and replaces the cached set with it; on failure keeps the old set.
    /// Either way the time is recorded, so a JWKS that is down is asked once per interval.
    /// Called with the fetch gate held.
    async fn refresh(&self) -> Result<(), ()> {
        let fetched = self.fetcher.get(&self.url).await.and_then(|body| {
            KeySet::from_jwks(&body, &self.algorithms, self.max_keys).map_err(FetchError::NotJwks)
        });
        let mut state = self.state.write();
        state.fetched_at = Some(Instant::now());
        match fetched {
            Ok((keys, skipped)) => {
                tracing::info!(issuer = %self.issuer, keys = keys.len(), skipped, "jwks fetched");
                state.keys = Arc::new(keys);
                state.failed = false;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    issuer = %self.issuer,
                    host = self.url.host().unwrap_or(""),
                    error = %e,
                    "jwks fetch failed; keeping the keys it had"
                );
                state.failed = true;
                Err(())
            }
        }
    }

    fn unknown(&self, kid: Option<&str>) -> TokenError {
        TokenError::UnknownKey {
            issuer: super::error::clip(&self.issuer),
            kid: kid.map(super::error::clip),
            refreshed: true,
        }
    }

    fn unavailable(&self) -> TokenError {
        TokenError::KeysUnavailable {
            issuer: super::error::clip(&self.issuer),
        }
    }
}

impl fmt::Debug for JwksCache {
    /// The URL's host and path (not its query, which may carry a credential) and the
    /// cached `kid`s.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.read();
        f.debug_struct("JwksCache")
            .field("host", &self.url.host().unwrap_or(""))
            .field("path", &self.url.path())
            .field("kids", &state.keys)
            .field("fetched_ago", &state.fetched_at.map(|at| at.elapsed()))
            .field("failed", &state.failed)
            .finish()
    }
}
