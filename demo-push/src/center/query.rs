//! Message status, users and groups: what an app may ask about its own traffic.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, AppKey, CenterState};
use crate::model::{Session, check_name};
use crate::saver::MessageStatus;

/// Most uids in one bind or unbind.
const MAX_BIND: usize = 10_000;

pub(super) async fn message(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    Path(id): Path<String>,
) -> Result<Json<MessageStatus>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("{id:?} is not a message id")))?;
    match state.saver.status(id).await? {
        // Another app's message is as invisible as a missing one.
        Some(status) if status.app == app => Ok(Json(status)),
        _ => Err(ApiError::not_found(format!(
            "no stored message {id} in app {app:?} (at-most-once messages are not stored)"
        ))),
    }
}

/// `GET /users/{uid}`.
#[derive(Debug, Serialize)]
pub(super) struct UserStatus {
    uid: String,
    online: bool,
    sessions: Vec<Session>,
}

pub(super) async fn user(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    Path(uid): Path<String>,
) -> Result<Json<UserStatus>, ApiError> {
    check_name("uid", &uid)?;
    let mut sessions = state.register.sessions(&uid).await?;
    sessions.retain(|s| s.apps.contains(&app));
    Ok(Json(UserStatus {
        uid,
        online: !sessions.is_empty(),
        sessions,
    }))
}

/// `POST /users/{uid}/kick`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KickRequest {
    #[serde(default)]
    reason: Option<String>,
}

/// The outcome of a kick.
#[derive(Debug, Serialize)]
pub(super) struct Kicked {
    uid: String,
    kicked: usize,
}

pub(super) async fn kick(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    Path(uid): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Kicked>, ApiError> {
    check_name("uid", &uid)?;
    // The body is optional: an empty one kicks with a default reason; one that is there
    // is JSON, as on every other route.
    let request: KickRequest = if body.is_empty() {
        KickRequest::default()
    } else {
        let json = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_json",
                "a body needs `content-type: application/json` (or send none)",
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?
    };
    let reason = request.reason.unwrap_or_else(|| format!("kicked by {app}"));
    if reason.len() > 256 {
        return Err(ApiError::invalid("reason is longer than 256 bytes"));
    }
    let kicked = state.pusher.kick(&uid, &app, &reason).await;
    if kicked == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_online",
            format!("{uid:?} has no connection in app {app:?}"),
        ));
    }
    Ok(Json(Kicked { uid, kicked }))
}

/// `POST /groups/{g}/bind|unbind`: one uid or several.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Members {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    uids: Vec<String>,
}

/// The outcome of a bind or unbind.
#[derive(Debug, Serialize)]
pub(super) struct GroupChange {
    group: String,
    changed: usize,
    members: usize,
}

fn members_of(group: &str, m: Members) -> Result<Vec<String>, ApiError> {
    check_name("group", group)?;
    let mut uids = m.uids;
    uids.extend(m.uid);
    if uids.is_empty() {
        return Err(ApiError::invalid("name a `uid` or `uids`"));
    }
    if uids.len() > MAX_BIND {
        return Err(ApiError::invalid(format!("more than {MAX_BIND} uids")));
    }
    for uid in &uids {
        check_name("uid", uid)?;
    }
    Ok(uids)
}

pub(super) async fn bind(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    Path(group): Path<String>,
    ApiJson(m): ApiJson<Members>,
) -> Result<Json<GroupChange>, ApiError> {
    let uids = members_of(&group, m)?;
    let register = &state.register;
    let before: std::collections::HashSet<String> = register
        .members(app.clone(), group.clone())
        .await?
        .into_iter()
        .collect();
    for (i, uid) in uids.iter().enumerate() {
        if let Err(e) = register.bind(app.clone(), group.clone(), uid.clone()).await {
            // All or nothing: undo this request's binds.
            for done in uids[..i].iter().filter(|u| !before.contains(*u)) {
                if let Err(undo) = register
                    .unbind(app.clone(), group.clone(), done.clone())
                    .await
                {
                    tracing::warn!(group, uid = done, error = %undo, "undoing a bind failed");
                }
            }
            return Err(e.into());
        }
    }
    let members = register.members(app, group.clone()).await?.len();
    Ok(Json(GroupChange {
        group,
        changed: uids.len(),
        members,
    }))
}

pub(super) async fn unbind(
    State(state): State<Arc<CenterState>>,
    AppKey(app): AppKey,
    Path(group): Path<String>,
    ApiJson(m): ApiJson<Members>,
) -> Result<Json<GroupChange>, ApiError> {
    let uids = members_of(&group, m)?;
    let register = &state.register;
    for uid in &uids {
        register
            .unbind(app.clone(), group.clone(), uid.clone())
            .await?;
    }
    let members = register.members(app, group.clone()).await?.len();
    Ok(Json(GroupChange {
        group,
        changed: uids.len(),
        members,
    }))
}
