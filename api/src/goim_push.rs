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
    let mut req = keys_request(q.as_deref())?;
    req.msg = body(b)?;
    let r = from_logic(s.logic().push_keys(s.authed(req)).await)?;
    Ok(ok(json!({"queued": r.queued})))
}

pub async fn mids(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut req = mids_request(q.as_deref())?;
    req.msg = body(b)?;
    let r = from_logic(s.logic().push_mids(s.authed(req)).await)?;
    Ok(ok(json!({"queued": r.queued})))
}

pub async fn room(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut req = room_request(q.as_deref())?;
    req.msg = body(b)?;
    let r = from_logic(s.logic().push_room(s.authed(req)).await)?;
    Ok(ok(json!({"queued": r.queued})))
}

pub async fn all(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut req = all_request(q.as_deref())?;
    req.msg = body(b)?;
    let r = from_logic(s.logic().push_all(s.authed(req)).await)?;
    Ok(ok(json!({"queued": r.queued})))
}

// The queries, parsed into the requests (without their message, which is the body). Public: they are
// the entry points for untrusted query strings (the `goim_push_query` fuzz target drives them).

/// `POST /goim/push/keys?operation=&keys=`.
pub fn keys_request(query: Option<&str>) -> Result<PushKeysReq, ApiError> {
    let p = Params::parse(query);
    Ok(PushKeysReq {
        op: p.required_i32("operation")?,
        keys: p.list("keys")?,
        msg: Vec::new(),
    })
}

/// `POST /goim/push/mids?operation=&mids=`.
pub fn mids_request(query: Option<&str>) -> Result<PushMidsReq, ApiError> {
    let p = Params::parse(query);
    let op = p.required_i32("operation")?;
    let mids = p
        .list("mids")?
        .iter()
        .map(|m| {
            m.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("mids must be integers, got {m:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PushMidsReq {
        op,
        mids,
        msg: Vec::new(),
    })
}

/// `POST /goim/push/room?operation=&type=&room=[&persistent=]`.
pub fn room_request(query: Option<&str>) -> Result<PushRoomReq, ApiError> {
    let p = Params::parse(query);
    Ok(PushRoomReq {
        op: p.required_i32("operation")?,
        r#type: p.required("type")?.to_string(),
        room: p.required("room")?.to_string(),
        msg: Vec::new(),
        persistent: p.optional_bool("persistent")?,
    })
}

/// `POST /goim/push/all?operation=&speed=`.
pub fn all_request(query: Option<&str>) -> Result<PushAllReq, ApiError> {
    let p = Params::parse(query);
    Ok(PushAllReq {
        op: p.required_i32("operation")?,
        speed: p.optional_i32("speed", 0)?,
        msg: Vec::new(),
    })
}
