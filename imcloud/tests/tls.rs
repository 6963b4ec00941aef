//! TLS on every listener, against the real binary with certificates made at run time: clients trusting
//! the CA get pushes over wss, TLS TCP and HTTPS (HTTP/1.1 and HTTP/2); plaintext clients and clients
//! trusting another CA are refused; a certificate rotation (file change or SIGHUP) keeps old connections
//! and serves the new certificate to new ones; with mutual TLS between the roles, callers without a valid
//! client certificate, or with the wrong role's, are refused by logic and comet.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::{CertDir, PublicCerts, TestCa};
use common::{API_KEY, SECRET, Standalone, StartOptions, WAIT, expect_msg};
use imcloud::client::{ClientTls, GoimClient, auth_body, sign_token};
use imcloud_proto::comet::comet_client::CometClient;
use imcloud_proto::logic::logic_client::LogicClient;
use imcloud_proto::protocol::Proto;
use imcloud_proto::{comet, logic, op};
use tokio::net::TcpStream;

async fn authed(mut c: GoimClient, mid: i64, key: &str) -> GoimClient {
    let token = sign_token(SECRET, mid, 600).unwrap();
    c.auth(auth_body(mid, key, "", &[], &token), WAIT)
        .await
        .expect("auth");
    c
}

fn https_client(ca_pem: &str, h1_only: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()]);
    if h1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

async fn push_https(
    client: &reqwest::Client,
    base: &str,
    keys: &str,
    msg: &str,
) -> reqwest::Version {
    let r = client
        .post(format!("{base}/goim/push/keys?operation=1000&keys={keys}"))
        .bearer_auth(API_KEY)
        .body(msg.to_string())
        .send()
        .await
        .expect("HTTPS push");
    assert_eq!(r.status(), 200);
    r.version()
}

