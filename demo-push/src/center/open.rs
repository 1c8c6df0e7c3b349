//! Routes without an API key: the client's notify pull (a user token instead), metrics
//! and health.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiQuery, CenterState};
use crate::model::now_ms;

/// `GET /messages/{id}/body?uid=&token=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BodyQuery {
    uid: String,
    token: String,
}

/// A `notify` message's body, for the user it was sent to, proven by the user's token.
pub(super) async fn body(
    State(state): State<Arc<CenterState>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<BodyQuery>,
) -> Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("{id:?} is not a message id")))?;
    if let Err(e) = state.tokens.verify(&q.token, &q.uid) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_token",
            e.to_string(),
        ));
    }
    let Some(message) = state.saver.message_for(id, q.uid.clone()).await? else {
        return Err(ApiError::not_found(format!(
            "no message {id} for {:?}",
            q.uid
        )));
    };
    if message.is_expired(now_ms()) {
        return Err(ApiError::new(
            StatusCode::GONE,
            "expired",
            format!("message {id} expired"),
        ));
    }
    let content_type = if std::str::from_utf8(&message.body).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], message.body).into_response())
}

pub(super) async fn metrics(State(state): State<Arc<CenterState>>) -> Response {
    // The register's counts need a call (Redis in a cluster): asked for now, not kept.
    if let Ok(counts) = state.register.counts().await {
        state.register_users.set(counts.users as i64);
        state.register_groups.set(counts.groups as i64);
    }
    crate::metrics::response(&state.page)
}

/// `GET /healthz`.
#[derive(Debug, Serialize)]
pub(super) struct Health {
    status: &'static str,
    storage: String,
    connections: u64,
}

/// Healthy when the message store answers within two seconds; 503 `draining` once the
/// center has begun to stop.
pub(super) async fn healthz(State(state): State<Arc<CenterState>>) -> (StatusCode, Json<Health>) {
    let connections = state.metrics.connections.get().max(0) as u64;
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "draining",
                storage: "not checked: the center is stopping".into(),
                connections,
            }),
        );
    }
    let check = tokio::time::timeout(Duration::from_secs(2), state.saver.max_id()).await;
    let (status, storage) = match check {
        Ok(Ok(_)) => (StatusCode::OK, "ok".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store did not answer in 2 s".to_owned(),
        ),
    };
    let word = if status == StatusCode::OK {
        "ok"
    } else {
        "unavailable"
    };
    (
        status,
        Json(Health {
            status: word,
            storage,
            connections,
        }),
    )
}
