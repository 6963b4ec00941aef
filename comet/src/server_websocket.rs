//! The websocket listener (`ws://host:3102/sub`): one goim frame per binary message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use imcloud_proto::{Frame, FrameError, op};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::comet::Comet;
use crate::connection;
use crate::transport::{CloseReason, ReadError, Transport};

/// The websocket path clients connect to.
pub const PATH: &str = "/sub";
/// Initial read buffer per connection (tungstenite's default is 128 KiB); it grows for larger frames.
const READ_BUFFER: usize = 256;

pub fn ws_config(max_body: usize) -> WebSocketConfig {
    let max_frame = max_body + imcloud_proto::frame::HEADER_LEN;
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// Serves one accepted connection (plain TCP, or the TLS stream of a wss connection).
pub async fn handle<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    comet: Arc<Comet>,
    stream: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let deadline = Instant::now() + comet.settings.handshake_timeout;
    let max_body = comet.settings.max_client_body;
    // The error type is tungstenite's callback contract, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == PATH {
            Ok(resp)
        } else {
            let mut err =
                ErrorResponse::new(Some(format!("not found: websocket endpoint is {PATH}")));
            *err.status_mut() = StatusCode::NOT_FOUND;
            Err(err)
        }
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        check_path,
        Some(ws_config(max_body)),
    );
    let ws = match timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, "websocket upgrade failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "websocket upgrade timed out");
            return;
        }
    };
    connection::serve(
        comet,
        WsTransport { ws, max_body },
        peer.ip(),
        deadline,
        shutdown,
    )
    .await;
}

pub struct WsTransport<S> {
    ws: WebSocketStream<S>,
    max_body: usize,
}

pub(crate) fn frame_error(e: FrameError) -> ReadError {
    match e {
        FrameError::TooLarge { .. } => ReadError::Close(CloseReason::TooBig(e.to_string())),
        _ => ReadError::Close(CloseReason::Protocol(e.to_string())),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for WsTransport<S> {
    async fn read_frame(&mut self) -> Result<Frame, ReadError> {
        loop {
            let msg = match self.ws.next().await {
                None => return Err(ReadError::Gone),
                Some(Ok(m)) => m,
                Some(Err(WsError::Capacity(e))) => {
                    return Err(ReadError::Close(CloseReason::TooBig(e.to_string())));
                }
                // A peer that drops the TCP connection without a close frame has simply gone.
                Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                    return Err(ReadError::Gone);
                }
                Some(Err(WsError::Protocol(e))) => {
                    return Err(ReadError::Close(CloseReason::Protocol(e.to_string())));
                }
                Some(Err(_)) => return Err(ReadError::Gone),
            };
            match msg {
                Message::Binary(b) => {
                    return Frame::decode(&b, self.max_body).map_err(frame_error);
                }
                Message::Text(_) => {
                    return Err(ReadError::Close(CloseReason::Protocol(
                        "text messages are not supported: send goim frames as binary messages"
                            .into(),
                    )));
                }
                Message::Close(_) => return Err(ReadError::Gone),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    async fn feed(&mut self, frame: Bytes) -> std::io::Result<()> {
        self.ws
            .feed(Message::Binary(frame))
            .await
            .map_err(std::io::Error::other)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.ws.flush().await.map_err(std::io::Error::other)
    }

    async fn close(&mut self, reason: &CloseReason) {
        let text = reason.text();
        let code = match reason {
            CloseReason::Protocol(_) => CloseCode::Protocol,
            CloseReason::TooBig(_) => CloseCode::Size,
            CloseReason::Shutdown => CloseCode::Away,
            CloseReason::SlowConsumer => CloseCode::Again,
            _ => CloseCode::Policy,
        };
        let goodbye = Frame::new(
            op::DISCONNECT_REPLY,
            0,
            Bytes::from(text.clone().into_bytes()),
        )
        .encode();
        // A close reason is at most 123 bytes in a websocket close frame.
        let mut short = text;
        while short.len() > 123 {
            short.pop();
        }
        let _ = timeout(Duration::from_secs(1), async {
            let _ = self.ws.feed(Message::Binary(goodbye)).await;
            let _ = self
                .ws
                .close(Some(CloseFrame {
                    code,
                    reason: short.into(),
                }))
                .await;
        })
        .await;
    }
}
