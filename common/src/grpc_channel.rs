//! gRPC between nodes. Client side: [`InternalChannel`]s (HTTP/2 to `host:port`, connected on first use,
//! with bounded waits; over mutual TLS when it is configured, and every call carrying the caller's role and
//! credentials, see `internal_auth`); [`discovered_channel`] balances over every registered node of a role
//! and follows the registry. Server side: the settings every node's gRPC server shares ([`server`]) and
//! its accepted connections ([`incoming`]: TLS handshakes off the accept loop, each connection tagged with
//! what its certificate proves).
//!
//! - Every channel dials TCP with TCP_NODELAY (3 s connect timeout, 10 s per call) and is wrapped in
//!   `grpc_telemetry::NodeChannel`. `lazy_channel(addr, caller, role)`: one address (job to each comet).
//!   `discovered_channel(registry, role, fallback, caller)`: tower's p2c over pending requests across the
//!   registered nodes, started from a direct registry read, then fed by the watch; `fallback` until the
//!   first node appears, the last nodes kept when all have left (calls fail fast instead of hanging).
//!   `logic_channel`, used by comet and api: discovered with etcd, else `IMCLOUD_LOGIC_ADDR`.
//! - [`server`] allows [`MAX_CONCURRENT_STREAMS`] per connection, so a burst of calls queues at the client
//!   instead of making h2 close the connection; [`incoming`] accepts with back-off (`AcceptBackoff`).
//!
//! Invariants: a client verifies that the server holds the role it meant to reach (the role's name is the
//! TLS server name), whatever address it was given; the client TLS configuration is read at each new
//! connection, so a certificate reload reaches new connections without dropping the open ones.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};
use tower::Service;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::util::BoxService;

use crate::accept::AcceptBackoff;
use crate::grpc_telemetry::NodeChannel;
use crate::internal_auth::{InternalAuth, InternalPeer};
use crate::node::Role;
use crate::registry::Registry;
use crate::tls::{MaybeTls as Io, role_name, roles_of};

/// Streams a client may have open at once on one connection to a node's gRPC server. h2 closes a
/// connection on which too many small DATA frames sit unread ("too_many_data_frames", ENHANCE_YOUR_CALM):
/// 15,000 clients dropping at once made a comet send 15,000 Disconnect calls together, and logic's server
/// closed the connection, failing every call on it. With this limit the client queues the excess instead.
pub const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Longest TLS handshake on an internal listener before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the gRPC server to take them.
const ACCEPTED_QUEUE: usize = 128;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A gRPC server builder with the shared limits. Services are added wrapped in
/// [`crate::grpc_telemetry::ServerTelemetry`] (metrics, trace context).
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder().max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
}

/// Who this process is when it calls another role: its role and its credentials.
#[derive(Clone, Debug)]
pub struct Caller {
    pub role: Role,
    pub auth: Arc<InternalAuth>,
}

impl Caller {
    pub fn new(role: Role, auth: Arc<InternalAuth>) -> Caller {
        Caller { role, auth }
    }
}

/// Opens TCP connections to `host:port` with TCP_NODELAY (without it, requests written in several
/// pieces wait for the peer's delayed ACK, about 40 ms on Linux), then TLS when mutual TLS is on.
#[derive(Clone)]
struct Connector {
    auth: Arc<InternalAuth>,
    server_name: ServerName<'static>,
}

type ClientIo = TokioIo<Io<tokio_rustls::client::TlsStream<TcpStream>>>;

impl Service<Uri> for Connector {
    type Response = ClientIo;
    type Error = io::Error;
    type Future = BoxFuture<io::Result<ClientIo>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
            let port = uri.port_u16().unwrap_or(80);
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let io = match &*this.auth {
                InternalAuth::Token(_) => Io::Plain(tcp),
                InternalAuth::Mtls(tls) => {
                    let connector = tokio_rustls::TlsConnector::from(tls.current().client.clone());
                    Io::Tls(Box::new(connector.connect(this.server_name, tcp).await?))
                }
            };
            Ok(TokioIo::new(io))
        })
    }
}

/// The endpoint for `addr` (`host:port`); errors when the address is not a valid URI authority.
fn endpoint(addr: &str) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad gRPC address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10)))
}

