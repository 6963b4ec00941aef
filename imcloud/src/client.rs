//! A goim client over websocket (ws:// or wss://) or TCP (plain or TLS): authenticate, heartbeat, send
//! ops, receive frames (op 9 batches split into their inner frames). Used by `imcloud client sub`, the load
//! generator and the tests. TLS trusts the CA file given, else the system's roots.
//!
//! `GoimClient` (connect over ws, wss, TCP or TLS TCP; `auth_body`, send, receive; the close reason of op 6
//! and the hint of op 22), `reconnect_delay()` (a hint's delay plus a random jitter of up to a quarter of
//! it, or up to 50 ms when that is more), and `sign_token()`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use imcloud_proto::frame::split_raw_batch;
use imcloud_proto::{Frame, ReconnectHint, op};
use serde_json::json;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use imcloud_common::tls::{MaybeTls, TlsError, client_config};
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client's connection: plain TCP or TLS.
pub type ClientStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// Largest frame the client accepts from the server.
const MAX_SERVER_FRAME: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from server: {0}")]
    Frame(#[from] imcloud_proto::FrameError),
    /// The server closed the connection; the text is its reason (op 6 body or close frame), if any.
    #[error("closed by server: {0}")]
    Closed(String),
    #[error("timed out")]
    Timeout,
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    #[error("TLS: {0}")]
    Tls(String),
}

impl From<TlsError> for ClientError {
    fn from(e: TlsError) -> ClientError {
        ClientError::Tls(e.to_string())
    }
}

/// The TLS settings of a client: trust the CA certificates in `ca_file`, or the system's roots.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    pub fn new(ca_file: Option<&str>, alpn: &[&[u8]]) -> Result<ClientTls, ClientError> {
        let system = || {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            roots
        };
        Ok(ClientTls {
            config: Arc::new(client_config(ca_file, system, alpn)?),
        })
    }

    /// The TLS handshake over `tcp` with server `host` (a DNS name or an IP address).
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> Result<ClientStream, ClientError> {
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|e| ClientError::Tls(format!("bad server name {host:?}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(MaybeTls::Tls(Box::new(tls)))
    }
}

enum Conn {
    Ws(Box<WebSocketStream<ClientStream>>),
    Tcp { stream: ClientStream, buf: BytesMut },
}

pub struct GoimClient {
    conn: Conn,
    /// Frames received but not yet returned (the rest of an op 9 batch).
    inbox: VecDeque<Frame>,
    /// The reason from an op 6 frame, if the server sent one.
    close_reason: Option<String>,
    /// The reconnect hint (op 22) of a draining comet, if it sent one.
    hint: Option<ReconnectHint>,
    seq: i32,
}

/// Small buffers, so that thousands of test clients fit beside the server.
fn client_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_SERVER_FRAME))
}

/// The op 7 body: goim's fields plus the token.
pub fn auth_body(mid: i64, key: &str, room: &str, accepts: &[i32], token: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "mid": mid, "key": key, "room_id": room, "platform": "web", "accepts": accepts, "token": token
    }))
    .unwrap_or_default()
}

impl GoimClient {
    /// Connects to `ws://host:port/sub`, or `wss://` trusting the system's roots.
    pub async fn connect_ws(url: &str) -> Result<GoimClient, ClientError> {
        GoimClient::connect_ws_tls(url, None).await
    }

