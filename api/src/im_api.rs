//! The IM JSON API under `/v1`: every operation of the contract (`imcloud_common::im::operations`)
//! mounted from the table, its path parameters, query and JSON body decoded into the operation's
//! typed request here (a malformed or invalid request is a 400 before logic is asked), then forwarded
//! to logic as one `ImCall` carrying the `ImRequest` (an upload's raw bytes travel beside it), with
//! logic's status, body and content type passed back. Errors are `{"error":{"code","message"}}`; a
//! `rate_limited` answer carries `Retry-After`.
//!
//! The routes are mounted by `visit` over the operation table; `serde_path_to_error` names the bad field in
//! a 400. When logic cannot be reached, the answer is 503 `unavailable`.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection, RawPathParamsRejection};
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, Query, RawPathParams, RawQuery, State,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use imcloud_common::im::operations::{Access, GetMe, ImRequest, NoBody, Operation, Visitor, visit};
use imcloud_common::im::params::NoParams;
use imcloud_proto::logic::ImCallReq;
use serde_json::{Map, Value, json};

use crate::state::AppState;

/// The IM API's error response.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_argument", message)
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

/// Decodes `value` as `T`, naming the field that is wrong (`body.nickname: must be 1 to 32 characters`).
fn decode<T: serde::de::DeserializeOwned>(part: &str, value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            part.to_string()
        } else {
            format!("{part}.{path}")
        };
        format!("{at}: {}", e.into_inner())
    })
}

/// The path parameters axum matched, as the JSON object an operation's `Path` type decodes from.
fn path_params<O: Operation>(
    path: Result<RawPathParams, RawPathParamsRejection>,
) -> Result<Map<String, Value>, String> {
    match path {
        Ok(p) => Ok(p
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()),
        Err(_) if !O::ROUTE.path.contains('{') => Ok(Map::new()),
        Err(e) => Err(format!("path: {}", e.body_text())),
    }
}

/// The typed request of operation `O` from the untrusted parts of an HTTP request (its path
/// parameters as strings, its query as axum's extractor decoded it, its body), or what is wrong with
/// them. Public as the parse entry point of the IM API (the `im_request` fuzz target drives it).
pub fn request<O: Operation>(
    params: Map<String, Value>,
    query: Result<Query<O::Query>, QueryRejection>,
    body: &[u8],
) -> Result<O, String> {
    let path: O::Path = decode("path", Value::Object(params))?;
    let Query(query) = query.map_err(|e| format!("query: {}", e.body_text()))?;
    let body_value = if O::ROUTE.raw_body || body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err("request body must be a JSON object".into()),
            Err(e) => return Err(format!("request body is not valid JSON: {e}")),
        }
    };
    let body: O::Body = decode("body", body_value)?;
    Ok(O::from_parts(path, query, body))
}

