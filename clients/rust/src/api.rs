//! The center's push API as a business server calls it, with several centers: pushes
//! spread over the centers in turn, one idempotency key per push, and on a refused or reset
//! connection, a timeout, a 503 or a 429 the same request with the same key to the next
//! center — stored and sent once however many centers saw it. A center that failed is not
//! started at for a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::http::{connector, error_chain};

/// Largest answer read.
const MAX_ANSWER: usize = 1 << 20;

/// A push the API took.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The message id.
    pub id: u64,
    /// The push had been taken before under the same key (this answer is the first one's).
    pub duplicate: bool,
    /// The whole answer (`recipients`, `delivered`, `stored`, …).
    pub answer: Value,
    /// The center that answered.
    pub center: String,
    /// Tries that failed before it: no answer (refused, reset, timed out) or a refusal that
    /// said to try again (503, 429).
    pub failed_tries: usize,
    /// Of those, the ones a center answered (503, 429).
    pub refusals: usize,
}

/// Why a push was not taken.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A center refused the request itself (a 4xx other than 429: bad key, invalid push);
    /// trying elsewhere would not help. Nothing was done.
    #[error("refused with {status} {code}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error's code (`invalid_request`, `unauthorized`, …).
        code: String,
        /// What the center said.
        message: String,
    },
    /// No center took it in time. It may have been stored if a try reached a center that
    /// answered nothing: send it again with [`CenterApi::push_with_key`] and the same key.
    #[error("no center took the push after {tries} tries (last: {last}); key {key}")]
    Unavailable {
        /// Tries made.
        tries: usize,
        /// The last failure.
        last: String,
        /// The idempotency key the tries carried.
        key: String,
    },
    /// The request could not be made (a bad URL, a body that is not a JSON object).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// When a center last failed, and how many times in a row.
type Failures = (Option<tokio::time::Instant>, u32);

/// A client of the center API over several centers.
///
/// ```no_run
/// # async fn demo() -> Result<(), longlink_push_client::ApiError> {
/// use longlink_push_client::CenterApi;
/// let api = CenterApi::new(["http://10.0.0.5:7800", "http://10.0.0.6:7800"], "api-key")?;
/// let pushed = api
///     .push("/push/unicast", serde_json::json!({"uid": "u1", "body": "hello"}))
///     .await?;
/// println!("stored as {}", pushed.id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CenterApi {
    centers: Arc<Vec<String>>,
    key: String,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Pushes start at the centers in turn (the load spreads over them)…
    next: Arc<AtomicUsize>,
    /// …but not at one that failed lately (index → when it last failed, failures in a
    /// row): it is left alone 1 s after one failure, doubling to 30 s.
    failed_at: Arc<std::sync::Mutex<Vec<Failures>>>,
    try_timeout: Duration,
    within: Duration,
}

impl CenterApi {
    /// Pushes through `centers` (base URLs) with the app's API key. Each try waits at most
    /// 5 s for its answer; a push is given up after 20 s of tries.
    pub fn new<S: Into<String>>(
        centers: impl IntoIterator<Item = S>,
        api_key: &str,
    ) -> Result<CenterApi, ApiError> {
        let centers: Vec<String> = centers
            .into_iter()
            .map(|c| c.into().trim_end_matches('/').to_owned())
            .collect();
        if centers.is_empty() {
            return Err(ApiError::Invalid("no center given".into()));
        }
        Ok(CenterApi {
            failed_at: Arc::new(std::sync::Mutex::new(vec![(None, 0); centers.len()])),
            centers: Arc::new(centers),
            key: api_key.trim().to_owned(),
            http: Client::builder(TokioExecutor::new()).build(connector(None)),
            next: Arc::default(),
            try_timeout: Duration::from_secs(5),
            within: Duration::from_secs(20),
        })
    }

    /// HTTPS with these TLS settings (the centers' CA).
    pub fn tls(mut self, tls: Arc<rustls::ClientConfig>) -> CenterApi {
        self.http = Client::builder(TokioExecutor::new()).build(connector(Some(&tls)));
        self
    }

