//! goim's push API: `POST /goim/push/{keys,mids,room,all}`, the body is the message.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use imcloud_proto::logic::{PushAllReq, PushKeysReq, PushMidsReq, PushRoomReq};
use serde_json::json;

use crate::envelope::{ApiError, ApiResult, ok};
use crate::params::Params;
use crate::state::{AppState, from_logic};

fn body(b: Result<Bytes, BytesRejection>) -> Result<Vec<u8>, ApiError> {
    match b {
        Ok(b) => Ok(b.to_vec()),
        Err(r) => Err(ApiError {
            status: r.status(),
            message: r.body_text(),
        }),
    }
}

pub async fn keys(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let req = PushKeysReq {
        op: p.required_i32("operation")?,
        keys: p.list("keys")?,
        msg: body(b)?,
    };
    let r = from_logic(s.logic().push_keys(s.authed(req)).await)?;
    Ok(ok(json!({"queued": r.queued})))
}

pub async fn mids(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let op = p.required_i32("operation")?;
    let mids = p
        .list("mids")?
        .iter()
        .map(|m| {
            m.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("mids must be integers, got {m:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let req = PushMidsReq {
        op,
        mids,
        msg: body(b)?,
    };
    let r = from_logic(s.logic().push_mids(s.authed(req)).await)?;
    Ok(ok(json!({"queued": r.queued})))
}

pub async fn room(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let req = PushRoomReq {
        op: p.required_i32("operation")?,
        r#type: p.required("type")?.to_string(),
        room: p.required("room")?.to_string(),
        msg: body(b)?,
        persistent: p.optional_bool("persistent")?,
    };
    let r = from_logic(s.logic().push_room(s.authed(req)).await)?;
    Ok(ok(json!({"queued": r.queued})))
}

pub async fn all(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let req = PushAllReq {
        op: p.required_i32("operation")?,
        speed: p.optional_i32("speed", 0)?,
        msg: body(b)?,
    };
    let r = from_logic(s.logic().push_all(s.authed(req)).await)?;
    Ok(ok(json!({"queued": r.queued})))
}