fn connected(addr: &str, caller: &Caller, target: Role) -> Result<Channel, String> {
    let server_name = ServerName::try_from(role_name(target))
        .map_err(|e| format!("bad role name for {target}: {e}"))?;
    Ok(endpoint(addr)?.connect_with_connector_lazy(Connector {
        auth: caller.auth.clone(),
        server_name,
    }))
}

type Balanced = Buffer<http::Request<Body>, BoxFuture<Result<http::Response<Body>, BoxError>>>;

#[derive(Clone)]
enum Inner {
    One(Channel),
    Balanced(Balanced),
}

/// A channel to another role: every call carries this process's role and credentials.
#[derive(Clone)]
pub struct InternalChannel {
    inner: Inner,
    headers: Arc<[(http::HeaderName, http::HeaderValue)]>,
}

impl std::fmt::Debug for InternalChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalChannel").finish_non_exhaustive()
    }
}

impl InternalChannel {
    fn new(inner: Inner, caller: &Caller) -> InternalChannel {
        InternalChannel {
            inner,
            headers: caller.auth.call_headers(caller.role).into(),
        }
    }
}

impl Service<http::Request<Body>> for InternalChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<Result<http::Response<Body>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.inner {
            Inner::One(c) => c.poll_ready(cx).map_err(Into::into),
            Inner::Balanced(b) => b.poll_ready(cx),
        }
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        for (k, v) in self.headers.iter() {
            req.headers_mut().insert(k.clone(), v.clone());
        }
        match &mut self.inner {
            Inner::One(c) => {
                let f = c.call(req);
                Box::pin(async move { f.await.map_err(Into::into) })
            }
            Inner::Balanced(b) => Box::pin(b.call(req)),
        }
    }
}

/// A lazily connected channel to the `target` role at `addr` (`host:port`). Errors when the address is
/// not a valid URI authority.
pub fn lazy_channel(addr: &str, caller: &Caller, target: Role) -> Result<NodeChannel, String> {
    Ok(NodeChannel::new(InternalChannel::new(
        Inner::One(connected(addr, caller, target)?),
        caller,
    )))
}

