//! The floor: a websocket broadcast server with nothing but tokio-tungstenite. Connections on `/sub` get
//! every binary message that any connection on `/pub` sends; no protocol, no auth, no rooms. What imcloud
//! does on top of this (frames, auth, rooms, the push pipeline) is measured against it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use crate::ws;

/// Messages a slow subscriber may fall behind before it skips some (and they count as lost).
const BACKLOG: usize = 1 << 16;
/// Most messages written before one flush.
const WRITE_BATCH: usize = 64;

pub async fn serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    println!("bare broadcast server on ws://{addr}/sub (publish on /pub)");
    let (tx, _) = broadcast::channel::<Bytes>(BACKLOG);
    let skipped = Arc::new(AtomicU64::new(0));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (tx, skipped) = (tx.clone(), skipped.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, tx, skipped).await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!(
        "skipped by slow subscribers: {}",
        skipped.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn connection(
    stream: TcpStream,
    tx: broadcast::Sender<Bytes>,
    skipped: Arc<AtomicU64>,
) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    // The error type is tungstenite's callback contract, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let remember_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        path = req.uri().path().to_string();
        Ok(resp)
    };
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, remember_path, Some(ws::config()))
            .await?;
    if path == "/pub" {
        while let Some(msg) = ws.next().await {
            if let Message::Binary(b) = msg? {
                // No subscribers is not an error for a publisher.
                let _ = tx.send(b);
            }
        }
        return Ok(());
    }
    let mut rx = tx.subscribe();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(b) => {
                    // Everything already queued goes out with one flush (one write syscall), as imcloud
                    // batches: the floor should be the best this library can do.
                    ws.feed(Message::Binary(b)).await?;
                    for _ in 1..WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(b) => ws.feed(Message::Binary(b)).await?,
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                skipped.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(_) => break,
                        }
                    }
                    ws.flush().await?;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    skipped.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            },
        }
    }
}