#[tokio::test]
async fn clients_trusting_the_ca_get_pushes_over_wss_tls_tcp_and_https() {
    let certs = PublicCerts::new();
    let s = Standalone::start_opts(StartOptions {
        tls: Some(&certs),
        ..StartOptions::default()
    })
    .await;
    let tls = s.client_tls.clone().unwrap();
    let wss = GoimClient::connect_ws_tls(s.wss_url.as_deref().unwrap(), Some(&tls))
        .await
        .expect("wss connect");
    let mut wss = authed(wss, 1, "over-wss").await;
    let tcp_tls = ClientTls::new(Some(&certs.ca_file()), &[]).unwrap();
    let tcp = GoimClient::connect_tcp_tls(&s.tcp_addr, Some(&tcp_tls))
        .await
        .expect("TLS TCP connect");
    let mut tcp = authed(tcp, 2, "over-tls-tcp").await;
    // The plaintext websocket listener still serves (it is its own listener).
    let mut ws = s.ws(3, "over-ws", "", &[]).await;

    let h2 = push_https(
        &https_client(&certs.ca.pem, false),
        &s.http,
        "over-wss,over-tls-tcp,over-ws",
        "one",
    )
    .await;
    assert_eq!(h2, reqwest::Version::HTTP_2, "ALPN picks HTTP/2");
    let h1 = push_https(
        &https_client(&certs.ca.pem, true),
        &s.http,
        "over-wss,over-tls-tcp",
        "two",
    )
    .await;
    assert_eq!(h1, reqwest::Version::HTTP_11);
    expect_msg(&mut wss, 1000, b"one").await;
    expect_msg(&mut tcp, 1000, b"one").await;
    expect_msg(&mut ws, 1000, b"one").await;
    expect_msg(&mut wss, 1000, b"two").await;
    expect_msg(&mut tcp, 1000, b"two").await;
    // The `imcloud client` CLI takes the CA file too.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_imcloud"))
        .args(["client", "push", "--api", &s.http, "--api-key", API_KEY])
        .args([
            "--ca-file",
            &certs.ca_file(),
            "keys",
            "--keys",
            "over-wss",
            "from the CLI",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect_msg(&mut wss, 1000, b"from the CLI").await;
}

#[tokio::test]
async fn plaintext_clients_and_clients_of_another_ca_are_refused() {
    let certs = PublicCerts::new();
    let s = Standalone::start_opts(StartOptions {
        tls: Some(&certs),
        ..StartOptions::default()
    })
    .await;
    let wss_url = s.wss_url.clone().unwrap();
    // Plaintext websocket on the wss port.
    let plain = wss_url.replace("wss://", "ws://");
    assert!(
        GoimClient::connect_ws(&plain).await.is_err(),
        "plain ws on the wss port"
    );
    // Plaintext goim on the TLS TCP port: never authenticated.
    if let Ok(mut c) = GoimClient::connect_tcp(&s.tcp_addr).await {
        let token = sign_token(SECRET, 1, 60).unwrap();
        assert!(
            c.auth(auth_body(1, "", "", &[], &token), Duration::from_secs(5))
                .await
                .is_err()
        );
    }
    // Plain HTTP on the HTTPS port.
    let http = s.http.replace("https://", "http://");
    let r = reqwest::Client::new()
        .get(format!("{http}/healthz"))
        .send()
        .await;
    assert!(
        r.map_or(true, |r| !r.status().is_success()),
        "plain HTTP on the HTTPS port"
    );

    // Clients that trust another CA.
    let other = TestCa::new("another CA");
    let dir = CertDir::new();
    let other_file = dir.write("other.pem", &other.pem);
    let other_tls = ClientTls::new(Some(&other_file), &[b"http/1.1"]).unwrap();
    assert!(
        GoimClient::connect_ws_tls(&wss_url, Some(&other_tls))
            .await
            .is_err()
    );
    assert!(
        GoimClient::connect_tcp_tls(&s.tcp_addr, Some(&other_tls))
            .await
            .is_err()
    );
    let r = https_client(&other.pem, false)
        .get(format!("{}/healthz", s.http))
        .send()
        .await;
    assert!(r.is_err(), "HTTPS with another CA");
    let failures = s.metrics().await;
    assert!(failures.contains("imcloud_tls_handshake_failures_total"));
}

/// Writes a new server certificate from `ca` into the files the server reads.
fn rotate(certs: &PublicCerts, ca: &TestCa) {
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
    certs.files.write("server.key", &key);
    certs.files.write("server.pem", &cert);
}

/// Waits until a new wss connection trusting only `ca_file` succeeds.
async fn until_served_by(wss_url: &str, ca_file: &str) {
    let tls = ClientTls::new(Some(ca_file), &[b"http/1.1"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while GoimClient::connect_ws_tls(wss_url, Some(&tls))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn rotation_keeps_old_connections(signal: bool) {
    let certs = PublicCerts::new();
    let reload = if signal { "3600" } else { "1" };
    let s = Standalone::start_opts(StartOptions {
        tls: Some(&certs),
        env: &[("IMCLOUD_TLS_RELOAD_SECS", reload)],
        ..StartOptions::default()
    })
    .await;
    let wss_url = s.wss_url.clone().unwrap();
    let old_tls = s.client_tls.clone().unwrap();
    let old = GoimClient::connect_ws_tls(&wss_url, Some(&old_tls))
        .await
        .unwrap();
    let mut old = authed(old, 1, "before-rotation").await;
    let tcp_tls = ClientTls::new(Some(&certs.ca_file()), &[]).unwrap();
    let old_tcp = GoimClient::connect_tcp_tls(&s.tcp_addr, Some(&tcp_tls))
        .await
        .unwrap();
    let mut old_tcp = authed(old_tcp, 2, "tcp-before-rotation").await;

    let next = TestCa::new("the next CA");
    let dir = CertDir::new();
    let next_file = dir.write("next.pem", &next.pem);
    rotate(&certs, &next);
    if signal {
        // With a one-hour poll, only SIGHUP can make the server see the new files in time.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = std::process::Command::new("kill")
            .args(["-HUP", &s.pid().to_string()])
            .status();
    }
    until_served_by(&wss_url, &next_file).await;
    // A client that trusts only the old CA can no longer connect.
    assert!(
        GoimClient::connect_ws_tls(&wss_url, Some(&old_tls))
            .await
            .is_err()
    );
    // The connections made before the rotation are still alive and get pushes (sent over HTTPS, which
    // now presents the new certificate).
    let http = https_client(&next.pem, false);
    push_https(
        &http,
        &s.http,
        "before-rotation,tcp-before-rotation",
        "after",
    )
    .await;
    expect_msg(&mut old, 1000, b"after").await;
    expect_msg(&mut old_tcp, 1000, b"after").await;
    let metrics = s.metrics().await;
    assert!(metrics.contains("imcloud_tls_reloads_total"), "{metrics}");
}

#[tokio::test]
async fn a_changed_certificate_file_is_served_to_new_connections_only() {
    rotation_keeps_old_connections(false).await;
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    rotation_keeps_old_connections(true).await;
}

/// A gRPC channel over TLS to `addr` trusting `ca_pem`, presenting `identity` (certificate and key PEM)
/// if given, checking that the server is `server_name`.
async fn tls_channel(
    addr: &str,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    server_name: &str,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in imcloud_common::tls::parse_certs(ca_pem.as_bytes(), "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                imcloud_common::tls::parse_certs(cert.as_bytes(), "cert").unwrap(),
                imcloud_common::tls::parse_key(key.as_bytes(), "key").unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
    let addr = addr.to_string();
    tonic::transport::Endpoint::from_static("http://internal")
        .connect_with_connector(tower::service_fn(move |_uri| {
            let (connector, name, addr) = (connector.clone(), name.clone(), addr.clone());
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

fn kick() -> comet::PushMsgReq {
    comet::PushMsgReq {
        keys: vec!["victim".into()],
        protos: vec![Proto {
            ver: 1,
            op: op::DISCONNECT_REPLY,
            seq: 0,
            body: b"forged kick".to_vec(),
            accepted_unix_us: 0,
            ..Default::default()
        }],
    }
}

fn hb() -> logic::HeartbeatReq {
    logic::HeartbeatReq {
        mid: 7,
        key: "victim".into(),
        server: "evil".into(),
    }
}

#[tokio::test]
async fn with_mutual_tls_only_the_right_roles_are_served() {
    let ca = TestCa::new("internal CA");
    let dir = CertDir::new();
    let ca_file = dir.write("ca.pem", &ca.pem);
    // The standalone runs all four roles: its certificate names all of them.
    let (cert, key) = ca.leaf(&[
        "comet.imcloud.internal",
        "logic.imcloud.internal",
        "job.imcloud.internal",
        "api.imcloud.internal",
    ]);
    let cert_file = dir.write("all.pem", &cert);
    let key_file = dir.write("all.key", &key);
    let s = Standalone::start_with(&[
        ("IMCLOUD_INTERNAL_CA_FILE", &ca_file),
        ("IMCLOUD_INTERNAL_CERT_FILE", &cert_file),
        ("IMCLOUD_INTERNAL_KEY_FILE", &key_file),
    ])
    .await;
    // The roles reach each other over mutual TLS: a connection authenticates, a push arrives.
    let mut victim = s.ws(7, "victim", "", &[]).await;
    let (status, _) = s
        .push("keys", "operation=1000&keys=victim", "over mTLS")
        .await;
    assert_eq!(status, 200);
    expect_msg(&mut victim, 1000, b"over mTLS").await;

    // Plaintext gRPC: no TLS, no service.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", s.logic_addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        assert!(LogicClient::new(ch).heartbeat(hb()).await.is_err());
    }
    // TLS without a client certificate: served nothing internal.
    let ch = tls_channel(&s.logic_addr, &ca.pem, None, "logic.imcloud.internal")
        .await
        .unwrap();
    let e = LogicClient::new(ch).heartbeat(hb()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let ch = tls_channel(&s.comet_grpc, &ca.pem, None, "comet.imcloud.internal")
        .await
        .unwrap();
    let e = CometClient::new(ch).push_msg(kick()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    // A client certificate of another CA: the handshake fails.
    let rogue = TestCa::new("rogue CA");
    let (rc, rk) = rogue.leaf(&["comet.imcloud.internal", "job.imcloud.internal"]);
    for (addr, name) in [
        (&s.logic_addr, "logic.imcloud.internal"),
        (&s.comet_grpc, "comet.imcloud.internal"),
    ] {
        match tls_channel(addr, &ca.pem, Some((&rc, &rk)), name).await {
            Err(_) => {}
            Ok(ch) => {
                let e = LogicClient::new(ch).heartbeat(hb()).await;
                assert!(e.is_err(), "a rogue certificate was served at {addr}");
            }
        }
    }
    // A valid certificate of the wrong role.
    let (api_cert, api_key) = ca.leaf(&["api.imcloud.internal"]);
    let ch = tls_channel(
        &s.logic_addr,
        &ca.pem,
        Some((&api_cert, &api_key)),
        "logic.imcloud.internal",
    )
    .await
    .unwrap();
    let e = LogicClient::new(ch).heartbeat(hb()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let (comet_cert, comet_key) = ca.leaf(&["comet.imcloud.internal"]);
    let ch = tls_channel(
        &s.comet_grpc,
        &ca.pem,
        Some((&comet_cert, &comet_key)),
        "comet.imcloud.internal",
    )
    .await
    .unwrap();
    let e = CometClient::new(ch).push_msg(kick()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // The client checks the server's role too: a certificate that does not name the role it meant to
    // reach is refused, whatever the address.
    assert!(
        tls_channel(&s.logic_addr, &ca.pem, None, "nobody.imcloud.internal")
            .await
            .is_err()
    );
    // The victim is still connected, and a job's certificate is the one that may deliver.
    let (job_cert, job_key) = ca.leaf(&["job.imcloud.internal"]);
    let ch = tls_channel(
        &s.comet_grpc,
        &ca.pem,
        Some((&job_cert, &job_key)),
        "comet.imcloud.internal",
    )
    .await
    .unwrap();
    let mut as_job = CometClient::new(ch);
    let mut push = kick();
    push.protos[0].op = 1000;
    push.protos[0].body = b"from a job".to_vec();
    as_job.push_msg(push).await.expect("a job may deliver");
    expect_msg(&mut victim, 1000, b"from a job").await;
}
