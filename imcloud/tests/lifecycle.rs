//! Process lifecycle of the real binary: graceful shutdown, configuration and help. SIGTERM flushes and
//! closes connections, `/readyz` answers 503 from SIGTERM on while the api serves its drain delay; comet,
//! logic and job refuse to start without etcd, job without Kafka, and an unreachable broker stops start-up;
//! the help and the standalone banner.

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_and_closes_connections_then_exits_cleanly() {
    let mut s = Standalone::start().await;
    let mut ws = s.ws(1, "", "live://s", &[]).await;
    let mut tcp = s.tcp(2, "", "live://s").await;
    let (status, _) = s
        .push("room", "operation=1000&type=live&room=s", "before shutdown")
        .await;
    assert_eq!(status, 200);
    assert!(
        tokio::task::block_in_place(|| s.terminate()),
        "exit status 0 after SIGTERM"
    );
    // What was pushed before the signal is delivered, then the connection is closed with a reason.
    expect_msg(&mut ws, 1000, b"before shutdown").await;
    expect_msg(&mut tcp, 1000, b"before shutdown").await;
    assert_eq!(expect_closed(&mut ws).await, "server shutting down");
    assert_eq!(expect_closed(&mut tcp).await, "server shutting down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_from_sigterm_on_while_the_api_serves_its_drain_delay() {
    let mut s = Standalone::start_with(&[("IMCLOUD_DRAIN_DELAY_MS", "3000")]).await;
    // Ready once every role serves and its engine checks have passed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, report) = s.get("/readyz").await;
        if status == 200 {
            assert_eq!(report["ready"], true, "{report}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status();
    // The api keeps answering for the drain delay, not ready, so that load balancers move away.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let report = loop {
        let (status, report) = s.get("/readyz").await;
        if status == 503 {
            break report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still ready after SIGTERM: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        (report["ready"].clone(), report["draining"].clone()),
        (serde_json::json!(false), serde_json::json!(true)),
        "{report}"
    );
    assert!(
        tokio::task::block_in_place(|| s.terminate()),
        "exit status 0 after the drain"
    );
}

fn imcloud(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imcloud"))
        .args(args)
        .env_remove("IMCLOUD_AUTH_SECRET")
        .output()
        .expect("run imcloud")
}

#[test]
fn help_explains_subcommands_and_settings() {
    let out = imcloud(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["standalone", "comet", "logic", "job", "api", "client"] {
        assert!(text.contains(sub), "--help lacks {sub}: {text}");
    }
    let out = imcloud(&["standalone", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for var in [
        "IMCLOUD_AUTH_SECRET",
        "IMCLOUD_API_KEY",
        "IMCLOUD_COMET_WS_ADDR",
        "IMCLOUD_LOGIC_ADDR",
        "IMCLOUD_KAFKA_TOPIC",
    ] {
        assert!(text.contains(var), "standalone --help lacks {var}");
    }
}

#[test]
fn bad_configuration_is_refused_with_a_reason() {
    let out = imcloud(&["standalone", "--comet-buckets", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("comet_buckets must be greater than 0"));

    let out = imcloud(&["standalone", "--config", "/nonexistent/imcloud.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    // A role on its own needs the shared engines, and says which setting is missing.
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imcloud"));
        cmd.args(args)
            .env_remove("IMCLOUD_ETCD_ENDPOINTS")
            .env_remove("IMCLOUD_KAFKA_BROKERS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run imcloud")
    };
    for role in ["comet", "logic", "job"] {
        let out = run(&[role], &[]);
        assert!(!out.status.success(), "{role} without etcd");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("IMCLOUD_ETCD_ENDPOINTS"),
            "{role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&["job"], &[("IMCLOUD_ETCD_ENDPOINTS", "127.0.0.1:2379")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMCLOUD_KAFKA_BROKERS"));

    // An unreachable broker stops start-up within the admin timeout, naming the broker.
    let started = std::time::Instant::now();
    // On ports of its own: the defaults may be taken by a local cluster (scripts/cluster).
    let out = run(
        &["standalone"],
        &[
            ("IMCLOUD_KAFKA_BROKERS", "127.0.0.1:1"),
            ("IMCLOUD_LOGIC_GRPC_ADDR", "127.0.0.1:0"),
            ("IMCLOUD_COMET_GRPC_ADDR", "127.0.0.1:0"),
            ("IMCLOUD_COMET_WS_ADDR", "127.0.0.1:0"),
            ("IMCLOUD_COMET_TCP_ADDR", "127.0.0.1:0"),
            ("IMCLOUD_API_HTTP_ADDR", "127.0.0.1:0"),
        ],
    );
    assert!(!out.status.success(), "standalone without its Kafka");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Kafka at 127.0.0.1:1"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn standalone_prints_where_it_listens_and_generated_secrets() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let held: Vec<std::net::TcpListener> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<String> = held
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    drop(held);
    let mut child = Command::new(env!("CARGO_BIN_EXE_imcloud"))
        .arg("standalone")
        .env_remove("IMCLOUD_AUTH_SECRET")
        .env_remove("IMCLOUD_API_KEY")
        .env("IMCLOUD_COMET_WS_ADDR", &ports[0])
        .env("IMCLOUD_COMET_TCP_ADDR", &ports[1])
        .env("IMCLOUD_COMET_GRPC_ADDR", &ports[2])
        .env("IMCLOUD_LOGIC_GRPC_ADDR", &ports[3])
        .env("IMCLOUD_API_HTTP_ADDR", &ports[4])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.starts_with("try"))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    assert!(text.contains(&format!("ws://{}/sub", ports[0])), "{text}");
    assert!(text.contains(&format!("http://{}", ports[4])), "{text}");
    let secret_line = lines
        .iter()
        .find(|l| l.contains("auth secret"))
        .expect("secret line");
    assert!(secret_line.contains("generated"), "{secret_line}");
    let key_line = lines
        .iter()
        .find(|l| l.contains("api key"))
        .expect("api key line");
    let key = key_line.split_whitespace().nth(2).unwrap();
    assert_eq!(key.len(), 32, "a 128-bit hex key: {key_line}");
}
