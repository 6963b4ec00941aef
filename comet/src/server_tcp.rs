//! goim's TCP listener: frames back to back on a byte stream. Op 9 batches are written as their inner
//! frames, without the outer header (as goim does). Like the websocket transport, an idle connection
//! holds no read or write buffer, and pushes are written straight from their shared bytes.
//!
//! Generic over the byte stream, so the same code serves plain TCP and TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use imcloud_proto::{Frame, op};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::comet::Comet;
use crate::connection;
use crate::out_frame::OutFrame;
use crate::server_websocket::frame_error;
use crate::socket_io::Progress;
use crate::socket_io::{WriteQueue, poll_read_chunk, read_while_writing};
use crate::transport::{CloseReason, Incoming, ReadError, Transport};

/// Serves one accepted connection.
pub async fn handle<S>(comet: Arc<Comet>, stream: S, peer: SocketAddr, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = Instant::now() + comet.settings.handshake_timeout;
    let mut t = TcpTransport {
        stream,
        rbuf: BytesMut::new(),
        out: WriteQueue::default(),
        max_body: comet.settings.max_client_body,
    };
    connection::serve(comet, &mut t, peer.ip(), deadline, shutdown).await;
}

pub struct TcpTransport<S> {
    stream: S,
    rbuf: BytesMut,
    out: WriteQueue,
    max_body: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for TcpTransport<S> {
    async fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            if let Some(f) =
                Frame::decode_stream(&mut self.rbuf, self.max_body).map_err(frame_error)?
            {
                if self.rbuf.is_empty() {
                    // Nothing half-read: give the memory back (the frame keeps what it needs).
                    self.rbuf = BytesMut::new();
                }
                return Ok(Incoming::Frame(f));
            }
            let rbuf = &mut self.rbuf;
            let got = read_while_writing(&mut self.stream, &mut self.out, |s, cx| {
                poll_read_chunk(s, rbuf, cx)
            })
            .await;
            match got {
                Ok(Progress::Written) => return Ok(Incoming::Written),
                Ok(Progress::Read(n)) if n > 0 => {}
                _ => return Err(ReadError::Gone),
            }
        }
    }

    fn feed(&mut self, frame: &OutFrame) {
        self.out.push(frame.goim_stream());
    }

    fn unwritten(&self) -> usize {
        self.out.unwritten()
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush(&mut self.stream).await
    }

    async fn close(&mut self, reason: &CloseReason) {
        let goodbye = Frame::new(
            op::DISCONNECT_REPLY,
            0,
            Bytes::from(reason.text().into_bytes()),
        );
        self.feed(&OutFrame::frame(&goodbye));
        let _ = timeout(Duration::from_secs(1), async {
            let _ = self.out.flush(&mut self.stream).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}
