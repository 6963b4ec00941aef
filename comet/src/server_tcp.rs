//! goim's TCP listener: frames back to back on a byte stream. Op 9 batches are written as their inner
//! frames, without the outer header (as goim does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use imcloud_proto::frame::HEADER_LEN;
use imcloud_proto::{Frame, op};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::comet::Comet;
use crate::connection;
use crate::server_websocket::frame_error;
use crate::transport::{CloseReason, ReadError, Transport};

/// Bytes reserved per read.
const READ_CHUNK: usize = 512;

/// Serves one accepted connection (plain TCP, or a TLS stream).
pub async fn handle<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    comet: Arc<Comet>,
    stream: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let deadline = Instant::now() + comet.settings.handshake_timeout;
    let t = TcpTransport {
        stream,
        rbuf: BytesMut::new(),
        pending: Vec::new(),
        max_body: comet.settings.max_client_body,
    };
    connection::serve(comet, t, peer.ip(), deadline, shutdown).await;
}

pub struct TcpTransport<S> {
    stream: S,
    rbuf: BytesMut,
    pending: Vec<Bytes>,
    max_body: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for TcpTransport<S> {
    async fn read_frame(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(f) =
                Frame::decode_stream(&mut self.rbuf, self.max_body).map_err(frame_error)?
            {
                return Ok(f);
            }
            self.rbuf.reserve(READ_CHUNK);
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return Err(ReadError::Gone),
                Ok(_) => {}
            }
        }
    }

    async fn feed(&mut self, frame: Bytes) -> std::io::Result<()> {
        let is_raw = frame.len() >= HEADER_LEN && frame[8..12] == op::RAW.to_be_bytes();
        self.pending.push(if is_raw {
            frame.slice(HEADER_LEN..)
        } else {
            frame
        });
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if pending.len() == 1 {
            self.stream.write_all(&pending[0]).await?;
        } else if !pending.is_empty() {
            let mut all = BytesMut::with_capacity(pending.iter().map(Bytes::len).sum());
            pending.iter().for_each(|b| all.extend_from_slice(b));
            self.stream.write_all(&all).await?;
        }
        self.stream.flush().await
    }

    async fn close(&mut self, reason: &CloseReason) {
        let goodbye = Frame::new(
            op::DISCONNECT_REPLY,
            0,
            Bytes::from(reason.text().into_bytes()),
        )
        .encode();
        let _ = timeout(Duration::from_secs(1), async {
            let _ = self.feed(goodbye).await;
            let _ = self.flush().await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}
