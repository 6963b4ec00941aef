//! The websocket listener (`ws://host:3102/sub`): one goim frame per binary message.
//!
//! The handshake ([`crate::ws_handshake`]) and the framing ([`crate::ws_codec`]) are imcloud's own, so
//! that a push is framed once for every recipient ([`OutFrame`]) and written with vectored writes straight
//! from its shared bytes ([`WriteQueue`]). An idle connection holds no read or write buffer.
//!
//! Generic over the byte stream, so the same code serves plain TCP and TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use imcloud_proto::{Frame, FrameError, op};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::comet::Comet;
use crate::connection;
use crate::out_frame::OutFrame;
use crate::socket_io::Progress;
use crate::socket_io::{WriteQueue, poll_read_while_writing};
use crate::transport::{CloseReason, Incoming, ReadError, Transport};
use crate::ws_codec::{self, WsError, WsEvent, WsReader, close_code};
use crate::ws_handshake::{self, HandshakeError};

/// The websocket path clients connect to.
pub const PATH: &str = "/sub";

/// Serves one accepted connection.
pub async fn handle<S>(
    comet: Arc<Comet>,
    mut stream: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Instant::now() + comet.settings.handshake_timeout;
    // Boxed: the handshake's buffers and state must not size the long-lived connection task.
    let upgraded =
        match timeout_at(deadline, Box::pin(ws_handshake::accept(&mut stream, PATH))).await {
            Ok(Ok(u)) => u,
            Ok(Err(HandshakeError::Refused { status, detail, .. })) => {
                tracing::debug!(%peer, status, "websocket upgrade refused: {detail}");
                metrics::counter!("imcloud_comet_handshake_refused_total").increment(1);
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, "websocket upgrade failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "websocket upgrade timed out");
                return;
            }
        };
    let max_body = comet.settings.max_client_body;
    let mut t = WsTransport {
        stream,
        reader: WsReader::new(
            upgraded.leftover,
            max_body + imcloud_proto::frame::HEADER_LEN,
        ),
        out: WriteQueue::default(),
        max_body,
        peer_closed: false,
    };
    connection::serve(comet, &mut t, peer.ip(), deadline, shutdown).await;
}

pub struct WsTransport<S> {
    stream: S,
    reader: WsReader,
    out: WriteQueue,
    max_body: usize,
    /// The client sent a close frame (answered); nothing more will be read.
    peer_closed: bool,
}

pub(crate) fn frame_error(e: FrameError) -> ReadError {
    match e {
        FrameError::TooLarge { .. } => ReadError::Close(CloseReason::TooBig(e.to_string())),
        _ => ReadError::Close(CloseReason::Protocol(e.to_string())),
    }
}

fn ws_error(e: WsError) -> ReadError {
    match e {
        WsError::TooBig { .. } => ReadError::Close(CloseReason::TooBig(e.to_string())),
        WsError::InvalidUtf8 => ReadError::Close(CloseReason::InvalidPayload(e.to_string())),
        WsError::Protocol(_) => ReadError::Close(CloseReason::Protocol(e.to_string())),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> WsTransport<S> {
    /// The next frame, or `Written` once what was fed has been written ([`Transport::next`]). Every state
    /// lives in `self` (the reader's buffer, the write queue), so a dropped poll loses nothing.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Incoming, ReadError>> {
        loop {
            if self.peer_closed {
                // Our answer to its close frame may still be on its way out (errors: it is gone anyway).
                if self.out.poll_flush(&mut self.stream, cx).is_pending() {
                    return Poll::Pending;
                }
                return Poll::Ready(Err(ReadError::Gone));
            }
            match self.reader.next_event().map_err(ws_error)? {
                Some(WsEvent::Binary(b)) => {
                    return Poll::Ready(
                        Frame::decode(&b, self.max_body)
                            .map(Incoming::Frame)
                            .map_err(frame_error),
                    );
                }
                Some(WsEvent::Text(_)) => {
                    return Poll::Ready(Err(ReadError::Close(CloseReason::Unsupported(
                        "text messages are not supported: send goim frames as binary messages"
                            .into(),
                    ))));
                }
                Some(WsEvent::Ping(payload)) => {
                    // Written by the next wait below (or the next flush), in order with the rest.
                    self.out
                        .push(ws_codec::control_frame(ws_codec::OPCODE_PONG, &payload));
                }
                Some(WsEvent::Pong) => {}
                Some(WsEvent::Close(code)) => {
                    // Answer the closing handshake with the client's own code (RFC 6455 §5.5.1).
                    let code = code.unwrap_or(close_code::NORMAL);
                    self.out.push(ws_codec::close_frame(code, ""));
                    self.peer_closed = true;
                }
                None => {
                    let reader = &mut self.reader;
                    let mut read = |s: &mut S, cx: &mut Context<'_>| reader.poll_fill(s, cx);
                    match poll_read_while_writing(&mut self.stream, &mut self.out, &mut read, cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(Progress::Written)) => {
                            return Poll::Ready(Ok(Incoming::Written));
                        }
                        Poll::Ready(Ok(Progress::Read(n))) if n > 0 => {}
                        Poll::Ready(_) => return Poll::Ready(Err(ReadError::Gone)),
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for WsTransport<S> {
    fn next(&mut self) -> impl Future<Output = Result<Incoming, ReadError>> + Send {
        // A poll function, not an `async fn`: this future sits in every idle connection's task, and
        // `poll_fn` over `&mut self` is 8 bytes where the `async fn` was 168.
        std::future::poll_fn(move |cx| self.poll_next(cx))
    }

    fn feed(&mut self, frame: &OutFrame) {
        self.out.push(frame.websocket().clone());
    }

    fn unwritten(&self) -> usize {
        self.out.unwritten()
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush(&mut self.stream).await
    }

    async fn close(&mut self, reason: &CloseReason) {
        let text = reason.text();
        let code = match reason {
            CloseReason::Protocol(_) => close_code::PROTOCOL,
            CloseReason::TooBig(_) => close_code::TOO_BIG,
            CloseReason::InvalidPayload(_) => close_code::INVALID_PAYLOAD,
            CloseReason::Unsupported(_) => close_code::UNSUPPORTED_DATA,
            CloseReason::Shutdown => close_code::GOING_AWAY,
            CloseReason::SlowConsumer => close_code::TRY_AGAIN,
            _ => close_code::POLICY,
        };
        let goodbye = Frame::new(
            op::DISCONNECT_REPLY,
            0,
            Bytes::from(text.clone().into_bytes()),
        );
        if !self.peer_closed {
            self.out.push(OutFrame::frame(&goodbye).websocket().clone());
            self.out.push(ws_codec::close_frame(code, &text));
        }
        let _ = timeout(Duration::from_secs(1), async {
            let _ = self.out.flush(&mut self.stream).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}
