//! `POST /v1/tokens {"mid", "ttl_secs"}`: mints a connection token for a user (backends only).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use imcloud_proto::logic::IssueTokenReq;
use serde::Deserialize;
use serde_json::json;

use crate::envelope::{ApiError, ApiResult, ok};
use crate::state::{AppState, from_logic};

/// Lifetime of a token when `ttl_secs` is not given.
pub const DEFAULT_TTL_SECS: u64 = 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    mid: i64,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

pub async fn issue(State(s): State<AppState>, b: Result<Bytes, BytesRejection>) -> ApiResult {
    let b = b.map_err(|r| ApiError {
        status: r.status(),
        message: r.body_text(),
    })?;
    let req: TokenRequest = serde_json::from_slice(&b).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be {{\"mid\": int, \"ttl_secs\": int}}: {e}"
        ))
    })?;
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    let r = from_logic(
        s.logic()
            .issue_token(s.authed(IssueTokenReq {
                mid: req.mid,
                ttl_secs: ttl,
            }))
            .await,
    )?;
    Ok(ok(
        json!({"token": r.token, "mid": req.mid, "expires_at": r.expires_at}),
    ))
}
