//! TLS for every listener and every internal connection, on rustls with the ring provider (no OpenSSL).
//!
//! - [`public_tls`]: the certificate of the public listeners (wss, TLS TCP, HTTPS), from
//!   `IMCLOUD_TLS_CERT_FILE` / `IMCLOUD_TLS_KEY_FILE`.
//! - [`internal_tls`]: mutual TLS between the roles, from `IMCLOUD_INTERNAL_CA_FILE` / `_CERT_FILE` /
//!   `_KEY_FILE`. A role is named in its certificate by a DNS subject alternative name
//!   `<role>.imcloud.internal` ([`role_name`]); a server learns its caller's roles from the client
//!   certificate ([`roles_of`]), and a client checks that the server holds the role it meant to reach (the
//!   role name is the TLS server name), whatever address the registry gave.
//!
//! Invariants: a [`Reloading`] always holds a complete, valid configuration. A reload (files changed, or
//! SIGHUP) builds a new one and swaps it in only if it is valid; a broken file keeps the old one and is
//! logged. Established connections keep the configuration of their handshake, so a reload never drops
//! them; each new handshake takes the current one.
//!
//! Also `client_config` (the internal client side, naming the role it must reach) and `MaybeTls`, a plain or
//! TLS stream, so one handler serves both.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::node::Role;

/// The DNS name suffix that names a role in an internal certificate.
pub const ROLE_NAME_SUFFIX: &str = ".imcloud.internal";

/// ALPN of the HTTP API over TLS: HTTP/2 first, then HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN of gRPC (HTTP/2 only).
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// `comet.imcloud.internal` and so on: the DNS name a role's internal certificate carries.
pub fn role_name(role: Role) -> String {
    format!("{role}{ROLE_NAME_SUFFIX}")
}

/// The roles an internal certificate names (its DNS subject alternative names `<role>.imcloud.internal`).
/// The caller must already have verified the chain.
pub fn roles_of(cert: &CertificateDer<'_>) -> Vec<Role> {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return Vec::new();
    };
    Role::ALL
        .into_iter()
        .filter(|r| {
            ServerName::try_from(role_name(*r))
                .is_ok_and(|name| ee.verify_is_valid_for_subject_name(&name).is_ok())
        })
        .collect()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider, for libraries that use the default (reqwest).
/// Idempotent; every binary calls it first.
pub fn install_default_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates in a PEM file's contents.
pub fn parse_certs(pem: &[u8], path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: path.into(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.into(),
            message: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file's contents (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &[u8], path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::File {
        path: path.into(),
        message: format!("no PEM private key in the file: {e}"),
    })
}

fn roots(pem: &[u8], path: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in parse_certs(pem, path)? {
        roots.add(c).map_err(|e| TlsError::File {
            path: path.into(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.into(),
        message: e.to_string(),
    })
}

type Build<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, TlsError> + Send + Sync>;

/// A configuration built from files, rebuilt when they change (polled) or on SIGHUP.
pub struct Reloading<T> {
    what: &'static str,
    paths: Vec<String>,
    build: Build<T>,
    /// Hash of the file contents the current configuration was built from.
    fingerprint: Mutex<u64>,
    current: ArcSwap<T>,
}

fn fingerprint(contents: &[Vec<u8>]) -> u64 {
    let mut h = DefaultHasher::new();
    contents.hash(&mut h);
    h.finish()
}

impl<T: Send + Sync + 'static> Reloading<T> {
    fn load(
        what: &'static str,
        paths: Vec<String>,
        build: Build<T>,
    ) -> Result<Arc<Self>, TlsError> {
        let contents = paths
            .iter()
            .map(|p| read(p))
            .collect::<Result<Vec<_>, _>>()?;
        let value = build(&contents)?;
        Ok(Arc::new(Reloading {
            what,
            paths,
            build,
            fingerprint: Mutex::new(fingerprint(&contents)),
            current: ArcSwap::from_pointee(value),
        }))
    }

    /// The configuration new connections use.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Rebuilds from the files if their contents changed; `Ok(true)` when a new configuration is in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let contents = self
            .paths
            .iter()
            .map(|p| read(p))
            .collect::<Result<Vec<_>, _>>()?;
        let print = fingerprint(&contents);
        let mut last = self.fingerprint.lock().unwrap_or_else(|e| e.into_inner());
        if *last == print {
            return Ok(false);
        }
        let value = (self.build)(&contents)?;
        self.current.store(Arc::new(value));
        *last = print;
        Ok(true)
    }

    /// Checks the files every `every`, and at once on SIGHUP, until the last handle is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let what = self.what;
        tokio::spawn(async move {
            let mut hup =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!("{what}: no SIGHUP reload: {e}");
                        None
                    }
                };
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                let signalled = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async {
                        match hup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => true,
                };
                let Some(me) = weak.upgrade() else { return };
                let result = me.reload();
                let label = match &result {
                    Ok(true) => "reloaded",
                    Ok(false) => "unchanged",
                    Err(_) => "failed",
                };
                if signalled || label != "unchanged" {
                    metrics::counter!("imcloud_tls_reloads_total", "what" => what, "result" => label)
                        .increment(1);
                }
                match result {
                    Ok(true) => tracing::info!(
                        "{what}: certificate reloaded from {}; new connections use it",
                        me.paths.join(", ")
                    ),
                    Ok(false) if signalled => {
                        tracing::info!("{what}: SIGHUP, certificate files unchanged")
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(
                        "{what}: reload failed, keeping the previous certificate: {e}"
                    ),
                }
            }
        });
    }
}