async fn forward<O: Operation>(
    s: AppState,
    client: SocketAddr,
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Result<Query<O::Query>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = O::ROUTE;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if route.access == Access::Trusted
        && !imcloud_common::auth::bearer_matches(authorization, &s.api_key)
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "this route is for trusted backends: Authorization: Bearer <api key>",
        );
    }
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
    // An invalid request to a login route still goes to logic, which checks the login first: a caller
    // without a valid login learns nothing about the request but 401.
    let args = match path_params::<O>(path).and_then(|params| request::<O>(params, query, &body)) {
        Ok(op) => serde_json::to_vec(&Into::<ImRequest>::into(op)).unwrap_or_default(),
        Err(why) if route.access == Access::Login => {
            serde_json::to_vec(&json!({"invalid": why})).unwrap_or_default()
        }
        Err(why) => return invalid(why),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let call = ImCallReq {
        op: route.op.to_string(),
        // Only a login route's bearer is a login token; a trusted route's is the api key, which logic
        // never needs to see.
        token: if route.access == Access::Login {
            bearer(&headers)
        } else {
            String::new()
        },
        args,
        raw: if route.raw_body {
            body.to_vec()
        } else {
            Vec::new()
        },
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
    let h = response.headers_mut();
    if reply.retry_after_secs > 0 {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(reply.retry_after_secs),
        );
    }
    if route.op == "uploads.get" {
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
    crate::params::first_duplicate(raw_query)
        .map(|name| invalid(format!("query parameter {name:?} is given more than once")))
}

fn handler<O: Operation>(upload_max: usize) -> MethodRouter<AppState> {
    let m = on(
        method_filter(O::ROUTE.method),
        |State(s): State<AppState>,
         ConnectInfo(client): ConnectInfo<SocketAddr>,
         path: Result<RawPathParams, RawPathParamsRejection>,
         RawQuery(raw): RawQuery,
         query: Result<Query<O::Query>, QueryRejection>,
         req: axum::extract::Request| async move {
            if let Some(refused) = refuse_duplicates(raw.as_deref()) {
                return refused;
            }
            // An upload's body is read only once its caller is known.
            if O::ROUTE.raw_body
                && let Some(refused) = authenticate_first(&s, req.headers(), client).await
            {
                return refused;
            }
            let headers = req.headers().clone();
            let body = Bytes::from_request(req, &s).await;
            forward::<O>(s, client, path, query, headers, body).await
        },
    );
    if O::ROUTE.raw_body {
        m.layer(DefaultBodyLimit::max(upload_max + 1))
    } else {
        m
    }
}

/// Checks the caller's login (as `GET /v1/me` does) before an upload body is read, so that an
/// unauthenticated upload costs its headers only (logic checks the login again with the upload).
/// `None` = go on.
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
    let me = GetMe::from_parts(NoParams {}, NoParams {}, NoBody {});
    let call = ImCallReq {
        op: GetMe::ROUTE.op.to_string(),
        token,
        args: serde_json::to_vec(&ImRequest::from(me)).unwrap_or_default(),
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

/// Collects one method router per path from the operation table.
struct Mount {
    upload_max: usize,
    paths: Vec<&'static str>,
    methods: HashMap<&'static str, MethodRouter<AppState>>,
}

impl Visitor for Mount {
    fn visit<O: Operation>(&mut self) {
        let h = handler::<O>(self.upload_max);
        let path = O::ROUTE.path;
        let merged = match self.methods.remove(path) {
            Some(m) => m.merge(h),
            None => {
                self.paths.push(path);
                h
            }
        };
        self.methods.insert(path, merged);
    }
}

/// The `/v1` IM routes.
pub fn routes(upload_max: usize) -> Router<AppState> {
    let mut mount = Mount {
        upload_max,
        paths: Vec::new(),
        methods: HashMap::new(),
    };
    visit(&mut mount);
    let mut router = Router::new();
    for path in mount.paths {
        if let Some(m) = mount.methods.remove(path) {
            router = router.route(path, m);
        }
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;
    use imcloud_common::im::operations::{RegisterUser, SendMessage};

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

    #[test]
    fn bodies_decode_into_the_typed_request_or_name_the_bad_field() {
        let no_path = Map::new;
        let q = || Ok(Query(imcloud_common::im::params::NoParams {}));
        let ok = request::<RegisterUser>(
            no_path(),
            q(),
            br#"{"email":"A@B.co","nickname":" Ann ","password":"correct horse"}"#,
        );
        assert!(ok.is_ok_and(|r| r.body.email.as_str() == "a@b.co" && r.body.nickname.as_str() == "Ann"));
        assert!(
            request::<RegisterUser>(
                no_path(),
                q(),
                br#"{"email":"a@b.co","nickname":"","password":"correct horse"}"#
            )
            .is_err()
        );
        assert!(request::<RegisterUser>(no_path(), q(), b"[1]").is_err());
        assert!(request::<RegisterUser>(no_path(), q(), b"{").is_err());
        // A route with parameters needs them.
        assert!(
            request::<SendMessage>(no_path(), q(), br#"{"client_msg_id":"a","content":"b"}"#)
                .is_err()
        );
    }
}
