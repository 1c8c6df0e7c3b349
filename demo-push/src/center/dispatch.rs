//! `GET /dispatch`: on the center, and as the whole of the dispatcher service.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use longlink_codec::push::{Dispatch, Net};
use serde::Deserialize;

use super::{ApiError, ApiQuery, CenterState};
use crate::dispatcher::Dispatcher;
use crate::model::check_name;

/// `GET /dispatch?uid=&net=&failed=a,b`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchQuery {
    uid: String,
    net: Net,
    /// Addresses that failed, comma-separated.
    #[serde(default)]
    failed: Option<String>,
}

/// Answers a dispatch query.
async fn answer(dispatcher: &Dispatcher, q: DispatchQuery) -> Result<Json<Dispatch>, ApiError> {
    check_name("uid", &q.uid)?;
    let failed: Vec<String> = q
        .failed
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .take(64)
        .map(str::to_owned)
        .collect();
    Ok(Json(dispatcher.dispatch(&q.uid, q.net, &failed).await))
}

pub(super) async fn dispatch(
    State(state): State<Arc<CenterState>>,
    ApiQuery(q): ApiQuery<DispatchQuery>,
) -> Result<Json<Dispatch>, ApiError> {
    answer(&state.dispatcher, q).await
}

/// The dispatcher service's routes: `GET /dispatch` and `GET /healthz`.
pub fn router(dispatcher: Dispatcher) -> Router {
    Router::new()
        .route(
            "/dispatch",
            get(
                |State(d): State<Arc<Dispatcher>>, ApiQuery(q): ApiQuery<DispatchQuery>| async move {
                    answer(&d, q).await
                },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(Arc::new(dispatcher))
}
