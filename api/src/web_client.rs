//! The web IM client (`web/`), served at `/` from files embedded in the binary at compile time
//! (`web/dist`, the output of `npm run build`, which `scripts/lib.sh` `build_web` runs before cargo).
//!
//! Invariants:
//! - One route per embedded file (`/` is `index.html`), so every other path keeps its own handler
//!   (`/goim/*`, `/v1/*`, `/metrics`, `/healthz`) and unknown paths still get the JSON 404.
//! - Vite's hashed files under `/assets/` are cached for a year (`immutable`); everything else is
//!   revalidated (`no-cache` with a strong ETag, answered 304 when it matches).
//! - A binary built without `web/dist` serves, at `/`, an explicit 503 page saying the client was not
//!   built and how to build it: never a blank page. `api/build.rs` also warns at compile time.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::{Embed, EmbeddedFile};

/// The built client. A missing folder embeds nothing (then `/` explains how to build it).
#[derive(Embed)]
#[folder = "../web/dist"]
#[allow_missing = true]
struct WebDist;

/// The page every HTML response of the client carries as its Content-Security-Policy. The websocket goes
/// to a comet on another port or host, and image messages may be any http(s) URL.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: http: https:; \
connect-src 'self' ws: wss: http: https:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'";

const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imcloud: web client not built</title></head>
<body><main><h1>The web client was not built into this binary</h1>
<p>This imcloud binary was compiled without <code>web/dist</code>. The JSON API (<code>/v1</code>), the push
API (<code>/goim</code>) and the websocket work as usual.</p>
<p>To include the client, build it and then the binary: <code>scripts/imcloud standalone</code> does both, or
run <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code> and then <code>cargo build</code>.</p>
</main></body></html>
"#;

/// A stamp of `web/dist` when this crate was compiled (from `build.rs`); reading it here is what makes a
/// new build of the client recompile this crate.
const DIST_STAMP: &str = env!("IMCLOUD_WEB_DIST_STAMP");

/// Whether this binary carries the client.
pub fn is_built() -> bool {
    WebDist::get("index.html").is_some()
}

/// The routes of the client: `/` and one per embedded file.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    if !is_built() {
        tracing::debug!(stamp = DIST_STAMP, "web client not built into this binary");
        return Router::new().route("/", get(not_built));
    }
    tracing::debug!(
        stamp = DIST_STAMP,
        files = WebDist::iter().count(),
        "web client embedded"
    );
    let mut router = Router::new().route("/", get(index));
    for path in WebDist::iter() {
        // axum's path syntax gives `{` and `}` a meaning; Vite never writes them in a file name.
        if path.contains(['{', '}']) {
            tracing::warn!(%path, "web client file not served: its name holds a brace");
            continue;
        }
        router = router.route(&format!("/{path}"), get(asset));
    }
    router
}

async fn not_built() -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, NOT_BUILT).into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    serve(uri.path().trim_start_matches('/'), &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = WebDist::get(path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = etag_of(&file);
    let immutable = path.starts_with("assets/");
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, file.data.into_owned()).into_response()
    };
    let h = response.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    let mime = content_type(file.metadata.mimetype());
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if mime.starts_with("text/html") {
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    }
    response
}

/// A strong ETag from the file's SHA-256 (computed at compile time).
fn etag_of(file: &EmbeddedFile) -> String {
    let hash = file.metadata.sha256_hash();
    let mut s = String::with_capacity(2 + 2 * 16);
    s.push('"');
    for b in &hash[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('"');
    s
}

/// The MIME type with a UTF-8 charset for text.
fn content_type(mime: &str) -> String {
    let texty = mime.starts_with("text/")
        || mime == "application/javascript"
        || mime == "application/json"
        || mime == "image/svg+xml"
        || mime == "application/manifest+json";
    if texty && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get_with(path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(e) = etag {
            req = req.header(IF_NONE_MATCH, e);
        }
        let req = req.body(Body::empty()).expect("request");
        routes::<()>().oneshot(req).await.expect("infallible")
    }

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn serves_the_client_with_types_and_caching_or_says_it_was_not_built() {
        let index = get_with("/", None).await;
        if !is_built() {
            assert_eq!(index.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(header(&index, "content-type").starts_with("text/html"));
            return;
        }
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&index, "cache-control"), "no-cache");
        assert!(header(&index, "content-security-policy").contains("default-src 'self'"));
        let etag = header(&index, "etag").to_string();
        assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
        let again = get_with("/index.html", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

        let js = WebDist::iter()
            .find(|p| p.starts_with("assets/") && p.ends_with(".js"))
            .expect("a script under assets/");
        let asset = get_with(&format!("/{js}"), None).await;
        assert_eq!(asset.status(), StatusCode::OK);
        assert!(header(&asset, "content-type").contains("javascript"));
        assert_eq!(
            header(&asset, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(
            get_with("/assets/nope.js", None).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn text_types_get_a_charset() {
        assert_eq!(content_type("text/html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("application/javascript"),
            "application/javascript; charset=utf-8"
        );
        assert_eq!(content_type("image/png"), "image/png");
    }
}
