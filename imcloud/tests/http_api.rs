//! The HTTP edge of the real binary: errors, auth, tokens, online counts, node lists, metrics and health.

mod common;

use common::*;
use imcloud::client::{GoimClient, auth_body};
use imcloud_proto::op;
use reqwest::Method;

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let s = Standalone::start().await;
    let cases = [
        ("keys", "keys=a"),
        ("keys", "operation=1000"),
        ("keys", "operation=abc&keys=a"),
        ("mids", "operation=1000"),
        ("mids", "operation=1000&mids=x"),
        ("room", "operation=1000&room=1"),
        ("room", "operation=1000&type=live"),
        ("all", ""),
        ("all", "operation=1000&speed=fast"),
        ("all", "operation=3"),
    ];
    for (path, query) in cases {
        let (status, v) = s.push(path, query, "x").await;
        assert_eq!(
            (status, v["code"].as_i64()),
            (400, Some(-400)),
            "{path}?{query}: {v}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let (status, v) = s.get("/goim/online/top?type=live").await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(-400)), "{v}");
    let (status, v) = s.get("/goim/online/room?type=live").await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(-400)), "{v}");

    // A body over the limit is refused with a JSON error too.
    let (status, v) = s.push("all", "operation=1000", vec![b'x'; 70_000]).await;
    assert_eq!((status, v["code"].as_i64()), (413, Some(-400)), "{v}");
    // Unknown routes and methods.
    let (status, v) = s.get("/goim/nothing").await;
    assert_eq!((status, v["code"].as_i64()), (404, Some(-404)), "{v}");
    let (status, v) = s
        .request(Method::DELETE, "/goim/push/all", Some(API_KEY), "".into())
        .await;
    assert_eq!((status, v["code"].as_i64()), (405, Some(-400)), "{v}");
}

#[tokio::test]
async fn the_api_key_is_required_for_push_online_and_tokens() {
    let s = Standalone::start().await;
    for (method, path) in [
        (Method::POST, "/goim/push/all?operation=1000"),
        (Method::POST, "/goim/push/keys?operation=1000&keys=a"),
        (Method::GET, "/goim/online/total"),
        (Method::POST, "/v1/tokens"),
    ] {
        for key in [None, Some("wrong-key")] {
            let (status, v) = s.request(method.clone(), path, key, "{}".into()).await;
            assert_eq!(
                (status, v["code"].as_i64()),
                (401, Some(-401)),
                "{method} {path} with {key:?}: {v}"
            );
        }
    }
    // Node lists are public: clients call them to find a comet.
    let (status, _) = s
        .request(Method::GET, "/goim/nodes/weighted", None, "".into())
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn tokens_from_the_api_authenticate_their_mid() {
    let s = Standalone::start().await;
    let (status, v) = s
        .request(
            Method::POST,
            "/v1/tokens",
            Some(API_KEY),
            r#"{"mid": 42, "ttl_secs": 120}"#.into(),
        )
        .await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)), "{v}");
    let token = v["data"]["token"].as_str().expect("token").to_string();
    assert!(v["data"]["expires_at"].as_i64().unwrap() > 0);

    let mut c = GoimClient::connect_ws(&s.ws_url).await.unwrap();
    assert_eq!(
        c.auth(auth_body(42, "", "", &[], &token), WAIT)
            .await
            .unwrap()
            .op,
        op::AUTH_REPLY
    );
    let mut other = GoimClient::connect_ws(&s.ws_url).await.unwrap();
    assert!(
        other
            .auth(auth_body(43, "", "", &[], &token), WAIT)
            .await
            .is_err(),
        "a token is for its mid only"
    );

    for bad in [
        r#"{"ttl_secs": 5}"#,
        "not json",
        r#"{"mid": 1, "ttl_secs": 0}"#,
        r#"{"mid": 1, "ttl_secs": 99999999999}"#,
    ] {
        let (status, v) = s
            .request(Method::POST, "/v1/tokens", Some(API_KEY), bad.into())
            .await;
        assert_eq!(
            (status, v["code"].as_i64()),
            (400, Some(-400)),
            "{bad}: {v}"
        );
    }
}

#[tokio::test]
async fn online_counts_and_node_lists() {
    let s = Standalone::start().await;
    let _a = s.ws(1, "", "live://1", &[]).await;
    let _b = s.ws(2, "", "live://1", &[]).await;
    let _c = s.tcp(3, "", "live://2").await;
    let _d = s.ws(4, "", "chat://9", &[]).await;
    s.wait_online(4).await;

    let (_, v) = s.get("/goim/online/total").await;
    assert_eq!(
        (
            v["data"]["conn_count"].as_u64(),
            v["data"]["ip_count"].as_u64()
        ),
        (Some(4), Some(1)),
        "{v}"
    );
    let (_, v) = s.get("/goim/online/room?type=live&rooms=1,2,3").await;
    assert_eq!(v["data"], serde_json::json!({"1": 2, "2": 1, "3": 0}));
    let (_, v) = s.get("/goim/online/top?type=live&limit=1").await;
    assert_eq!(v["data"], serde_json::json!([{"room_id": "1", "count": 2}]));
    let (_, v) = s.get("/goim/online/top?type=live&limit=10").await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(2));

    let (_, v) = s.get("/goim/nodes/instances").await;
    let roles: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["comet", "logic", "job", "api"], "{v}");
    let comet = &v["data"][0];
    assert_eq!(
        comet["ws_addr"].as_str(),
        s.ws_url
            .strip_prefix("ws://")
            .and_then(|u| u.strip_suffix("/sub"))
    );
    assert_eq!(comet["grpc_addr"].as_str(), Some(s.comet_grpc.as_str()));
    assert_eq!(comet["connections"].as_u64(), Some(4));

    let (_, v) = s.get("/goim/nodes/weighted?platform=web").await;
    assert_eq!(
        v["data"]["nodes"][0].as_str(),
        comet["ws_addr"].as_str(),
        "{v}"
    );
    let (_, v) = s.get("/goim/nodes/weighted?platform=android").await;
    assert_eq!(
        v["data"]["nodes"][0].as_str(),
        Some(s.tcp_addr.as_str()),
        "{v}"
    );
    assert!(v["data"]["heartbeat"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn metrics_and_health() {
    let s = Standalone::start().await;
    let (status, v) = s.request(Method::GET, "/healthz", None, "".into()).await;
    assert_eq!((status, v["code"].as_i64()), (200, Some(0)));
    let mut c = s.ws(1, "m", "", &[]).await;
    s.push("keys", "operation=1000&keys=m", "x").await;
    expect_msg(&mut c, 1000, b"x").await;
    // job counts a delivery once the comet's RPC has returned, which can be just after the client saw it.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = s.metrics().await;
        if text.contains("imcloud_comet_push_msg_total 1")
            && text.lines().any(|l| {
                l.starts_with("imcloud_job_delivered_total{type=\"push\",comet=")
                    && l.ends_with(" 1")
            })
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never showed the delivery: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
