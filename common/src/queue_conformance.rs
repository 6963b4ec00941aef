//! The behaviour every queue implementation must show; run by each implementation's tests.
//!
//! `run(producer, consumer)`: 3 keys × 20 interleaved messages all arrive, each with its key and its
//! production time, each key's in order, and every delivery is committed. Run against the embedded queue
//! (`queue_memory.rs`) and against Kafka at `IMCLOUD_TEST_KAFKA_BROKERS` on a unique topic and group
//! (`queue_kafka.rs`). Test-only (`#[cfg(test)]`), like every conformance suite.

use std::collections::HashMap;
use std::time::Duration;

use crate::queue::{QueueConsumer, QueueProducer};

/// Sends interleaved messages under three keys and checks each key's messages arrive complete and in order.
pub async fn run(producer: &dyn QueueProducer, consumer: &dyn QueueConsumer) {
    const PER_KEY: u32 = 20;
    let keys = ["conf-a", "conf-b", "conf-c"];
    for i in 0..PER_KEY {
        for k in keys {
            producer
                .send(k, format!("{k}:{i}").into_bytes())
                .await
                .expect("send");
        }
    }
    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    for _ in 0..PER_KEY * keys.len() as u32 {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("message within 30 s")
            .expect("recv");
        let text = String::from_utf8(d.payload.clone()).expect("utf8 payload");
        let (k, i) = text.split_once(':').expect("key:index");
        assert_eq!(k, d.key, "key travels with the message");
        // When it was produced (whole milliseconds on Kafka): within the run, and not in the future.
        let waited = d
            .produced_at
            .expect("production time travels with the message")
            .elapsed()
            .expect("produced in the past");
        assert!(waited < Duration::from_secs(60), "produced {waited:?} ago");
        seen.entry(k.to_string())
            .or_default()
            .push(i.parse().expect("index"));
        consumer.commit(&d).await.expect("commit");
    }
    for k in keys {
        assert_eq!(
            seen.get(k).cloned().unwrap_or_default(),
            (0..PER_KEY).collect::<Vec<_>>(),
            "order of {k}"
        );
    }
    // Record headers (the trace context) travel with the message.
    let headers = vec![
        (
            "traceparent".to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
        ),
        ("tracestate".to_string(), "imcloud=1".to_string()),
    ];
    producer
        .send_with_headers("conf-h", b"with headers".to_vec(), headers.clone())
        .await
        .expect("send with headers");
    let d = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("message within 30 s")
        .expect("recv");
    assert_eq!(d.payload, b"with headers");
    assert_eq!(d.headers, headers, "headers travel with the message");
    consumer.commit(&d).await.expect("commit");
}
