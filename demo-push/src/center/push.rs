//! `POST /push/*`: the four ways to address a message.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use longlink_codec::push::{DeliveryMode, Payload};
use longlink_rpc::trace::TraceContext;
use serde::Deserialize;
use tracing::Instrument;

use super::{ApiError, ApiJson, AppKey, CenterState};
use crate::model::Target;
use crate::pusher::PushReport;

/// `POST /push/unicast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Unicast {
    uid: String,
    #[serde(default)]
    device: Option<String>,
    body: Payload,
    #[serde(default)]
    mode: DeliveryMode,
    #[serde(default)]
    ttl_secs: Option<u64>,
    /// The same as the `Idempotency-Key` header.
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /push/multicast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Multicast {
    uids: Vec<String>,
    body: Payload,
    #[serde(default)]
    mode: DeliveryMode,
    #[serde(default)]
    ttl_secs: Option<u64>,
    /// The same as the `Idempotency-Key` header.
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /push/group`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Group {
    group: String,
    body: Payload,
    #[serde(default)]
    mode: DeliveryMode,
    #[serde(default)]
    ttl_secs: Option<u64>,
    /// The same as the `Idempotency-Key` header.
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /push/broadcast`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Broadcast {
    body: Payload,
    #[serde(default)]
    mode: DeliveryMode,
    #[serde(default)]
    ttl_secs: Option<u64>,
    /// The same as the `Idempotency-Key` header.
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// The push's idempotency key: the `Idempotency-Key` header or the `idempotency_key`
/// field (the same if both are given).
fn key(headers: &HeaderMap, field: Option<String>) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("the Idempotency-Key header is not text"))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    match (header, field) {
        (Some(h), Some(f)) if h != f => Err(ApiError::invalid(
            "the Idempotency-Key header and the idempotency_key field differ",
        )),
        (h, f) => Ok(h.or(f)),
    }
}

/// The push's span, continuing the W3C `traceparent` (and `tracestate`) of the request,
/// if it carries a valid one.
fn trace_of(headers: &HeaderMap) -> Option<TraceContext> {
    let parent = TraceContext::parse(headers.get("traceparent")?.to_str().ok()?)?;
    let state = headers
        .get("tracestate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Some(parent.with_state(state).child())
}

#[allow(clippy::too_many_arguments)]
async fn push(
    state: &CenterState,
    app: &str,
    headers: &HeaderMap,
    target: Target,
    mode: DeliveryMode,
    body: Payload,
    ttl_secs: Option<u64>,
    key_field: Option<String>,
) -> Result<Json<PushReport>, ApiError> {
    let ttl = match ttl_secs {
        Some(0) => return Err(ApiError::invalid("ttl_secs must be at least 1")),
        Some(s) => Some(Duration::from_secs(s)),
        None => None,
    };
    let key = key(headers, key_field)?;
    let work = state.pusher.push(app, target, mode, body, ttl, key);
    let report = match trace_of(headers) {
        // The business server's trace continues through the saver and the rooms.
        Some(cx) => {
            let span = tracing::info_span!(
                "push",
                app,
                trace_id = %cx.trace_id(),
                span_id = %cx.span_id(),
                parent_span_id = %cx.parent_span_id().unwrap_or_default(),
            );
            let logged = async move {
                tracing::debug!("traced push");
                work.await
            };
            cx.scope(logged).instrument(span).await?
        }
        None => work.await?,
    };
    Ok(Json(report))
}

pub(super) async fn unicast(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    headers: HeaderMap,
    ApiJson(r): ApiJson<Unicast>,
) -> Result<Json<PushReport>, ApiError> {
    let target = Target::Unicast {
        uid: r.uid,
        device: r.device,
    };
    push(
        &state,
        &app,
        &headers,
        target,
        r.mode,
        r.body,
        r.ttl_secs,
        r.idempotency_key,
    )
    .await
}

pub(super) async fn multicast(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    headers: HeaderMap,
    ApiJson(r): ApiJson<Multicast>,
) -> Result<Json<PushReport>, ApiError> {
    let target = Target::Multicast { uids: r.uids };
    push(
        &state,
        &app,
        &headers,
        target,
        r.mode,
        r.body,
        r.ttl_secs,
        r.idempotency_key,
    )
    .await
}

pub(super) async fn group(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    headers: HeaderMap,
    ApiJson(r): ApiJson<Group>,
) -> Result<Json<PushReport>, ApiError> {
    let target = Target::Group { group: r.group };
    push(
        &state,
        &app,
        &headers,
        target,
        r.mode,
        r.body,
        r.ttl_secs,
        r.idempotency_key,
    )
    .await
}

pub(super) async fn broadcast(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    headers: HeaderMap,
    ApiJson(r): ApiJson<Broadcast>,
) -> Result<Json<PushReport>, ApiError> {
    push(
        &state,
        &app,
        &headers,
        Target::Broadcast,
        r.mode,
        r.body,
        r.ttl_secs,
        r.idempotency_key,
    )
    .await
}
