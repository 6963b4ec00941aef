//! The comet's TLS listeners: wss (`IMCLOUD_COMET_WSS_ADDR`) and the goim TCP listener with
//! `IMCLOUD_COMET_TCP_TLS=true`. The TLS handshake runs in the connection's task, bounded by the
//! handshake timeout, with the public certificate current at that moment (`tls::PublicTls` reloads it);
//! the decrypted stream then goes to the same websocket or TCP handler as a plaintext connection.

use std::net::SocketAddr;
use std::sync::Arc;

use imcloud_common::tls::PublicTls;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::comet::Comet;
use crate::{server_tcp, server_websocket};

async fn handshake(
    comet: &Comet,
    tls: &PublicTls,
    stream: TcpStream,
    peer: SocketAddr,
    listener: &'static str,
) -> Option<TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    match tokio::time::timeout(comet.settings.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            metrics::counter!("imcloud_tls_handshake_failures_total", "listener" => listener)
                .increment(1);
            tracing::debug!(%peer, "{listener}: TLS handshake failed: {e}");
            None
        }
        Err(_) => {
            metrics::counter!("imcloud_tls_handshake_failures_total", "listener" => listener)
                .increment(1);
            tracing::debug!(%peer, "{listener}: TLS handshake timed out");
            None
        }
    }
}

/// Serves one wss connection: TLS, then the websocket handler.
pub async fn handle_wss(
    comet: Arc<Comet>,
    tls: Arc<PublicTls>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    if let Some(s) = handshake(&comet, &tls, stream, peer, "wss").await {
        server_websocket::handle(comet, s, peer, shutdown).await;
    }
}

/// Serves one goim TCP connection over TLS.
pub async fn handle_tcp(
    comet: Arc<Comet>,
    tls: Arc<PublicTls>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    if let Some(s) = handshake(&comet, &tls, stream, peer, "tcp+tls").await {
        server_tcp::handle(comet, s, peer, shutdown).await;
    }
}
