//! The JetStream sink against real NATS servers: under load, masked before the wire,
//! deduplicated by decision id, through a server stop and restart, synchronously failing closed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code outside #[test] functions: a failure fails the test"
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PrivateNats, delete_stream, event, id_counts, read_stream, shared_nats, unique};
use warden_decision::{AccessRequest, Action, Pdp, PdpError, Resource, Subject};
use warden_decision_log::{DecisionLog, JetStreamSink, LoggedPdp, Mask, Mode, Rules, Sink};
use warden_telemetry::Outcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ships_a_load_masked_with_regulations_and_deduplicates_redeliveries() {
    let Some(url) = shared_nats() else { return };
    let stream = unique("WARDEN_DL_LOAD");
    let prefix = unique("warden.test");
    let sink = Arc::new(
        JetStreamSink::connect(&url, &stream, &prefix)
            .await
            .unwrap(),
    );
    let log = DecisionLog::builder_arc(sink.clone())
        .mode(Mode::Memory { capacity: 20_000 })
        .rules(
            Rules::new()
                .mask("/attributes/email", Mask::Replace("[MASKED]".into()))
                .mask("/subject", Mask::Remove),
        )
        .regulations("clinic", ["HIPAA 164.312(a)(1)", "HIPAA 164.312(b)"])
        .build()
        .unwrap();
    let n = 5_000;
    for i in 0..n {
        let outcome = if i % 3 == 0 {
            Outcome::Deny
        } else {
            Outcome::Permit
        };
        log.log(&event(&format!("load-{i:05}"), outcome));
    }
    assert!(log.flush(Duration::from_secs(60)).await, "all shipped");
    assert_eq!(log.metrics().shipped(), n);
    assert_eq!(log.metrics().dropped(), 0);
    assert_eq!(log.queue_depth(), 0);

    let messages = read_stream(&url, &stream).await;
    assert_eq!(messages.len() as u64, n);
    let wire = serde_json::to_string(&messages).unwrap();
    assert!(!wire.contains("alice"), "masked before the wire");
    let (id, body) = &messages[0];
    assert_eq!(
        id,
        body["decision_id"].as_str().unwrap(),
        "message id = decision id"
    );
    assert_eq!(body["attributes"]["email"], "[MASKED]");
    assert_eq!(
        body["regulations"],
        serde_json::json!(["HIPAA 164.312(a)(1)", "HIPAA 164.312(b)"])
    );
    assert_eq!(body["policy"]["revision"], "1.0.0");

    // A batch shipped again (an acknowledgement lost) is stored once.
    let again: Vec<_> = (0..100)
        .map(|i| {
            log.record(&event(&format!("load-{i:05}"), Outcome::Deny))
                .unwrap()
        })
        .collect();
    sink.ship(&again).await.unwrap();
    assert_eq!(read_stream(&url, &stream).await.len() as u64, n);
    delete_stream(&url, &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_logged_while_the_server_is_down_are_shipped_once_it_is_back() {
    let Some(mut nats) = PrivateNats::start() else {
        return;
    };
    let dir = std::env::temp_dir().join(unique("warden-dl-restart"));
    let sink = JetStreamSink::connect(&nats.url(), "DECISIONS", "warden.decisions")
        .await
        .unwrap()
        .ack_timeout(Duration::from_secs(1));
    let log = DecisionLog::builder(sink)
        .mode(Mode::Disk {
            dir: dir.clone(),
            max_bytes: 64 << 20,
        })
        .build()
        .unwrap();
    for i in 0..1_000 {
        log.log(&event(&format!("before-{i:04}"), Outcome::Deny));
    }
    assert!(log.flush(Duration::from_secs(30)).await);
    nats.stop();
    for i in 0..1_000 {
        log.log(&event(&format!("during-{i:04}"), Outcome::Deny));
    }
    let started = Instant::now();
    while log.metrics().failed() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the failed attempts are counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        log.queue_depth(),
        1_000,
        "kept on disk while the sink is down"
    );
    assert!(
        log.render_prometheus()
            .contains("warden_decision_log_queue_depth{sink=\"jetstream\"} 1000")
    );
    nats.resume();
    assert!(
        log.flush(Duration::from_secs(60)).await,
        "shipped after the restart"
    );
    let messages = read_stream(&nats.url(), "DECISIONS").await;
    let counts = id_counts(&messages);
    assert_eq!(counts.len(), 2_000);
    assert!(counts.values().all(|c| *c == 1), "no duplicates");
    assert_eq!(log.metrics().dropped(), 0);
    eprintln!("{}", log.render_prometheus());
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_logging_with_the_sink_down_fails_closed() {
    let Some(mut nats) = PrivateNats::start() else {
        return;
    };
    let sink = JetStreamSink::connect(&nats.url(), "DECISIONS", "warden.decisions")
        .await
        .unwrap();
    let log = DecisionLog::builder(sink)
        .sync_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let pdp = LoggedPdp::new(warden_test::StaticPdp::permit(), log.clone())
        .synchronous_when(|r| r.resource.id == "/patients/{id}");
    let marked = AccessRequest::new(
        Subject::new("user", "alice"),
        Action::new("GET"),
        Resource::new("route", "/patients/{id}"),
    );
    let unmarked = AccessRequest::new(
        Subject::new("user", "alice"),
        Action::new("GET"),
        Resource::new("route", "/health"),
    );
    // Up: the permit comes back once the sink acknowledged it.
    assert!(pdp.decide(&marked).await.unwrap().allowed);
    assert_eq!(log.metrics().shipped(), 1);

    nats.stop();
    let started = Instant::now();
    let refused = pdp.decide(&marked).await;
    assert!(
        matches!(refused, Err(PdpError::Unavailable { .. })),
        "{refused:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the sync timeout"
    );
    assert_eq!(log.metrics().failed(), 1);
    // A route that is not marked is not held up by the sink.
    let started = Instant::now();
    assert!(pdp.decide(&unmarked).await.unwrap().allowed);
    assert!(started.elapsed() < Duration::from_millis(200));

    // Through the HTTP PEP the refusal is a 503, never the handler's answer.
    use tower::ServiceExt;
    let app = axum::Router::new()
        .route("/patients/{id}", axum::routing::get(|| async { "patient" }))
        .layer(warden_http::PolicyLayer::new(pdp).allow_anonymous());
    let response = app
        .oneshot(
            http::Request::get("/patients/7")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
}

// ANCHOR: query
/// Every denial under `regulation` logged since `since` (RFC 3339, e.g. a week ago): a pull
/// consumer on the stream's `<prefix>.deny` subject, the events read and matched on their
/// `regulations` and `time`.
async fn denials_under(
    js: &async_nats::jetstream::Context,
    stream: &str,
    prefix: &str,
    regulation: &str,
    since: &str,
) -> Vec<serde_json::Value> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    use futures_util::StreamExt;

    let stream = js.get_stream(stream).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: format!("{prefix}.deny"),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut found = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(1_000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        let mut read = 0;
        while let Some(Ok(message)) = batch.next().await {
            read += 1;
            let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            let under = event["regulations"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r == regulation));
            if under && event["time"].as_str().is_some_and(|t| t >= since) {
                found.push(event);
            }
        }
        if read == 0 {
            return found;
        }
    }
}
// ANCHOR_END: query

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_query_finds_the_weeks_denials_under_a_regulation() {
    let Some(url) = shared_nats() else { return };
    let stream = unique("WARDEN_DL_QUERY");
    let prefix = unique("warden.query");
    let log = DecisionLog::builder(
        JetStreamSink::connect(&url, &stream, &prefix)
            .await
            .unwrap(),
    )
    .regulations("clinic", ["HIPAA 164.312(a)(1)"])
    .regulations("billing", ["PCI DSS 7.2"])
    .build()
    .unwrap();
    let mut old = event("old-deny", Outcome::Deny);
    old.time = "2026-01-01T00:00:00.000000Z".into();
    log.log(&old);
    log.log(&event("clinic-deny", Outcome::Deny));
    log.log(&event("clinic-permit", Outcome::Permit));
    let mut billing = event("billing-deny", Outcome::Deny);
    billing.policy = Some(warden_decision::PolicyRevision::new("billing", "2"));
    log.log(&billing);
    assert!(log.flush(Duration::from_secs(10)).await);

    let client = async_nats::connect(&url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let found = denials_under(
        &js,
        &stream,
        &prefix,
        "HIPAA 164.312(a)(1)",
        "2026-11-24T00:00:00Z",
    )
    .await;
    let ids: Vec<&str> = found
        .iter()
        .map(|e| e["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["clinic-deny"]);
    delete_stream(&url, &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_removed_meanwhile_is_made_again_and_the_events_arrive() {
    let Some(url) = shared_nats() else { return };
    let stream = unique("WARDEN_DL_REMADE");
    let prefix = unique("warden.remade");
    let sink = JetStreamSink::connect(&url, &stream, &prefix)
        .await
        .unwrap()
        .ack_timeout(Duration::from_secs(1));
    let log = DecisionLog::builder(sink).build().unwrap();
    log.log(&event("first", Outcome::Deny));
    assert!(log.flush(Duration::from_secs(10)).await);
    delete_stream(&url, &stream).await;
    log.log(&event("second", Outcome::Deny));
    assert!(
        log.flush(Duration::from_secs(20)).await,
        "shipped to the stream made again"
    );
    let ids: Vec<String> = read_stream(&url, &stream)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["second"]);
    delete_stream(&url, &stream).await;
}
