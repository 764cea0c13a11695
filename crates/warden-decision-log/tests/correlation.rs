//! The same decision carries the same decision id, trace id, policy revision and regulations
//! in every sink: JetStream, OTLP logs, HTTP batches and JSON lines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code outside #[test] functions: a failure fails the test"
)]

mod common;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use common::{delete_stream, event, read_stream, shared_nats, unique};
use serde_json::{Value, json};
use warden_decision_log::{
    DecisionLog, HttpBatchSink, JetStreamSink, JsonLinesSink, OtlpLogsSink, Sink,
};
use warden_telemetry::{DecisionEvent, Outcome, Telemetry};

/// A server that keeps the bodies POSTed to `/logs` (gunzipped) and `/v1/logs`.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<Vec<Value>>>) {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let otlp = Arc::new(Mutex::new(Vec::new()));
    let (b, o) = (batches.clone(), otlp.clone());
    let app = axum::Router::new()
        .route(
            "/logs",
            axum::routing::post(move |body: Bytes| {
                let b = b.clone();
                async move {
                    let mut text = String::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_string(&mut text)
                        .unwrap();
                    b.lock()
                        .unwrap()
                        .extend(serde_json::from_str::<Vec<Value>>(&text).unwrap());
                }
            }),
        )
        .route(
            "/v1/logs",
            axum::routing::post(move |body: Bytes| {
                let o = o.clone();
                async move {
                    o.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), batches, otlp)
}

fn attribute<'a>(record: &'a Value, key: &str) -> &'a Value {
    let found = record["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .expect("the attribute is there");
    &found["value"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_carries_the_same_correlation_fields() {
    let Some(nats) = shared_nats() else { return };
    let (base, batches, otlp) = receiver().await;
    let stream = unique("WARDEN_DL_CORRELATION");
    let prefix = unique("warden.correlation");
    let file = std::env::temp_dir().join(format!("{}.jsonl", unique("warden-correlation")));
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(
            JetStreamSink::connect(&nats, &stream, &prefix)
                .await
                .unwrap(),
        ),
        Arc::new(OtlpLogsSink::new(&base, "clinic").unwrap()),
        Arc::new(HttpBatchSink::new(&format!("{base}/logs")).unwrap()),
        Arc::new(JsonLinesSink::file(&file).unwrap()),
    ];
    let logs: Vec<DecisionLog> = sinks
        .into_iter()
        .map(|sink| {
            DecisionLog::builder_arc(sink)
                .regulations("clinic", ["HIPAA 164.312(a)(1)", "HIPAA 164.312(b)"])
                .build()
                .unwrap()
        })
        .collect();
    let fan_out = logs.clone();
    let telemetry = Telemetry::builder()
        .writer(move |e: &DecisionEvent| {
            fan_out.iter().for_each(|l| {
                l.log(e);
            })
        })
        .build()
        .unwrap();
    let mut denied = event("0193a000-0000-7000-8000-00000000c0de", Outcome::Deny);
    denied.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
    denied.span_id = Some("b7ad6b7169203331".into());
    telemetry.emit(denied);
    telemetry.flush().await;
    for log in &logs {
        assert!(log.flush(Duration::from_secs(10)).await);
    }

    let want = json!({
        "decision_id": "0193a000-0000-7000-8000-00000000c0de",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "revision": "1.0.0",
        "regulations": ["HIPAA 164.312(a)(1)", "HIPAA 164.312(b)"],
    });
    let of_event = |e: &Value| {
        json!({
            "decision_id": e["decision_id"], "trace_id": e["trace_id"],
            "revision": e["policy"]["revision"], "regulations": e["regulations"],
        })
    };
    let from_stream = read_stream(&nats, &stream).await;
    assert_eq!(from_stream[0].0, "0193a000-0000-7000-8000-00000000c0de");
    assert_eq!(of_event(&from_stream[0].1), want, "JetStream");
    assert_eq!(of_event(&batches.lock().unwrap()[0]), want, "HTTP batch");
    let line = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        of_event(&serde_json::from_str(line.trim()).unwrap()),
        want,
        "file"
    );

    let export = otlp.lock().unwrap()[0].clone();
    let record = &export["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    let body: Value =
        serde_json::from_str(record["body"]["stringValue"].as_str().unwrap()).unwrap();
    assert_eq!(of_event(&body), want, "OTLP body");
    assert_eq!(record["traceId"], want["trace_id"]);
    assert_eq!(record["spanId"], "b7ad6b7169203331");
    assert_eq!(
        attribute(record, "warden.decision_id")["stringValue"],
        want["decision_id"]
    );
    assert_eq!(
        attribute(record, "warden.policy.revision")["stringValue"],
        "1.0.0"
    );
    assert_eq!(
        attribute(record, "warden.regulations")["arrayValue"]["values"],
        json!([{"stringValue": "HIPAA 164.312(a)(1)"}, {"stringValue": "HIPAA 164.312(b)"}])
    );
    delete_stream(&nats, &stream).await;
    let _ = std::fs::remove_file(&file);
}
