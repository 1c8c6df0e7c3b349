//! The development web page: connect as a user, watch messages arrive, ACK them, send
//! upstream, and push from a small sender panel. Static HTML and JavaScript, no build step:
//! the page uses the JavaScript SDK (`clients/js`), served as the one ESM file
//! `push-client.js` that `npm run bundle` writes beside this file and that is committed
//! (`scripts/test.sh` checks it matches a fresh build).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use longlink_codec::push::{Dispatch, Net};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiQuery, CenterState};
use crate::model::check_name;

const PAGE: &str = include_str!("page.html");

/// The SDK bundle (`@longlink/push-client`, generated from `clients/js`).
const SDK: &str = include_str!("push-client.js");

pub(super) async fn index() -> Html<&'static str> {
    Html(PAGE)
}

/// `GET /push-client.js`: the SDK the page imports, for any page on this origin.
pub(super) async fn sdk() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SDK,
    )
}

/// `GET /dev/session?uid=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionQuery {
    uid: String,
    #[serde(default)]
    net: Option<Net>,
}

/// What the page needs to act as `uid` and as the app.
#[derive(Debug, Serialize)]
pub(super) struct DevSession {
    uid: String,
    token: String,
    app: String,
    api_key: String,
    dispatch: Dispatch,
}

pub(super) async fn session(
    State(state): State<Arc<CenterState>>,
    ApiQuery(q): ApiQuery<SessionQuery>,
) -> Result<Json<DevSession>, ApiError> {
    let dev = state
        .dev
        .as_ref()
        .ok_or_else(|| ApiError::not_found("the development page is off"))?;
    check_name("uid", &q.uid)?;
    let dispatch = state
        .dispatcher
        .dispatch(&q.uid, q.net.unwrap_or(Net::Wifi), &[])
        .await;
    Ok(Json(DevSession {
        token: state.tokens.issue(&q.uid, dev.token_ttl),
        uid: q.uid,
        app: dev.app.name.clone(),
        api_key: dev.app.api_key.expose().to_owned(),
        dispatch,
    }))
}
