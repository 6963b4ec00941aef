//! Websocket plumbing shared by the NATS client, the bare client and the bare server: connecting from a
//! chosen local address (to spread many connections over 127.0.0.x) and the buffer sizes.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub type WsStream = WebSocketStream<TcpStream>;
pub type WsError = tungstenite::Error;

/// Largest message either side accepts.
const MAX_MESSAGE: usize = 1024 * 1024;

/// Small read buffers (tens of thousands of sockets share one process); writes are buffered up to 16 KiB
/// until flushed (`send` flushes at once, `feed` + `flush` batches).
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// A websocket client connection to `url` (whose host is `server`), from `source`.
pub async fn connect(url: &str, server: SocketAddr, source: IpAddr) -> Result<WsStream, WsError> {
    let stream = imcloud::client::tcp_from(server, source).await?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config())).await?;
    Ok(ws)
}
