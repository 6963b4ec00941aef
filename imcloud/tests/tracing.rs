//! OpenTelemetry traces across the cluster: the test runs its own OTLP/gRPC receiver (the collector's
//! trace service from opentelemetry-proto), points every process of a cluster (comet, logic, job, api on
//! etcd, Kafka and Redis) at it, and checks that one push is one trace, api -> logic -> Kafka -> job ->
//! comet, with each span the child of the one before it; and that an IM send is one trace down to its SQL.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, ClusterSpec, Event};
use common::im::ImApi;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

/// A span as received, with the service that sent it.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    span: Span,
}

impl Got {
    fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                other => format!("{other:?}"),
            })
    }
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Got>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Got {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Starts the receiver on a free loopback port; returns its endpoint URL and the spans it collects.
async fn receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let r = Receiver::default();
    let spans = r.spans.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(r))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("OTLP receiver");
    });
    (format!("http://{addr}"), spans)
}

/// The span of `trace` sent by `service` whose name starts with `name`, and whose parent is `parent`.
fn child<'a>(
    spans: &'a [Got],
    trace: &[u8],
    parent: &[u8],
    service: &str,
    name: &str,
) -> Option<&'a Got> {
    spans.iter().find(|g| {
        g.span.trace_id == trace
            && g.span.parent_span_id == parent
            && g.service == service
            && g.span.name.starts_with(name)
    })
}

/// `root` and, below it, one span per step (service, name), each the child of the one before, if all
/// of them arrived.
fn chain_from(spans: &[Got], root: &Got, steps: &[(&str, &str)]) -> Option<Vec<Got>> {
    let mut chain = vec![root.clone()];
    for (service, name) in steps {
        let parent = chain
            .last()
            .map(|g| g.span.span_id.clone())
            .unwrap_or_default();
        chain.push(child(spans, &root.span.trace_id, &parent, service, name)?.clone());
    }
    Some(chain)
}

/// The chain api -> logic -> queue -> job -> comet of one push, if all of its spans arrived.
fn push_chain(spans: &[Got]) -> Option<Vec<Got>> {
    let steps = [
        ("imcloud-api", "imcloud.logic.Logic/PushMids"),
        ("imcloud-logic", "imcloud.logic.Logic/PushMids"),
        ("imcloud-logic", "queue publish"),
        ("imcloud-job", "job.consume"),
        ("imcloud-job", "job.deliver"),
        ("imcloud-job", "imcloud.comet.Comet/PushMsg"),
        ("imcloud-comet", "imcloud.comet.Comet/PushMsg"),
        ("imcloud-comet", "comet.deliver"),
    ];
    spans
        .iter()
        .filter(|g| {
            g.service == "imcloud-api"
                && g.span.name == "POST /goim/push/mids"
                && g.span.parent_span_id.is_empty()
        })
        .find_map(|root| chain_from(spans, root, &steps))
}

