//! Authentication of every internal gRPC call, and who may call what.
//!
//! A caller proves it is an imcloud role in one of two ways ([`InternalAuth`]):
//! - **mutual TLS** (`IMCLOUD_INTERNAL_CA_FILE` / `_CERT_FILE` / `_KEY_FILE`): its client certificate
//!   chains to the internal CA, and its roles are the `<role>.imcloud.internal` names it carries
//!   (`tls::roles_of`). The token headers are ignored.
//! - otherwise the **internal token** (`IMCLOUD_INTERNAL_TOKEN`) in the `x-imcloud-internal-token`
//!   metadata of every call, compared in constant time, with the caller's role in `x-imcloud-role`. Every
//!   role holds the same token, so the role header separates the roles' duties but not their trust:
//!   only mutual TLS with one certificate per role does that (docs/security.md). During a rotation the
//!   setting is `new,old`: the first is sent, all are accepted.
//!
//! [`InternalAuthLayer`] wraps a gRPC server and refuses, before the RPC body runs, any call its
//! [`ServicePolicy`] does not allow: a method names the roles it accepts, or the API key of trusted backends,
//! or both. Unknown methods are refused. Refusals are `UNAUTHENTICATED` (no or wrong credentials) or
//! `PERMISSION_DENIED` (a role that may not call this method), counted in
//! `imcloud_internal_auth_refused_total{service, reason}`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue};
use tower::{Layer, Service};

use crate::auth::{bearer_matches, constant_time_eq};
use crate::config::Config;
use crate::node::Role;
use crate::tls::{InternalTls, TlsError, internal_tls};

/// Metadata carrying the internal token.
pub const TOKEN_HEADER: &str = "x-imcloud-internal-token";
/// Metadata carrying the caller's role (token mode).
pub const ROLE_HEADER: &str = "x-imcloud-role";

#[derive(Debug, thiserror::Error)]
pub enum InternalAuthError {
    #[error(
        "internal RPC needs credentials: set IMCLOUD_INTERNAL_TOKEN (32 bytes or more) on every role, or \
         mutual TLS with IMCLOUD_INTERNAL_CA_FILE, IMCLOUD_INTERNAL_CERT_FILE and IMCLOUD_INTERNAL_KEY_FILE"
    )]
    Missing,
    #[error(
        "mutual TLS needs all three of IMCLOUD_INTERNAL_CA_FILE, IMCLOUD_INTERNAL_CERT_FILE and \
         IMCLOUD_INTERNAL_KEY_FILE"
    )]
    PartialTls,
    #[error("IMCLOUD_INTERNAL_TOKEN must not contain control characters or spaces")]
    BadToken,
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// How this process proves itself to the other roles, and checks them.
pub enum InternalAuth {
    Mtls(Arc<InternalTls>),
    /// The token sent on every call, then any others also accepted (a rotation in progress:
    /// `IMCLOUD_INTERNAL_TOKEN=new,old`).
    Token(String),
}

impl InternalAuth {
    fn tokens(&self) -> impl Iterator<Item = &str> {
        let list = match self {
            InternalAuth::Token(t) => t.as_str(),
            InternalAuth::Mtls(_) => "",
        };
        list.split(',').map(str::trim).filter(|t| !t.is_empty())
    }
}

impl std::fmt::Debug for InternalAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.write_str(match self {
            InternalAuth::Mtls(_) => "InternalAuth::Mtls",
            InternalAuth::Token(_) => "InternalAuth::Token",
        })
    }
}

/// Checks that the configuration names internal credentials (without reading any file): role processes
/// call it first, so a missing token stops them before they connect anything.
pub fn check_config(cfg: &Config) -> Result<(), InternalAuthError> {
    let set = [
        &cfg.internal_ca_file,
        &cfg.internal_cert_file,
        &cfg.internal_key_file,
    ]
    .iter()
    .filter(|f| !f.trim().is_empty())
    .count();
    match set {
        3 => Ok(()),
        0 if cfg.internal_token.trim().is_empty() => Err(InternalAuthError::Missing),
        0 => Ok(()),
        _ => Err(InternalAuthError::PartialTls),
    }
}