/// A channel spread over the registered nodes of `role` (their gRPC addresses), kept in step with the
/// registry. It starts from a direct read of the registry, so the first call already goes to a registered
/// node. While no node is known it points at `fallback`; when every node has left it keeps the last ones,
/// so calls fail fast (or reach a node that is alive but lost its registration) instead of waiting for a
/// node to appear.
pub async fn discovered_channel(
    registry: &Arc<dyn Registry>,
    role: Role,
    fallback: &str,
    caller: &Caller,
) -> Result<NodeChannel, String> {
    let fallback = (format!("fallback:{fallback}"), fallback.to_string());
    endpoint(&fallback.1)?;
    let (tx, rx) = mpsc::channel::<Change<String, Channel>>(64);
    let discover = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|change| {
            Ok::<_, Infallible>(match change {
                Change::Insert(k, ch) => {
                    Change::Insert(k, PendingRequests::new(ch, CompleteOnResponse::default()))
                }
                Change::Remove(k) => Change::Remove(k),
            })
        })
        // The balancer fails when its discovery ends; this one ends only with the channel.
        .chain(futures_util::stream::pending());
    let balance = Balance::new(Box::pin(discover));
    let boxed = BoxService::new(tower::ServiceExt::map_err(balance, |e: BoxError| e));
    let (buffer, worker) = Buffer::pair(boxed, 1024);
    tokio::spawn(worker);

    let mut rx = registry.watch(role);
    let mut nodes = match registry.list(role).await {
        Ok(nodes) => nodes,
        Err(e) => {
            tracing::warn!(%role, "listing {role} nodes: {e}; following the registry watch");
            rx.borrow_and_update().clone()
        }
    };
    let me = caller.clone();
    tokio::spawn(async move {
        let mut current: HashMap<String, String> = HashMap::new();
        loop {
            let mut want: HashMap<String, String> = nodes
                .iter()
                .filter(|n| !n.grpc_addr.is_empty())
                .map(|n| (n.id.clone(), n.grpc_addr.clone()))
                .collect();
            if want.is_empty() {
                if current.is_empty() {
                    want.insert(fallback.0.clone(), fallback.1.clone());
                } else {
                    want = current.clone();
                }
            }
            for (id, addr) in &want {
                if current.get(id) == Some(addr) {
                    continue;
                }
                match connected(addr, &me, role) {
                    Ok(ch) => {
                        tracing::info!(%role, node = %id, %addr, "using {role} node");
                        if tx.send(Change::Insert(id.clone(), ch)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(%role, node = %id, "{e}"),
                }
            }
            // Removals after insertions, so the channel is never left without an endpoint (a node whose
            // address changed was replaced by its insertion).
            for id in current.keys() {
                if !want.contains_key(id) && tx.send(Change::Remove(id.clone())).await.is_err() {
                    return;
                }
            }
            current = want;
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
            nodes = rx.borrow_and_update().clone();
        }
    });
    Ok(NodeChannel::new(InternalChannel::new(
        Inner::Balanced(buffer),
        caller,
    )))
}

/// How comet and api reach logic: discovered through etcd when it is configured, else IMCLOUD_LOGIC_ADDR.
pub async fn logic_channel(
    cfg: &crate::Config,
    registry: &Arc<dyn Registry>,
    caller: &Caller,
) -> Result<NodeChannel, String> {
    if cfg.etcd_endpoints.trim().is_empty() {
        lazy_channel(&cfg.logic_addr, caller, Role::Logic)
    } else {
        discovered_channel(registry, Role::Logic, &cfg.logic_addr, caller).await
    }
}

/// A connection accepted by an internal gRPC listener, with what it proved ([`InternalPeer`], a request
/// extension for `internal_auth`).
pub struct InternalConn {
    io: Io<tokio_rustls::server::TlsStream<TcpStream>>,
    peer: InternalPeer,
}

impl Connected for InternalConn {
    type ConnectInfo = InternalPeer;

    fn connect_info(&self) -> InternalPeer {
        self.peer.clone()
    }
}

impl AsyncRead for InternalConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for InternalConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The accepted connections of an internal gRPC listener, with TCP_NODELAY, over TLS when mutual TLS is
/// on (handshakes run beside the accept loop, each bounded by 10 s). Accept errors back off. The stream
/// never yields an error, so a failed accept or handshake never stops the server.
pub fn incoming(
    listener: TcpListener,
    auth: Arc<InternalAuth>,
    what: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<Result<InternalConn, io::Error>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    tokio::spawn(async move {
        let mut backoff = AcceptBackoff::new(what);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (tcp, addr) = match accepted {
                Ok(a) => {
                    backoff.succeeded();
                    a
                }
                Err(e) => {
                    backoff.failed(&e).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            match &*auth {
                InternalAuth::Token(_) => {
                    let conn = InternalConn {
                        io: Io::Plain(tcp),
                        peer: InternalPeer {
                            addr: Some(addr),
                            cert_roles: Vec::new(),
                        },
                    };
                    if tx.send(Ok(conn)).await.is_err() {
                        return;
                    }
                }
                InternalAuth::Mtls(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current().server.clone());
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let stream = match tokio::time::timeout(
                            HANDSHAKE_TIMEOUT,
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                metrics::counter!("imcloud_internal_tls_refused_total", "listener" => what)
                                        .increment(1);
                                tracing::debug!(%addr, "{what}: TLS handshake refused: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%addr, "{what}: TLS handshake timed out");
                                return;
                            }
                        };
                        let cert_roles = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(roles_of)
                            .unwrap_or_default();
                        let conn = InternalConn {
                            io: Io::Tls(Box::new(stream)),
                            peer: InternalPeer {
                                addr: Some(addr),
                                cert_roles,
                            },
                        };
                        let _ = tx.send(Ok(conn)).await;
                    });
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_are_checked() {
        let caller = Caller::new(Role::Comet, Arc::new(InternalAuth::Token("t".into())));
        assert!(lazy_channel("127.0.0.1:3119", &caller, Role::Logic).is_ok());
        assert!(lazy_channel("not a host:port", &caller, Role::Logic).is_err());
    }
}
