//! Token refresh: where a new token comes from, when a token expires, and when to ask for
//! the next one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// What [`TokenSource`] returns: a new token, or why none could be had.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Where the client gets a new token for its user: usually a call to the app's own
/// backend, which issues one (an HMAC token or a JWT).
///
/// The client calls it before the current token expires (when it can read the expiry:
/// HMAC tokens and JWTs both carry one), when a room refuses an AUTH, and before
/// reconnecting with a token that has expired.
///
/// ```
/// use longlink_push_client::{ClientConfig, TokenSource};
///
/// let source = TokenSource::new(|| async {
///     // e.g. GET https://backend.example/push-token with the app's session cookie
///     Ok::<_, String>("a new token".to_owned())
/// });
/// let config = ClientConfig::new("https://push.example", "u1", "the first token").refresh(source);
/// assert!(config.refresh.is_some());
/// ```
#[derive(Clone)]
pub struct TokenSource(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl TokenSource {
    /// A source calling `fetch` for each new token.
    pub fn new<F, Fut>(fetch: F) -> TokenSource
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        TokenSource(Arc::new(move || Box::pin(fetch())))
    }

    pub(crate) fn fetch(&self) -> TokenFuture {
        (self.0)()
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSource(..)")
    }
}

/// The shortest lead before expiry at which the client asks for a new token.
const MIN_LEAD: Duration = Duration::from_secs(5);
/// The longest lead: a day-long token is refreshed 5 minutes before it ends.
const MAX_LEAD: Duration = Duration::from_secs(300);

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When `token` expires (Unix seconds), if it says: the middle field of an HMAC token
/// (`uid.expiry.signature`), or the `exp` claim of a JWT's payload. The client reads it
/// only to time the refresh; the room is what checks it.
pub(crate) fn expiry(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, middle, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    if let Ok(expiry) = middle.parse::<u64>() {
        return Some(expiry);
    }
    let payload = B64.decode(middle).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    claims.get("exp")?.as_u64()
}

/// How long from `now` until the client should ask for the next token: a fifth of the
/// time left, between [`MIN_LEAD`] and [`MAX_LEAD`] before `expires_at`, and at once when
/// less than that remains.
pub(crate) fn refresh_in(expires_at: u64, now: u64) -> Duration {
    let left = Duration::from_secs(expires_at.saturating_sub(now));
    let lead = (left / 5).clamp(MIN_LEAD, MAX_LEAD);
    left.saturating_sub(lead)
}

/// Whether `token` has expired, or will within [`MIN_LEAD`] (too late to connect with).
pub(crate) fn stale(token: &str, now: u64) -> bool {
    expiry(token).is_some_and(|at| at <= now + MIN_LEAD.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_is_read_from_hmac_tokens_and_jwts_and_nothing_else() {
        assert_eq!(expiry("dTE.1700000000.c2ln"), Some(1_700_000_000));
        let payload = B64.encode(br#"{"sub":"u1","exp":1800000000}"#);
        assert_eq!(
            expiry(&format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln")),
            Some(1_800_000_000)
        );
        let no_exp = B64.encode(br#"{"sub":"u1"}"#);
        assert_eq!(expiry(&format!("h.{no_exp}.s")), None);
        assert_eq!(expiry("opaque"), None);
        assert_eq!(expiry("a.b.c.d"), None);
        assert_eq!(expiry("a.!!.c"), None);
    }

    #[test]
    fn the_refresh_comes_a_fifth_of_the_time_left_before_expiry_within_bounds() {
        // One hour left: five minutes' lead (a fifth would be twelve).
        assert_eq!(refresh_in(3600, 0), Duration::from_secs(3300));
        // One minute left: twelve seconds' lead.
        assert_eq!(refresh_in(60, 0), Duration::from_secs(48));
        // Ten seconds left: at least five seconds' lead.
        assert_eq!(refresh_in(10, 0), Duration::from_secs(5));
        // Past: at once.
        assert_eq!(refresh_in(10, 20), Duration::ZERO);
        assert!(stale("dTE.104.c2ln", 100));
        assert!(!stale("dTE.106.c2ln", 100));
        assert!(!stale("opaque", 100));
    }
}
