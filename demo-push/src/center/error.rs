//! The API's errors: every refusal is a 4xx or 5xx with a JSON body
//! `{"error": {"code": "...", "message": "..."}}` that says what happened and whether
//! anything was done.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PushError;

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 404 with `not_found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 with `invalid`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> ApiError {
        match e {
            PushError::Invalid(m) => ApiError::invalid(m),
            PushError::Overloaded(o) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                format!("{o}; nothing was done, retry later"),
            ),
            PushError::Storage(e) => {
                let outcome = if e.may_have_run() {
                    "the write may have been applied: the message may have been stored and sent; \
                     retry with the same idempotency key, or check its status"
                } else {
                    "nothing was stored or sent"
                };
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    format!("the message store failed ({e}); {outcome}"),
                )
            }
            PushError::Unavailable {
                service,
                detail,
                may_have_run,
            } => {
                let outcome = if may_have_run {
                    "it may have been done: retry with the same idempotency key, or check its status"
                } else {
                    "nothing was done; retry later"
                };
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    if service == "store" {
                        "storage_unavailable"
                    } else {
                        "service_unavailable"
                    },
                    format!("the {service} service failed ({detail}); {outcome}"),
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let code = match &r {
            JsonRejection::JsonDataError(_) => "invalid_fields",
            JsonRejection::JsonSyntaxError(_) => "invalid_json",
            JsonRejection::MissingJsonContentType(_) => "not_json",
            JsonRejection::BytesRejection(_) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                "too_large"
            }
            _ => "bad_body",
        };
        ApiError::new(r.status(), code, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// `Query<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_says_whether_anything_may_have_been_stored() {
        let not_sent = PushError::Unavailable {
            service: "store",
            detail: "connection refused".into(),
            may_have_run: false,
        };
        let e = ApiError::from(not_sent);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        );
        assert!(
            e.message.ends_with("nothing was done; retry later"),
            "{}",
            e.message
        );
        let maybe = PushError::Unavailable {
            service: "store",
            detail: "the connection broke after the statement was sent".into(),
            may_have_run: true,
        };
        let e = ApiError::from(maybe);
        assert!(e.message.contains("it may have been done"), "{}", e.message);
        assert!(e.message.contains("idempotency key"), "{}", e.message);
        assert!(
            !e.message.contains("nothing was"),
            "the two halves agree: {}",
            e.message
        );
    }
}
