//! The IM JSON API under `/v1`: every route of `imcloud_common::im_routes` forwarded to logic as one
//! `ImCall` (path and query parameters and the JSON body, or an upload's raw bytes), with logic's status
//! and body passed back. Errors are `{"error":{"code","message"}}`.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use imcloud_common::im_routes::{IM_ROUTES, ImRoute};
use imcloud_proto::logic::ImCallReq;
use serde_json::{Value, json};

use crate::state::AppState;

/// The IM API's error response.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PATCH" => MethodFilter::PATCH,
        "PUT" => MethodFilter::PUT,
        _ => MethodFilter::DELETE,
    }
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme name is case-insensitive (RFC 9110), as for the API key.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string())
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    route: &'static ImRoute,
    s: AppState,
    client: SocketAddr,
    path: HashMap<String, String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if route.trusted
        && !imcloud_common::auth::bearer_matches(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            &s.api_key,
        )
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "this route is for trusted backends: Authorization: Bearer <api key>",
        );
    }
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "malformed query string",
        );
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "invalid_argument"
            };
            return error(status, code, e.body_text());
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (json_body, raw) = if route.raw_body {
        (Value::Null, body.to_vec())
    } else if body.iter().all(u8::is_ascii_whitespace) {
        (Value::Null, Vec::new())
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v @ Value::Object(_)) => (v, Vec::new()),
            Ok(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_argument",
                    "request body must be a JSON object",
                );
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_argument",
                    format!("request body is not valid JSON: {e}"),
                );
            }
        }
    };
    let args = json!({"path": path, "query": query, "body": json_body});
    let call = ImCallReq {
        op: route.op.to_string(),
        // A trusted route's bearer is the api key, which logic never needs to see.
        token: if route.trusted {
            String::new()
        } else {
            bearer(&headers)
        },
        args: serde_json::to_vec(&args).unwrap_or_default(),
        raw,
        content_type,
        client_ip: client.ip().to_string(),
    };
    let reply = match s.logic().im_call(s.authed(call)).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            tracing::warn!(op = route.op, "logic: {:?} {}", e.code(), e.message());
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the IM service is unavailable; retry",
            );
        }
    };
    let status = u16::try_from(reply.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let ct = HeaderValue::from_str(&reply.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = (status, [(header::CONTENT_TYPE, ct)], reply.body).into_response();
    if route.op == "uploads.get" {
        let h = response.headers_mut();
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=86400"),
        );
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("inline"),
        );
    }
    response
}

/// A duplicated query parameter is refused rather than read as its first or last value.
fn refuse_duplicates(raw_query: Option<&str>) -> Option<Response> {
    crate::params::first_duplicate(raw_query).map(|name| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!("query parameter {name:?} is given more than once"),
        )
    })
}

fn handler(route: &'static ImRoute, upload_max: usize) -> MethodRouter<AppState> {
    if route.raw_body {
        // An upload's body is read only once its caller is known (authenticate_first).
        return on(
            method_filter(route.method),
            move |State(s): State<AppState>,
                  ConnectInfo(client): ConnectInfo<SocketAddr>,
                  path: Option<Path<HashMap<String, String>>>,
                  RawQuery(raw): RawQuery,
                  query: Result<Query<HashMap<String, String>>, QueryRejection>,
                  req: axum::extract::Request| async move {
                if let Some(refused) = refuse_duplicates(raw.as_deref()) {
                    return refused;
                }
                if let Some(refused) = authenticate_first(&s, req.headers(), client).await {
                    return refused;
                }
                let headers = req.headers().clone();
                let body = Bytes::from_request(req, &s).await;
                let path = path.map(|Path(p)| p).unwrap_or_default();
                forward(route, s, client, path, query, headers, body).await
            },
        )
        .layer(DefaultBodyLimit::max(upload_max + 1));
    }
    on(
        method_filter(route.method),
        move |State(s): State<AppState>,
              ConnectInfo(client): ConnectInfo<SocketAddr>,
              path: Option<Path<HashMap<String, String>>>,
              RawQuery(raw): RawQuery,
              query: Result<Query<HashMap<String, String>>, QueryRejection>,
              headers: HeaderMap,
              body: Result<Bytes, BytesRejection>| async move {
            if let Some(refused) = refuse_duplicates(raw.as_deref()) {
                return refused;
            }
            let path = path.map(|Path(p)| p).unwrap_or_default();
            forward(route, s, client, path, query, headers, body).await
        },
    )
}

/// The operation that checks a login token (`GET /v1/me`).
fn me_op() -> Option<&'static str> {
    IM_ROUTES
        .iter()
        .find(|r| r.method == "GET" && r.path == "/v1/me")
        .map(|r| r.op)
}

/// Checks the caller's login before an upload body is read, so that an unauthenticated upload costs
/// its headers only (logic checks the login again with the upload). `None` = go on.
async fn authenticate_first(
    s: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
) -> Option<Response> {
    let token = bearer(headers);
    if token.is_empty() {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing login token (Authorization: Bearer <token>)",
        ));
    }
    let Some(op) = me_op() else {
        return Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no login check route",
        ));
    };
    let call = ImCallReq {
        op: op.to_string(),
        token,
        args: br#"{"path":{},"query":{},"body":null}"#.to_vec(),
        raw: Vec::new(),
        content_type: String::new(),
        client_ip: client.ip().to_string(),
    };
    match s.logic().im_call(s.authed(call)).await {
        Ok(r) if r.get_ref().status == 200 => None,
        Ok(r) => {
            let r = r.into_inner();
            let status = u16::try_from(r.status)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::UNAUTHORIZED);
            Some((status, [(header::CONTENT_TYPE, "application/json")], r.body).into_response())
        }
        Err(e) => {
            tracing::warn!("logic: {:?} {}", e.code(), e.message());
            Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the IM service is unavailable; retry",
            ))
        }
    }
}

/// The `/v1` IM routes.
pub fn routes(upload_max: usize) -> Router<AppState> {
    let mut router = Router::new();
    let mut paths: Vec<&str> = IM_ROUTES.iter().map(|r| r.path).collect();
    paths.dedup();
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        if !seen.insert(path) {
            continue;
        }
        let mut methods: Option<MethodRouter<AppState>> = None;
        for r in IM_ROUTES.iter().filter(|r| r.path == path) {
            let h = handler(r, upload_max);
            methods = Some(match methods {
                None => h,
                Some(m) => m.merge(h),
            });
        }
        if let Some(m) = methods {
            router = router.route(path, m);
        }
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_check_route_exists() {
        assert!(me_op().is_some(), "authenticate_first needs GET /v1/me");
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), "");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def"),
        );
        assert_eq!(bearer(&h), "abc.def");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("BEARER abc.def"),
        );
        assert_eq!(bearer(&h), "abc.def");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(bearer(&h), "");
    }
}