fn summary(spans: &[Got]) -> String {
    let mut lines: Vec<String> = spans
        .iter()
        .map(|g| {
            format!(
                "{} {} trace {} parent {}",
                g.service,
                g.span.name,
                hex(&g.span.trace_id),
                hex(&g.span.parent_span_id)
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_and_an_im_send_are_each_one_trace_across_the_cluster() {
    let (endpoint, spans) = receiver().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let c = Cluster::start(ClusterSpec {
        comets: 1,
        jobs: 1,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ClusterSpec::default()
    })
    .await;
    let mut client = c.client("comet1", 42, "trace-key", "").await;

    // Until the consumer group has formed, pushes wait in Kafka; push until one arrives.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut delivered = false;
    while !delivered && Instant::now() < deadline {
        let (status, v) = c.push("mids", "operation=1000&mids=42", "traced").await;
        assert_eq!(status, 200, "{v}");
        while let Some(ev) = client.next(Duration::from_secs(2)).await {
            if let Event::Msg(f, _) = ev {
                delivered |= f.body.as_ref() == b"traced";
            }
        }
    }
    assert!(delivered, "no push arrived within 60 s");

    // One trace, every hop the child of the one before.
    let deadline = Instant::now() + Duration::from_secs(30);
    let chain = loop {
        let got = spans.lock().unwrap().clone();
        if let Some(chain) = push_chain(&got) {
            break chain;
        }
        assert!(
            Instant::now() < deadline,
            "no complete push trace within 30 s; spans received:\n{}",
            summary(&got)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("push trace:\n{}", summary(&chain));
    let kinds: Vec<i32> = chain.iter().map(|g| g.span.kind).collect();
    // server, client, server, producer, consumer, internal, client, server, internal (OTLP's numbering).
    assert_eq!(
        kinds,
        vec![2, 3, 2, 4, 5, 1, 3, 2, 1],
        "span kinds along the chain"
    );
    assert_eq!(
        chain[0].attr("http.response.status_code").as_deref(),
        Some("200")
    );

    // An IM send: one trace from the api's HTTP span down to the SQL logic ran for it.
    let im = ImApi::new(&c.http);
    let ann = im.user("Ann").await;
    let bob = im.user("Bob").await;
    im.befriend(&ann, &bob).await;
    let cid = format!("u-{}-{}", ann.id.min(bob.id), ann.id.max(bob.id));
    im.ok(
        201,
        "POST",
        &format!("/v1/conversations/{cid}/messages"),
        &ann,
        Some(json!({"client_msg_id": "traced-1", "type": "text", "content": "hello"})),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = spans.lock().unwrap().clone();
        let sends: Vec<&Got> = got
            .iter()
            .filter(|g| {
                g.service == "imcloud-api"
                    && g.span.name == "POST /v1/conversations/{cid}/messages"
                    && g.span.parent_span_id.is_empty()
            })
            .collect();
        let traced = sends.iter().any(|root| {
            // sqlx's statements are events of the span that ran them: the send's statement runs in an
            // `im.send_batch` span under the call that sent it first (group commit, send_batches.rs).
            let steps = [
                ("imcloud-api", "imcloud.logic.Logic/ImCall"),
                ("imcloud-logic", "imcloud.logic.Logic/ImCall"),
                ("imcloud-logic", "im.send_batch"),
            ];
            let Some(chain) = chain_from(&got, root, &steps) else {
                return false;
            };
            let stored = &chain[steps.len()];
            // The statement's text (`db.statement`): its summary is only its first words.
            stored.span.events.iter().any(|e| {
                e.attributes.iter().any(|kv| {
                    kv.key == "db.statement"
                        && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                            Some(AnyValue::StringValue(s)) if s.to_lowercase().contains("insert into messages"))
                })
            })
        });
        if traced {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no IM send trace with its SQL within 30 s; spans received:\n{}",
            summary(&got)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// JSON log lines carry the trace of the request they were written in: a refused auth is logged by
/// logic inside its `Connect` span, and that line's `trace_id` and `span_id` are those of a span the
/// OTLP receiver got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_log_line_written_inside_a_traced_rpc_carries_its_trace_and_span_ids() {
    let (endpoint, spans) = receiver().await;
    let log = std::env::temp_dir().join(imcloud_common::test_name::unique_test_name(
        "imcloud-json-log",
    ));
    let s = common::Standalone::start_opts(common::StartOptions {
        env: &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("IMCLOUD_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
        log_file: Some(&log),
        ..common::StartOptions::default()
    })
    .await;
    let mut c = imcloud::client::GoimClient::connect_ws(&s.ws_url)
        .await
        .expect("connect ws");
    let token = imcloud::client::sign_token("not-the-server-secret-0123456789abcdef", 7, 600)
        .expect("sign");
    let refused = c
        .auth(
            imcloud::client::auth_body(7, "", "", &[], &token),
            common::WAIT,
        )
        .await;
    assert!(
        refused.is_err(),
        "a token signed with another secret was accepted"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let (line, span) = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l.to_string().contains("auth refused") && l.get("trace_id").is_some());
        if let Some(line) = line {
            let got = spans.lock().unwrap().clone();
            let span = got.into_iter().find(|g| {
                Some(hex(&g.span.trace_id).as_str()) == line["trace_id"].as_str()
                    && Some(hex(&g.span.span_id).as_str()) == line["span_id"].as_str()
            });
            if let Some(span) = span {
                break (line, span);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no 'auth refused' JSON line whose trace_id and span_id match a received span within 30 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = std::fs::remove_file(&log);
    // Logic's server span of the refused Connect (standalone runs every role as one service).
    assert_eq!(span.service, "imcloud-standalone", "{line}");
    assert_eq!(span.span.name, "imcloud.logic.Logic/Connect", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
}