impl InternalAuth {
    /// From the configuration: mutual TLS when its files are set, else the token. Starts watching the
    /// certificate files for changes (and SIGHUP).
    pub fn from_config(cfg: &Config) -> Result<Arc<InternalAuth>, InternalAuthError> {
        check_config(cfg)?;
        if !cfg.internal_ca_file.trim().is_empty() {
            let tls = internal_tls(
                &cfg.internal_ca_file,
                &cfg.internal_cert_file,
                &cfg.internal_key_file,
            )?;
            tls.watch(std::time::Duration::from_secs(cfg.tls_reload_secs.max(1)));
            return Ok(Arc::new(InternalAuth::Mtls(tls)));
        }
        let tokens = Config::list(&cfg.internal_token);
        if tokens
            .iter()
            .any(|t| HeaderValue::from_str(t).is_err() || t.contains(' '))
        {
            return Err(InternalAuthError::BadToken);
        }
        Ok(Arc::new(InternalAuth::Token(tokens.join(","))))
    }

    pub fn is_mtls(&self) -> bool {
        matches!(self, InternalAuth::Mtls(_))
    }

    /// The metadata a caller of role `role` adds to every call.
    pub fn call_headers(&self, role: Role) -> Vec<(http::HeaderName, HeaderValue)> {
        let mut h = vec![(
            http::HeaderName::from_static(ROLE_HEADER),
            HeaderValue::from_static(role.as_str()),
        )];
        if let Some(t) = self.tokens().next()
            && let Ok(mut v) = HeaderValue::from_str(t)
        {
            v.set_sensitive(true);
            h.push((http::HeaderName::from_static(TOKEN_HEADER), v));
        }
        h
    }

    /// The roles the caller of a request proved, or why it proved none.
    fn caller(
        &self,
        headers: &HeaderMap,
        peer: Option<&InternalPeer>,
    ) -> Result<Vec<Role>, Refusal> {
        match self {
            InternalAuth::Mtls(_) => match peer.map(|p| p.cert_roles.clone()) {
                Some(roles) if !roles.is_empty() => Ok(roles),
                _ => Err(Refusal::NoCredentials),
            },
            InternalAuth::Token(_) => {
                let Some(given) = headers.get(TOKEN_HEADER) else {
                    return Err(Refusal::NoCredentials);
                };
                // Every accepted token is compared, so the time taken does not tell which one matched.
                let matched = self.tokens().fold(false, |ok, t| {
                    constant_time_eq(given.as_bytes(), t.as_bytes()) | ok
                });
                if !matched {
                    return Err(Refusal::WrongToken);
                }
                let role = headers
                    .get(ROLE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|r| Role::ALL.into_iter().find(|x| x.as_str() == r));
                Ok(role.into_iter().collect())
            }
        }
    }
}

/// What an internal gRPC listener knows about a connection (see `grpc_channel::incoming`).
#[derive(Debug, Clone, Default)]
pub struct InternalPeer {
    pub addr: Option<SocketAddr>,
    /// Roles named by the verified client certificate (empty without mutual TLS or without a certificate).
    pub cert_roles: Vec<Role>,
}

/// Who may call one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// Only these roles.
    Roles(&'static [Role]),
    /// These roles, or a trusted backend with the API key.
    RolesOrApiKey(&'static [Role]),
    /// Whoever holds the API key (backends, and the api on their behalf).
    ApiKey,
}

/// The methods of one gRPC service and who may call each.
#[derive(Debug)]
pub struct ServicePolicy {
    /// The full service name, e.g. `imcloud.logic.Logic`.
    pub service: &'static str,
    pub methods: &'static [(&'static str, Allow)],
}

const COMET: &[Role] = &[Role::Comet];
const API: &[Role] = &[Role::Api];
const DELIVERERS: &[Role] = &[Role::Job, Role::Logic];

/// Logic: the comet-facing RPCs only for comets; the node and online queries for the api or a backend
/// with the API key; pushes, tokens and the IM calls with the API key.
pub const LOGIC_POLICY: ServicePolicy = ServicePolicy {
    service: "imcloud.logic.Logic",
    methods: &[
        ("Connect", Allow::Roles(COMET)),
        ("Disconnect", Allow::Roles(COMET)),
        ("Heartbeat", Allow::Roles(COMET)),
        ("RenewOnline", Allow::Roles(COMET)),
        ("Receive", Allow::Roles(COMET)),
        ("Recover", Allow::Roles(COMET)),
        ("Nodes", Allow::RolesOrApiKey(API)),
        ("Instances", Allow::RolesOrApiKey(API)),
        ("OnlineTop", Allow::RolesOrApiKey(API)),
        ("OnlineRoom", Allow::RolesOrApiKey(API)),
        ("OnlineTotal", Allow::RolesOrApiKey(API)),
        ("PushKeys", Allow::ApiKey),
        ("PushMids", Allow::ApiKey),
        ("PushRoom", Allow::ApiKey),
        ("PushAll", Allow::ApiKey),
        ("IssueToken", Allow::ApiKey),
        ("ImCall", Allow::ApiKey),
    ],
};

