//! goim's online and node queries: `GET /goim/online/{top,room,total}`, `GET /goim/nodes/{weighted,instances}`.

use axum::extract::{RawQuery, State};
use imcloud_proto::logic::{InstancesReq, NodesReq, OnlineRoomReq, OnlineTopReq, OnlineTotalReq};
use serde_json::json;

use crate::envelope::{ApiError, ApiResult, ok};
use crate::params::Params;
use crate::state::{AppState, from_logic};

/// Most rooms `/goim/online/top` returns.
const MAX_TOP: i32 = 1000;

pub async fn top(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let kind = p.required("type")?.to_string();
    let limit = p.required_i32("limit")?;
    if !(1..=MAX_TOP).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_TOP}"
        )));
    }
    let r = from_logic(
        s.logic()
            .online_top(s.authed(OnlineTopReq {
                r#type: kind,
                limit: limit as u32,
            }))
            .await,
    )?;
    let rooms: Vec<_> = r
        .rooms
        .into_iter()
        .map(|c| json!({"room_id": c.room_id, "count": c.count}))
        .collect();
    Ok(ok(rooms))
}

pub async fn room(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let req = OnlineRoomReq {
        r#type: p.required("type")?.to_string(),
        rooms: p.list("rooms")?,
    };
    let r = from_logic(s.logic().online_room(s.authed(req)).await)?;
    Ok(ok(r.rooms))
}

pub async fn total(State(s): State<AppState>) -> ApiResult {
    let r = from_logic(s.logic().online_total(s.authed(OnlineTotalReq {})).await)?;
    Ok(ok(
        json!({"ip_count": r.ip_count, "conn_count": r.conn_count}),
    ))
}

pub async fn weighted(State(s): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let req = NodesReq {
        platform: p.get("platform")?.unwrap_or("").to_string(),
        client_ip: String::new(),
    };
    let r = from_logic(s.logic().nodes(s.authed(req)).await)?;
    Ok(ok(json!({
        "domain": r.domain,
        "tcp_port": r.tcp_port,
        "ws_port": r.ws_port,
        "wss_port": r.wss_port,
        "heartbeat": r.heartbeat,
        "heartbeat_max": r.heartbeat_max,
        "nodes": r.nodes,
        "backoff": r.backoff.map(|b| json!({
            "max_delay": b.max_delay, "base_delay": b.base_delay, "factor": b.factor, "jitter": b.jitter
        })),
    })))
}

pub async fn instances(State(s): State<AppState>) -> ApiResult {
    let r = from_logic(s.logic().instances(s.authed(InstancesReq {})).await)?;
    let list: Vec<_> = r
        .instances
        .into_iter()
        .map(|i| {
            json!({
                "role": i.role, "id": i.id, "grpc_addr": i.grpc_addr, "ws_addr": i.ws_addr, "tcp_addr": i.tcp_addr,
                "weight": i.weight, "connections": i.connections, "version": i.version,
            })
        })
        .collect();
    Ok(ok(list))
}
