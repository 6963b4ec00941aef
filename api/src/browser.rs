//! What browsers are told: CORS for the origins in `IMCLOUD_API_CORS_ORIGINS` (none by default, so a web
//! page on another origin cannot read the API's answers; `*` allows any origin, without credentials,
//! which the API never uses anyway: it authenticates by `Authorization` header, not cookies), and the
//! security headers every response carries unless its handler set them:
//! `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`,
//! `Cache-Control: no-store` (tokens and messages must not sit in shared caches), a
//! `Content-Security-Policy` of `default-src 'none'; frame-ancestors 'none'` on anything but HTML, and
//! `Strict-Transport-Security` when the API is served over TLS.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The CORS layer for `origins` (comma-separated; `*` = any), or `None` when the list is empty.
pub fn cors(origins: &str) -> Result<Option<CorsLayer>, String> {
    let list = imcloud_common::Config::list(origins);
    if list.is_empty() {
        return Ok(None);
    }
    let allow = if list.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let parsed = list
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/'))
                    .map_err(|_| format!("IMCLOUD_API_CORS_ORIGINS: bad origin {o:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(parsed)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    ))
}

/// Adds the security headers a response lacks; `tls` adds HSTS.
pub async fn security_headers(tls: bool, req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let html = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let h = r.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::CACHE_CONTROL, "no-store");
    if !html {
        set(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        );
    }
    if tls {
        set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_parsed() {
        assert!(cors("").unwrap().is_none());
        assert!(cors("*").unwrap().is_some());
        assert!(
            cors("https://a.example, https://b.example/")
                .unwrap()
                .is_some()
        );
        assert!(cors("bad\norigin").is_err());
    }
}