/// Comet's delivery service: only jobs and logic.
pub const COMET_POLICY: ServicePolicy = ServicePolicy {
    service: "imcloud.comet.Comet",
    methods: &[
        ("PushMsg", Allow::Roles(DELIVERERS)),
        ("PushMsgs", Allow::Roles(DELIVERERS)),
        ("Broadcast", Allow::Roles(DELIVERERS)),
        ("BroadcastRoom", Allow::Roles(DELIVERERS)),
        ("Rooms", Allow::Roles(DELIVERERS)),
    ],
};

impl ServicePolicy {
    pub fn allow(&self, path: &str) -> Option<Allow> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if service != self.service {
            return None;
        }
        self.methods
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, a)| *a)
    }

    fn short(&self) -> &'static str {
        self.service.rsplit('.').next().unwrap_or(self.service)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownMethod,
    NoCredentials,
    WrongToken,
    WrongRole,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::UnknownMethod => "unknown_method",
            Refusal::NoCredentials => "no_credentials",
            Refusal::WrongToken => "wrong_token",
            Refusal::WrongRole => "role",
        }
    }

    fn status(self, service: &str) -> tonic::Status {
        match self {
            Refusal::UnknownMethod => tonic::Status::permission_denied("unknown method"),
            Refusal::NoCredentials => tonic::Status::unauthenticated(format!(
                "{service} serves imcloud roles only: present an internal client certificate or the \
                 internal token"
            )),
            Refusal::WrongToken => tonic::Status::unauthenticated("wrong internal token"),
            Refusal::WrongRole => {
                tonic::Status::permission_denied("this method is not for the calling role")
            }
        }
    }
}

/// The layer that enforces a [`ServicePolicy`] on a gRPC server.
#[derive(Clone)]
pub struct InternalAuthLayer {
    auth: Arc<InternalAuth>,
    policy: &'static ServicePolicy,
    api_key: Arc<str>,
}

impl InternalAuthLayer {
    /// `api_key` may be empty (then no call passes by the API key).
    pub fn new(
        auth: Arc<InternalAuth>,
        policy: &'static ServicePolicy,
        api_key: &str,
    ) -> InternalAuthLayer {
        InternalAuthLayer {
            auth,
            policy,
            api_key: api_key.into(),
        }
    }

    fn decide(
        &self,
        path: &str,
        headers: &HeaderMap,
        peer: Option<&InternalPeer>,
    ) -> Result<(), Refusal> {
        let allow = self.policy.allow(path).ok_or(Refusal::UnknownMethod)?;
        let api_key_ok = || {
            bearer_matches(
                headers.get("authorization").and_then(|v| v.to_str().ok()),
                &self.api_key,
            )
        };
        let roles = |allowed: &[Role]| -> Result<(), Refusal> {
            let caller = self.auth.caller(headers, peer)?;
            if caller.iter().any(|r| allowed.contains(r)) {
                Ok(())
            } else {
                Err(Refusal::WrongRole)
            }
        };
        match allow {
            Allow::Roles(allowed) => roles(allowed),
            Allow::RolesOrApiKey(allowed) => {
                if api_key_ok() {
                    Ok(())
                } else {
                    roles(allowed)
                }
            }
            Allow::ApiKey => {
                if api_key_ok() {
                    Ok(())
                } else {
                    Err(Refusal::NoCredentials)
                }
            }
        }
    }
}

