//! The center: the HTTP API business servers call (axum), plus the dispatcher's endpoint,
//! health, metrics, the client's notify pull, and (in development) the web page.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /push/unicast`, `/push/multicast`, `/push/group`, `/push/broadcast` | app (API key) | push a message |
//! | `GET /messages/{id}` | app | delivery status per recipient |
//! | `GET /users/{uid}`, `POST /users/{uid}/kick` | app | online devices; close them |
//! | `POST /groups/{g}/bind`, `/groups/{g}/unbind` | app | group membership |
//! | `GET /dispatch?uid=&net=&failed=` | client | rooms to connect to |
//! | `GET /messages/{id}/body?uid=&token=` | client | pull a `notify` message's body |
//! | `GET /metrics`, `GET /healthz` | operator | Prometheus text; storage check |
//! | `GET /`, `GET /push-client.js`, `GET /dev/session?uid=` | developer | the web page, the JavaScript SDK it uses, and its credentials (only with `dev_page`) |
//!
//! The API key goes in `Authorization: Bearer <key>` or `x-api-key: <key>`; each key
//! belongs to one app, and an app reaches only its own messages, users' sessions in that
//! app, and groups.

mod dispatch;
mod error;
mod open;
mod page;
mod push;
mod query;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use sha2::{Digest, Sha256};

pub use self::dispatch::{DispatchQuery, router as dispatcher_router};
pub use self::error::{ApiError, ApiJson, ApiQuery};
use crate::dispatcher::Dispatcher;
use crate::metrics::{Computed, Gauge, Metrics, Sample};
use crate::pusher::Pusher;
use crate::register::Register;
use crate::saver::Saver;
use crate::token::Tokens;

/// An app: a product whose business server pushes to its users.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app's name (what messages, groups and subscriptions name).
    pub name: String,
    /// The key its business server presents (its `Debug` shows no secret).
    pub api_key: crate::token::Secret,
    /// Where upstream data and online/offline callbacks go, if anywhere.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Upstream type → URL, for types that go somewhere other than `webhook`.
    #[serde(default)]
    pub upstream_routes: std::collections::BTreeMap<String, String>,
}

/// What the web page needs to act as a user and as the app's business server. Served only
/// when the development page is on: it hands out the API key and user tokens.
#[derive(Debug, Clone)]
pub struct DevPage {
    /// The app the page's sender panel pushes as.
    pub app: AppConfig,
    /// How long page tokens last.
    pub token_ttl: std::time::Duration,
}

/// Everything the center's handlers share.
pub struct CenterState {
    pusher: Arc<Pusher>,
    register: Arc<dyn Register>,
    saver: Arc<dyn Saver>,
    /// sha256(api key) → app: a lookup that leaks nothing about the keys through timing.
    apps: HashMap<[u8; 32], String>,
    tokens: Tokens,
    dispatcher: Dispatcher,
    metrics: Arc<Metrics>,
    /// The page's registry (built once; what it reads is read at each scrape).
    page: prometheus_client::registry::Registry,
    /// The register's counts, asked for at each scrape.
    register_users: Gauge,
    register_groups: Gauge,
    dev: Option<DevPage>,
    /// Stopping: `/healthz` says so (a load balancer moves away before the port closes).
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for CenterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CenterState")
            .field("apps", &self.apps.values().collect::<Vec<_>>())
            .field("dev_page", &self.dev.is_some())
            .finish_non_exhaustive()
    }
}

fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// What the center is made of.
#[derive(Debug)]
pub struct CenterParts {
    /// The push engine.
    pub pusher: Arc<Pusher>,
    /// Sessions and groups (user status, group binds).
    pub register: Arc<dyn Register>,
    /// Messages (status, notify pulls, health).
    pub saver: Arc<dyn Saver>,
    /// `GET /dispatch`.
    pub dispatcher: Dispatcher,
    /// The apps and their keys.
    pub apps: Vec<AppConfig>,
    /// Checks the users' tokens (notify pulls).
    pub tokens: Tokens,
    /// The process's metrics: `/metrics` is their page.
    pub metrics: Arc<Metrics>,
    /// The development page, if it is on.
    pub dev: Option<DevPage>,
}

impl CenterState {
    /// Set when the center starts to stop: `/healthz` answers 503 `draining`.
    pub fn draining(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.draining)
    }

    /// The center's state.
    pub fn new(parts: CenterParts) -> CenterState {
        let (register_users, register_groups) = (Gauge::default(), Gauge::default());
        for (name, help, gauge) in [
            (
                "register_sessions",
                "Users with a session in the register",
                &register_users,
            ),
            (
                "register_groups",
                "Groups in the register",
                &register_groups,
            ),
        ] {
            let gauge = gauge.clone();
            parts
                .metrics
                .add_family(Computed::gauge(name, help, move || {
                    vec![Sample::of(gauge.get() as f64)]
                }));
        }
        CenterState {
            draining: Arc::default(),
            page: parts.metrics.registry(),
            register_users,
            register_groups,
            apps: parts
                .apps
                .iter()
                .map(|a| (key_hash(a.api_key.expose()), a.name.clone()))
                .collect(),
            pusher: parts.pusher,
            register: parts.register,
            saver: parts.saver,
            tokens: parts.tokens,
            dispatcher: parts.dispatcher,
            metrics: parts.metrics,
            dev: parts.dev,
        }
    }
}

/// The app an API key names; rejects the request with 401 otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppKey(pub String);

impl FromRequestParts<Arc<CenterState>> for AppKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<CenterState>,
    ) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        let key = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
        let Some(key) = key else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "send the app's API key as `Authorization: Bearer <key>` or `x-api-key: <key>`",
            ));
        };
        match state.apps.get(&key_hash(key.trim())) {
            Some(app) => Ok(AppKey(app.clone())),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_api_key",
                "the API key belongs to no app",
            )),
        }
    }
}

/// The center's routes. Request bodies over `max_body_bytes` are refused with 413 before
/// they are read in full.
pub fn router(state: Arc<CenterState>, max_body_bytes: usize) -> Router {
    let mut router = Router::new()
        .route("/push/unicast", post(push::unicast))
        .route("/push/multicast", post(push::multicast))
        .route("/push/group", post(push::group))
        .route("/push/broadcast", post(push::broadcast))
        .route("/messages/{id}", get(query::message))
        .route("/users/{uid}", get(query::user))
        .route("/users/{uid}/kick", post(query::kick))
        .route("/groups/{group}/bind", post(query::bind))
        .route("/groups/{group}/unbind", post(query::unbind))
        .route("/messages/{id}/body", get(open::body))
        .route("/dispatch", get(dispatch::dispatch))
        .route("/metrics", get(open::metrics))
        .route("/healthz", get(open::healthz));
    if state.dev.is_some() {
        router = router
            .route("/", get(page::index))
            .route("/push-client.js", get(page::sdk))
            .route("/dev/session", get(page::session));
    }
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}