    /// How long one try waits for its answer, and how long a push is tried in all.
    pub fn timeouts(mut self, per_try: Duration, within: Duration) -> CenterApi {
        self.try_timeout = per_try;
        self.within = within;
        self
    }

    /// POSTs `body` (a JSON object) to `path` (`/push/unicast`, `/push/broadcast`, …) with a
    /// new idempotency key, failing over between the centers.
    pub async fn push(&self, path: &str, body: Value) -> Result<Pushed, ApiError> {
        let key = format!("k{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        self.push_with_key(path, body, &key).await
    }

    /// As [`push`](Self::push) with the caller's idempotency key (to send again a push
    /// that came back [`ApiError::Unavailable`]).
    pub async fn push_with_key(
        &self,
        path: &str,
        mut body: Value,
        key: &str,
    ) -> Result<Pushed, ApiError> {
        let Some(object) = body.as_object_mut() else {
            return Err(ApiError::Invalid("the body must be a JSON object".into()));
        };
        object.insert("idempotency_key".into(), Value::String(key.to_owned()));
        let body = Bytes::from(body.to_string());
        let deadline = tokio::time::Instant::now() + self.within;
        let first = self.first();
        let (mut failed_tries, mut refusals) = (0, 0);
        let mut backoff = Duration::from_millis(25);
        let mut last: String;
        for i in first.. {
            let at = i % self.centers.len();
            let center = &self.centers[at];
            match self.try_once(center, path, body.clone()).await {
                Ok((status, answer)) if (200..300).contains(&status) => {
                    self.answered(at);
                    let id = answer["id"].as_u64().ok_or_else(|| {
                        ApiError::Invalid(format!("an answer without an id: {answer}"))
                    })?;
                    return Ok(Pushed {
                        id,
                        duplicate: answer["duplicate"].as_bool().unwrap_or(false),
                        answer,
                        center: center.clone(),
                        failed_tries,
                        refusals,
                    });
                }
                Ok((status @ (429 | 503), answer)) => {
                    refusals += 1;
                    last = format!("{center}: {status} {}", answer["error"]["message"]);
                }
                Ok((status, answer)) => {
                    return Err(ApiError::Refused {
                        status,
                        code: answer["error"]["code"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        message: answer["error"]["message"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
                Err(e) => last = format!("{center}: {e}"),
            }
            self.failed(at);
            failed_tries += 1;
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(ApiError::Unavailable {
                    tries: failed_tries,
                    last,
                    key: key.to_owned(),
                });
            }
            // Every center once at once; then a pause between rounds.
            if failed_tries % self.centers.len() == 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        unreachable!("the loop returns")
    }

    /// Where a push starts: the next center in turn that is not being left alone after
    /// failures (any, if all are).
    fn first(&self) -> usize {
        let n = self.centers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let failed = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        (start..start + n)
            .find(|i| match failed[i % n] {
                (Some(at), row) => at.elapsed() >= penalty(row),
                (None, _) => true,
            })
            .unwrap_or(start)
            % n
    }

    fn failed(&self, at: usize) {
        let mut failed = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        let row = failed[at].1.saturating_add(1);
        failed[at] = (Some(tokio::time::Instant::now()), row);
    }

    fn answered(&self, at: usize) {
        let mut failed = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        failed[at] = (None, 0);
    }

    /// One POST: the status and the JSON answer, or why there was none.
    async fn try_once(
        &self,
        center: &str,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Value), String> {
        let request = http::Request::post(format!("{center}{path}"))
            .header("x-api-key", &self.key)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(self.try_timeout, self.http.request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| error_chain(&e))?;
        let status = response.status().as_u16();
        let bytes = tokio::time::timeout(
            self.try_timeout,
            Limited::new(response.into_body(), MAX_ANSWER).collect(),
        )
        .await
        .map_err(|_| "the answer timed out".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// How long a center is left alone after `row` failures in a row: 1 s, doubling, at most
/// 30 s.
fn penalty(row: u32) -> Duration {
    Duration::from_secs(1 << row.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}
