//! goim's response envelope `{"code","message","data"}`: code 0 on success, -400 for bad requests,
//! -401 for a missing or wrong API key, -404 for unknown routes, -429 when rate limited, -500 for server
//! errors. The HTTP status
//! carries the detail (400, 401, 404, 405, 413, 5xx).
//!
//! `ApiError` maps a logic call's gRPC status to the HTTP status and code (`From<tonic::Status>`); `ok()`
//! wraps a success.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong API key (Authorization: Bearer <key>)".into(),
        }
    }

    pub fn code(&self) -> i32 {
        match self.status {
            StatusCode::UNAUTHORIZED => -401,
            StatusCode::NOT_FOUND => -404,
            StatusCode::TOO_MANY_REQUESTS => -429,
            s if s.is_server_error() => -500,
            _ => -400,
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        let status = match s.code() {
            tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
            // A call tonic's own deadline cut short ends as Cancelled ("Timeout expired"): logic did not
            // answer in time, which is as unavailable as an answer saying so.
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!("logic: {:?} {}", s.code(), s.message());
        }
        // tonic's own deadline says only "Timeout expired": say who did not answer.
        let message = match s.code() {
            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
                format!("logic did not answer in time ({})", s.message())
            }
            _ => s.message().to_string(),
        };
        ApiError { status, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        (
            self.status,
            Json(json!({"code": code, "message": self.message, "data": Value::Null})),
        )
            .into_response()
    }
}

pub fn ok(data: impl Serialize) -> Response {
    Json(json!({"code": 0, "message": "ok", "data": data})).into_response()
}

pub type ApiResult = Result<Response, ApiError>;