    /// Connects to `ws://host:port/sub`, or `wss://host:port/sub` with `tls` (the system's roots when
    /// `None`).
    pub async fn connect_ws_tls(
        url: &str,
        tls: Option<&ClientTls>,
    ) -> Result<GoimClient, ClientError> {
        let request = url.into_client_request()?;
        let uri = request.uri();
        let secure = uri.scheme_str() == Some("wss");
        let host = uri.host().unwrap_or("127.0.0.1").to_string();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
        tcp.set_nodelay(true)?;
        let stream = if secure {
            let system;
            let tls = match tls {
                Some(t) => t,
                None => {
                    system = ClientTls::new(None, &[b"http/1.1"])?;
                    &system
                }
            };
            tls.connect(&host, tcp).await?
        } else {
            MaybeTls::Plain(tcp)
        };
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(client_ws_config()))
                .await?;
        Ok(GoimClient::new(Conn::Ws(Box::new(ws))))
    }

    /// Connects to `ws://host:port/sub` from a given local address (load tests spread over 127.0.0.x).
    pub async fn connect_ws_from(
        url: &str,
        server: SocketAddr,
        source: IpAddr,
    ) -> Result<GoimClient, ClientError> {
        GoimClient::connect_ws_from_tls(url, server, source, None).await
    }

    /// Like [`GoimClient::connect_ws_from`]; a `wss://` URL uses `tls` (the system's roots when `None`).
    pub async fn connect_ws_from_tls(
        url: &str,
        server: SocketAddr,
        source: IpAddr,
        tls: Option<&ClientTls>,
    ) -> Result<GoimClient, ClientError> {
        let request = url.into_client_request()?;
        let tcp = tcp_from(server, source).await?;
        let stream = if request.uri().scheme_str() == Some("wss") {
            let host = request.uri().host().unwrap_or("127.0.0.1").to_string();
            match tls {
                Some(t) => t.connect(&host, tcp).await?,
                None => {
                    ClientTls::new(None, &[b"http/1.1"])?
                        .connect(&host, tcp)
                        .await?
                }
            }
        } else {
            MaybeTls::Plain(tcp)
        };
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(client_ws_config()))
                .await?;
        Ok(GoimClient::new(Conn::Ws(Box::new(ws))))
    }

    /// Connects to goim's TCP port.
    pub async fn connect_tcp(addr: &str) -> Result<GoimClient, ClientError> {
        GoimClient::connect_tcp_tls(addr, None).await
    }

    /// Connects to goim's TCP port (`host:port`), over TLS when `tls` is given.
    pub async fn connect_tcp_tls(
        addr: &str,
        tls: Option<&ClientTls>,
    ) -> Result<GoimClient, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let stream = match tls {
            Some(t) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                t.connect(host, stream).await?
            }
            None => MaybeTls::Plain(stream),
        };
        Ok(GoimClient::new(Conn::Tcp {
            stream,
            buf: BytesMut::new(),
        }))
    }

    fn new(conn: Conn) -> GoimClient {
        GoimClient {
            conn,
            inbox: VecDeque::new(),
            close_reason: None,
            hint: None,
            seq: 0,
        }
    }

    /// Sends raw bytes as one message (websocket) or onto the stream (TCP) — for testing bad input.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        match &mut self.conn {
            Conn::Ws(ws) => ws.send(Message::Binary(bytes.into())).await?,
            Conn::Tcp { stream, .. } => stream.write_all(&bytes).await?,
        }
        Ok(())
    }

    /// Sends a frame with the next seq; returns the seq used.
    pub async fn send(&mut self, op: i32, body: impl Into<Bytes>) -> Result<i32, ClientError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.send_raw(Frame::new(op, seq, body).encode().to_vec())
            .await?;
        Ok(seq)
    }

    /// Authenticates; returns the op 8 frame, or the server's reason for refusing.
    pub async fn auth(&mut self, body: Vec<u8>, wait: Duration) -> Result<Frame, ClientError> {
        self.send(op::AUTH, body).await?;
        let f = self.recv_timeout(wait).await?;
        if f.op == op::AUTH_REPLY {
            Ok(f)
        } else {
            Err(ClientError::Unexpected(format!(
                "op {} instead of op 8",
                f.op
            )))
        }
    }

    /// The next frame from the server. Op 9 batches are split; their inner frames come one by one.
    pub async fn recv(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some(f) = self.inbox.pop_front() {
                return Ok(f);
            }
            let frame = self.read_frame().await?;
            match frame.op {
                op::RAW => self
                    .inbox
                    .extend(split_raw_batch(&frame.body, MAX_SERVER_FRAME)?),
                op::DISCONNECT_REPLY => {
                    self.close_reason = Some(String::from_utf8_lossy(&frame.body).into_owned())
                }
                op::RECONNECT_HINT => self.hint = ReconnectHint::parse(&frame.body),
                _ => return Ok(frame),
            }
        }
    }

    /// Like [`GoimClient::recv`], but op 9 batches come whole (to check batching).
    pub async fn recv_unsplit(&mut self) -> Result<Frame, ClientError> {
        match self.inbox.pop_front() {
            Some(f) => Ok(f),
            None => self.read_frame().await,
        }
    }

    /// The reconnect hint (op 22) the server sent before closing, if any: reconnect after its delay (plus
    /// jitter, [`reconnect_delay`]) to its URL, or where this client was. Not a failure.
    pub fn reconnect_hint(&self) -> Option<&ReconnectHint> {
        self.hint.as_ref()
    }

    pub async fn recv_timeout(&mut self, wait: Duration) -> Result<Frame, ClientError> {
        tokio::time::timeout(wait, self.recv())
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    fn closed(&mut self, why: Option<String>) -> ClientError {
        ClientError::Closed(self.close_reason.take().or(why).unwrap_or_default())
    }

    async fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            match &mut self.conn {
                Conn::Ws(ws) => match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        return Ok(Frame::decode(&b, MAX_SERVER_FRAME)?);
                    }
                    Some(Ok(Message::Close(c))) => {
                        let why = c.map(|c| c.reason.to_string());
                        return Err(self.closed(why));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(self.closed(Some(e.to_string()))),
                    None => return Err(self.closed(None)),
                },
                Conn::Tcp { stream, buf } => {
                    if let Some(f) = Frame::decode_stream(buf, MAX_SERVER_FRAME)? {
                        if f.op == op::DISCONNECT_REPLY {
                            self.close_reason = Some(String::from_utf8_lossy(&f.body).into_owned());
                            continue;
                        }
                        return Ok(f);
                    }
                    buf.reserve(4096);
                    match stream.read_buf(buf).await {
                        Ok(0) => return Err(self.closed(None)),
                        Ok(_) => {}
                        Err(e) => return Err(self.closed(Some(e.to_string()))),
                    }
                }
            }
        }
    }
}

/// How long to wait before following a reconnect hint: its delay plus up to a quarter of it (at least
/// 50 ms) of the client's own jitter, so clients closed together do not return together.
pub fn reconnect_delay(hint: &ReconnectHint) -> Duration {
    let jitter_max = (hint.delay_ms / 4).max(50);
    let jitter = rand::random_range(0..=jitter_max);
    Duration::from_millis(hint.delay_ms + jitter)
}

/// A TCP connection from local address `source` to `server`, with TCP_NODELAY (load tests spread their
/// connections over 127.0.0.x, each good for about 28,000 ephemeral ports).
pub async fn tcp_from(server: SocketAddr, source: IpAddr) -> std::io::Result<TcpStream> {
    let socket = if source.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Mints a connection token locally from the shared secret (what a backend does).
pub fn sign_token(secret: &str, mid: i64, ttl_secs: u64) -> Result<String, String> {
    imcloud_logic::token::Tokens::new(secret, u64::MAX)
        .issue(mid, ttl_secs)
        .map(|(t, _)| t)
        .map_err(|e| e.to_string())
}