impl<S> Layer<S> for InternalAuthLayer {
    type Service = InternalAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InternalAuthService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct InternalAuthService<S> {
    inner: S,
    layer: InternalAuthLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<http::Request<B>> for InternalAuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let peer = req.extensions().get::<InternalPeer>();
        match self.layer.decide(req.uri().path(), req.headers(), peer) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(refusal) => {
                let service = self.layer.policy.short();
                metrics::counter!(
                    "imcloud_internal_auth_refused_total",
                    "service" => service,
                    "reason" => refusal.label()
                )
                .increment(1);
                tracing::debug!(
                    path = req.uri().path(),
                    peer = ?peer.and_then(|p| p.addr),
                    "internal call refused: {}",
                    refusal.label()
                );
                let response = refusal.status(service).into_http();
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(auth: InternalAuth) -> InternalAuthLayer {
        InternalAuthLayer::new(Arc::new(auth), &LOGIC_POLICY, "the-api-key")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const CONNECT: &str = "/imcloud.logic.Logic/Connect";

    #[test]
    fn token_mode_needs_the_token_and_the_role() {
        let l = layer(InternalAuth::Token("t0ken".into()));
        let ok = headers(&[(TOKEN_HEADER, "t0ken"), (ROLE_HEADER, "comet")]);
        assert_eq!(l.decide(CONNECT, &ok, None), Ok(()));
        assert_eq!(
            l.decide(CONNECT, &HeaderMap::new(), None),
            Err(Refusal::NoCredentials)
        );
        let wrong = headers(&[(TOKEN_HEADER, "t0kem"), (ROLE_HEADER, "comet")]);
        assert_eq!(l.decide(CONNECT, &wrong, None), Err(Refusal::WrongToken));
        let job = headers(&[(TOKEN_HEADER, "t0ken"), (ROLE_HEADER, "job")]);
        assert_eq!(l.decide(CONNECT, &job, None), Err(Refusal::WrongRole));
        let none = headers(&[(TOKEN_HEADER, "t0ken")]);
        assert_eq!(l.decide(CONNECT, &none, None), Err(Refusal::WrongRole));
        // The API key does not open comet-only methods.
        let key = headers(&[("authorization", "Bearer the-api-key")]);
        assert_eq!(l.decide(CONNECT, &key, None), Err(Refusal::NoCredentials));
    }

    #[test]
    fn a_rotation_accepts_both_tokens_and_sends_the_first() {
        let auth = InternalAuth::Token("new-token,old-token".into());
        let sent = auth.call_headers(Role::Comet);
        assert!(
            sent.iter()
                .any(|(k, v)| k == TOKEN_HEADER && v == "new-token")
        );
        let l = layer(auth);
        for t in ["new-token", "old-token"] {
            let h = headers(&[(TOKEN_HEADER, t), (ROLE_HEADER, "comet")]);
            assert_eq!(l.decide(CONNECT, &h, None), Ok(()), "{t}");
        }
        let h = headers(&[
            (TOKEN_HEADER, "new-token,old-token"),
            (ROLE_HEADER, "comet"),
        ]);
        assert_eq!(l.decide(CONNECT, &h, None), Err(Refusal::WrongToken));
    }

    #[test]
    fn backend_methods_take_the_api_key() {
        let l = layer(InternalAuth::Token("t0ken".into()));
        let key = headers(&[("authorization", "Bearer the-api-key")]);
        let push = "/imcloud.logic.Logic/PushRoom";
        assert_eq!(l.decide(push, &key, None), Ok(()));
        assert_eq!(
            l.decide(push, &HeaderMap::new(), None),
            Err(Refusal::NoCredentials)
        );
        let online = "/imcloud.logic.Logic/OnlineTotal";
        assert_eq!(l.decide(online, &key, None), Ok(()));
        let api = headers(&[(TOKEN_HEADER, "t0ken"), (ROLE_HEADER, "api")]);
        assert_eq!(l.decide(online, &api, None), Ok(()));
        let comet = headers(&[(TOKEN_HEADER, "t0ken"), (ROLE_HEADER, "comet")]);
        assert_eq!(l.decide(online, &comet, None), Err(Refusal::WrongRole));
        assert_eq!(
            l.decide("/imcloud.logic.Logic/Nope", &key, None),
            Err(Refusal::UnknownMethod)
        );
        assert_eq!(
            l.decide("/imcloud.comet.Comet/PushMsg", &key, None),
            Err(Refusal::UnknownMethod)
        );
    }

    #[test]
    fn every_rpc_of_the_protos_has_a_rule() {
        for (policy, proto) in [
            (&LOGIC_POLICY, include_str!("../../proto/proto/logic.proto")),
            (&COMET_POLICY, include_str!("../../proto/proto/comet.proto")),
        ] {
            let rpcs: Vec<&str> = proto
                .lines()
                .filter_map(|l| l.trim().strip_prefix("rpc "))
                .filter_map(|l| l.split('(').next())
                .map(str::trim)
                .collect();
            assert!(!rpcs.is_empty());
            for rpc in &rpcs {
                assert!(
                    policy
                        .allow(&format!("/{}/{rpc}", policy.service))
                        .is_some(),
                    "{} has no rule for {rpc}",
                    policy.service
                );
            }
            assert_eq!(
                rpcs.len(),
                policy.methods.len(),
                "stale rules in {}",
                policy.service
            );
        }
    }
}