/// The public listeners' TLS: the server certificate and key, with the given ALPN protocols.
pub type PublicTls = Reloading<ServerConfig>;

/// Loads the public certificate (`cert_file`, `key_file`) for a listener speaking `alpn`.
pub fn public_tls(
    cert_file: &str,
    key_file: &str,
    alpn: &'static [&'static [u8]],
) -> Result<Arc<PublicTls>, TlsError> {
    if cert_file.trim().is_empty() || key_file.trim().is_empty() {
        return Err(TlsError::Config(
            "a TLS listener needs IMCLOUD_TLS_CERT_FILE and IMCLOUD_TLS_KEY_FILE".into(),
        ));
    }
    let paths = vec![cert_file.to_string(), key_file.to_string()];
    let (c, k) = (paths[0].clone(), paths[1].clone());
    Reloading::load(
        "public TLS",
        paths,
        Box::new(move |files| {
            let mut cfg = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(parse_certs(&files[0], &c)?, parse_key(&files[1], &k)?)?;
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(cfg)
        }),
    )
}

/// Both sides of mutual TLS between the roles.
pub struct InternalConfigs {
    /// Presents this role's certificate and verifies a client certificate when one is sent (a caller
    /// without one, such as a backend with the API key, is authorised per call by the RPC layer).
    pub server: Arc<ServerConfig>,
    /// Presents this role's certificate and verifies the server's against the CA.
    pub client: Arc<ClientConfig>,
}

pub type InternalTls = Reloading<InternalConfigs>;

/// Loads the internal CA, this role's certificate and its key.
pub fn internal_tls(
    ca_file: &str,
    cert_file: &str,
    key_file: &str,
) -> Result<Arc<InternalTls>, TlsError> {
    let paths = vec![
        ca_file.to_string(),
        cert_file.to_string(),
        key_file.to_string(),
    ];
    let (a, c, k) = (paths[0].clone(), paths[1].clone(), paths[2].clone());
    Reloading::load(
        "internal mTLS",
        paths,
        Box::new(move |files| {
            let roots = Arc::new(roots(&files[0], &a)?);
            let chain = parse_certs(&files[1], &c)?;
            let key = parse_key(&files[2], &k)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            let mut server = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain.clone(), key.clone_key())?;
            server.alpn_protocols = ALPN_GRPC.iter().map(|p| p.to_vec()).collect();
            let mut client = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)?;
            client.alpn_protocols = ALPN_GRPC.iter().map(|p| p.to_vec()).collect();
            Ok(InternalConfigs {
                server: Arc::new(server),
                client: Arc::new(client),
            })
        }),
    )
}

/// A client configuration trusting the CA certificates in `ca_file` (tools and tests), or the
/// `roots` given when there is no file.
pub fn client_config(
    ca_file: Option<&str>,
    system_roots: impl FnOnce() -> RootCertStore,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    let roots = match ca_file {
        Some(path) => roots(&read(path)?, path)?,
        None => system_roots(),
    };
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// A plain or TLS stream over TCP (servers and clients).
pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn ca() -> (String, Issuer<'static, KeyPair>) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(p, key))
    }

    fn leaf(names: &[&str], ca: &Issuer<'static, KeyPair>) -> (String, String) {
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn roles_come_from_the_certificate_names() {
        let (_, ca) = ca();
        let (pem, _) = leaf(&["comet.imcloud.internal", "job.imcloud.internal"], &ca);
        let der = parse_certs(pem.as_bytes(), "x").unwrap().remove(0);
        assert_eq!(roles_of(&der), vec![Role::Comet, Role::Job]);
        let (pem, _) = leaf(&["logic.example.com"], &ca);
        let der = parse_certs(pem.as_bytes(), "x").unwrap().remove(0);
        assert!(roles_of(&der).is_empty());
    }

    #[test]
    fn a_broken_file_keeps_the_last_good_configuration() {
        let dir = std::env::temp_dir().join(format!("imcloud-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (_, ca) = ca();
        let (cert, key) = leaf(&["localhost"], &ca);
        let (cf, kf) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(&cf, &cert).unwrap();
        std::fs::write(&kf, &key).unwrap();
        let tls = public_tls(cf.to_str().unwrap(), kf.to_str().unwrap(), ALPN_HTTP).unwrap();
        let first = tls.current();
        assert!(
            !tls.reload().unwrap(),
            "unchanged files keep the configuration"
        );
        std::fs::write(&cf, "not a certificate").unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&first, &tls.current()));
        let (cert, key) = leaf(&["localhost"], &ca);
        std::fs::write(&cf, &cert).unwrap();
        std::fs::write(&kf, &key).unwrap();
        assert!(tls.reload().unwrap());
        assert!(!Arc::ptr_eq(&first, &tls.current()));
        assert!(parse_key(b"nothing", "k").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
