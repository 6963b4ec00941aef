//! The server side of the websocket opening handshake (RFC 6455 §4.2): reads one HTTP/1.1 request of at
//! most [`MAX_REQUEST`] bytes, checks it, and answers `101 Switching Protocols`, or an HTTP error that
//! says what was wrong (400, 404, 405, 426, 431) before the connection closes.
//!
//! Bytes the client sent after its request (a client may send its first frame without waiting for the
//! 101) are returned, to be read as websocket frames.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Longest handshake request accepted.
pub const MAX_REQUEST: usize = 8192;
/// Most request headers accepted.
const MAX_HEADERS: usize = 48;

/// Why a handshake failed; every variant but `Io` has been answered with an HTTP error.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{status} {reason}: {detail}")]
    Refused {
        status: u16,
        reason: &'static str,
        detail: String,
    },
    #[error("connection closed during the handshake")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What the client's request told us beyond the upgrade itself.
#[derive(Debug)]
pub struct Upgraded {
    /// Bytes received after the request: the start of the websocket stream.
    pub leftover: BytesMut,
}

/// Reads the upgrade request for `path` and answers it.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> Result<Upgraded, HandshakeError> {
    let mut buf = BytesMut::with_capacity(1024);
    let (end, accept_key) = loop {
        if buf.len() >= MAX_REQUEST {
            return refuse(
                stream,
                431,
                "Request Header Fields Too Large",
                format!("the handshake request exceeds {MAX_REQUEST} bytes"),
            )
            .await;
        }
        let room = MAX_REQUEST - buf.len();
        let n = (&mut *stream).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(end)) => match check(&req, path) {
                Ok(key) => break (end, key),
                Err((status, reason, detail)) => {
                    return refuse(stream, status, reason, detail).await;
                }
            },
            Err(httparse::Error::TooManyHeaders) => {
                return refuse(
                    stream,
                    431,
                    "Request Header Fields Too Large",
                    format!("more than {MAX_HEADERS} headers"),
                )
                .await;
            }
            Err(e) => {
                return refuse(
                    stream,
                    400,
                    "Bad Request",
                    format!("malformed HTTP request: {e}"),
                )
                .await;
            }
        }
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept_key}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await?;
    // A copy, so that the request's buffer is freed rather than kept alive by a slice of it.
    let leftover = if buf.len() > end {
        BytesMut::from(&buf[end..])
    } else {
        BytesMut::new()
    };
    Ok(Upgraded { leftover })
}

type Refusal = (u16, &'static str, String);

/// Checks an upgrade request; returns the `Sec-WebSocket-Accept` value.
fn check(req: &httparse::Request<'_, '_>, path: &str) -> Result<String, Refusal> {
    if req.method != Some("GET") {
        return Err((
            405,
            "Method Not Allowed",
            "the websocket handshake is a GET".into(),
        ));
    }
    let target = req.path.unwrap_or("");
    let req_path = target.split('?').next().unwrap_or("");
    if req_path != path {
        return Err((
            404,
            "Not Found",
            format!("not found: the websocket endpoint is {path}"),
        ));
    }
    if req.version != Some(1) {
        return Err((
            400,
            "Bad Request",
            "the websocket handshake needs HTTP/1.1".into(),
        ));
    }
    let header = |name: &'static str| header_values(req, name);
    let has_token = |name: &'static str, token: &str| {
        header(name).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") {
        return Err((
            426,
            "Upgrade Required",
            "this endpoint speaks websocket only (Upgrade: websocket)".into(),
        ));
    }
    if !has_token("connection", "upgrade") {
        return Err((400, "Bad Request", "missing Connection: Upgrade".into()));
    }
    if !header("sec-websocket-version").any(|v| v.trim() == "13") {
        return Err((
            426,
            "Upgrade Required",
            "unsupported Sec-WebSocket-Version (this server speaks 13)".into(),
        ));
    }
    let mut keys = header("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k.trim(),
        _ => {
            return Err((
                400,
                "Bad Request",
                "missing or repeated Sec-WebSocket-Key".into(),
            ));
        }
    };
    let decoded = data_encoding::BASE64.decode(key.as_bytes());
    if !matches!(decoded, Ok(ref k) if k.len() == 16) {
        return Err((
            400,
            "Bad Request",
            "Sec-WebSocket-Key must be 16 bytes in base64".into(),
        ));
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// The values of every header called `name` (case-insensitive); a value that is not UTF-8 reads as "".
fn header_values<'a>(
    req: &'a httparse::Request<'_, '_>,
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    req.headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| std::str::from_utf8(h.value).unwrap_or(""))
}

async fn refuse<S: AsyncWrite + Unpin, T>(
    stream: &mut S,
    status: u16,
    reason: &'static str,
    detail: String,
) -> Result<T, HandshakeError> {
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        detail.len() + 1
    );
    if status == 426 {
        response.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    }
    response.push_str("\r\n");
    response.push_str(&detail);
    response.push('\n');
    // Best effort: the client may already be gone.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    Err(HandshakeError::Refused {
        status,
        reason,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    const GOOD: &str = "GET /sub?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    async fn run(request: &[u8]) -> (Result<Upgraded, HandshakeError>, String) {
        let (mut client, mut server) = duplex(64 * 1024);
        client.write_all(request).await.unwrap();
        // The client sends nothing more: a request cut short reads as end of stream.
        client.shutdown().await.unwrap();
        let result = accept(&mut server, "/sub").await;
        drop(server);
        let mut answer = String::new();
        let _ = client.read_to_string(&mut answer).await;
        (result, answer)
    }

    #[tokio::test]
    async fn a_good_request_is_upgraded_and_keeps_what_followed_it() {
        let mut req = GOOD.as_bytes().to_vec();
        req.extend_from_slice(b"\x82\x80abcd");
        let (r, answer) = run(&req).await;
        let up = r.unwrap();
        // RFC 6455's own example key and answer.
        assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert_eq!(&up.leftover[..], b"\x82\x80abcd");
    }

    #[tokio::test]
    async fn bad_requests_get_an_http_error_that_says_why() {
        let cases = [
            (GOOD.replace("GET", "POST"), 405),
            (GOOD.replace("/sub?x=1", "/other"), 404),
            (GOOD.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (GOOD.replace("Upgrade: websocket\r\n", ""), 426),
            (GOOD.replace("keep-alive, Upgrade", "keep-alive"), 400),
            (GOOD.replace("Version: 13", "Version: 8"), 426),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), 400),
            ("GARBAGE\0\r\n\r\n".to_string(), 400),
            (
                format!(
                    "GET /sub HTTP/1.1\r\nX: {}\r\n\r\n",
                    "a".repeat(MAX_REQUEST)
                ),
                431,
            ),
        ];
        for (req, status) in cases {
            let (r, answer) = run(req.as_bytes()).await;
            match r {
                Err(HandshakeError::Refused { status: s, .. }) => {
                    assert_eq!(s, status, "{req:.60}")
                }
                other => panic!("{req:.60}: {other:?}"),
            }
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{answer}"
            );
        }
    }

    #[tokio::test]
    async fn a_client_that_leaves_mid_request_is_just_gone() {
        let (r, _) = run(b"GET /sub HTTP/1.1\r\nHost").await;
        assert!(matches!(r, Err(HandshakeError::Closed)));
    }
}
