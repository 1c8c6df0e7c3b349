//! `POST /push/*`: the four ways to address a message.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use longlink_codec::push::{DeliveryMode, Payload};
use serde::Deserialize;

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
}

async fn push(
    state: &CenterState,
    app: &str,
    target: Target,
    mode: DeliveryMode,
    body: Payload,
    ttl_secs: Option<u64>,
) -> Result<Json<PushReport>, ApiError> {
    let ttl = match ttl_secs {
        Some(0) => return Err(ApiError::invalid("ttl_secs must be at least 1")),
        Some(s) => Some(Duration::from_secs(s)),
        None => None,
    };
    let report = state.pusher.push(app, target, mode, body, ttl).await?;
    Ok(Json(report))
}

pub(super) async fn unicast(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    ApiJson(r): ApiJson<Unicast>,
) -> Result<Json<PushReport>, ApiError> {
    let target = Target::Unicast {
        uid: r.uid,
        device: r.device,
    };
    push(&state, &app, target, r.mode, r.body, r.ttl_secs).await
}

pub(super) async fn multicast(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    ApiJson(r): ApiJson<Multicast>,
) -> Result<Json<PushReport>, ApiError> {
    let target = Target::Multicast { uids: r.uids };
    push(&state, &app, target, r.mode, r.body, r.ttl_secs).await
}

pub(super) async fn group(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    ApiJson(r): ApiJson<Group>,
) -> Result<Json<PushReport>, ApiError> {
    let target = Target::Group { group: r.group };
    push(&state, &app, target, r.mode, r.body, r.ttl_secs).await
}

pub(super) async fn broadcast(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    ApiJson(r): ApiJson<Broadcast>,
) -> Result<Json<PushReport>, ApiError> {
    push(&state, &app, Target::Broadcast, r.mode, r.body, r.ttl_secs).await
}
