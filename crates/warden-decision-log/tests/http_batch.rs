//! The OPA-style HTTP batch sink against a real HTTP server: gzip JSON arrays, masked, retried
//! until acknowledged.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code outside #[test] functions: a failure fails the test"
)]

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::event;
use warden_decision_log::{DecisionLog, HttpBatchSink, Mask, Mode, Rules};
use warden_telemetry::Outcome;

#[derive(Default)]
struct Received {
    events: Mutex<Vec<serde_json::Value>>,
    refuse_first: AtomicUsize,
}

async fn serve(received: Arc<Received>) -> String {
    let app = axum::Router::new().route(
        "/logs",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let received = received.clone();
            async move {
                if received.refuse_first.load(Ordering::SeqCst) > 0 {
                    received.refuse_first.fetch_sub(1, Ordering::SeqCst);
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                assert_eq!(headers["content-encoding"], "gzip");
                let mut text = String::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_string(&mut text)
                    .unwrap();
                let batch: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
                received.events.lock().unwrap().extend(batch);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/logs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_gzipped_masked_and_filtered_after_refusals() {
    let received = Arc::new(Received::default());
    received.refuse_first.store(2, Ordering::SeqCst);
    let url = serve(received.clone()).await;
    let log = DecisionLog::builder(HttpBatchSink::new(&url).unwrap())
        .mode(Mode::Memory { capacity: 10_000 })
        .rules(
            Rules::new()
                .outcomes([Outcome::Deny, Outcome::Unavailable])
                .mask("/attributes/email", Mask::Remove),
        )
        .build()
        .unwrap();
    for i in 0..3_000 {
        let outcome = if i % 2 == 0 {
            Outcome::Deny
        } else {
            Outcome::Permit
        };
        log.log(&event(&format!("http-{i}"), outcome));
    }
    assert!(log.flush(Duration::from_secs(30)).await);
    let events = received.events.lock().unwrap();
    assert_eq!(events.len(), 1_500, "denies only");
    assert_eq!(log.metrics().filtered(), 1_500);
    assert!(
        log.metrics().failed() > 0,
        "the refused batches are counted"
    );
    assert!(events.iter().all(|e| e["outcome"] == "deny"));
    assert!(
        !serde_json::to_string(&*events)
            .unwrap()
            .contains("alice@example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_memory_queue_drops_and_counts_without_blocking() {
    // Nothing listens: every batch fails, the queue fills.
    let log = DecisionLog::builder(HttpBatchSink::new("http://127.0.0.1:9/logs").unwrap())
        .mode(Mode::Memory { capacity: 100 })
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    for i in 0..10_000 {
        log.log(&event(&format!("drop-{i}"), Outcome::Deny));
    }
    assert!(started.elapsed() < Duration::from_secs(1), "never blocks");
    assert!(
        log.metrics().dropped() >= 9_000,
        "{}",
        log.metrics().dropped()
    );
    assert!(log.render_prometheus().contains(&format!(
        "warden_decision_log_dropped_total{{sink=\"http\"}} {}",
        log.metrics().dropped()
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_is_dropped_and_counted_and_does_not_stop_the_rest() {
    let received = Arc::new(Received::default());
    let url = serve(received.clone()).await;
    let log = DecisionLog::builder(HttpBatchSink::new(&url).unwrap())
        .build()
        .unwrap();
    let mut huge = event("huge", Outcome::Deny);
    huge.attributes.insert(
        "note".into(),
        "x".repeat(warden_decision_log::MAX_EVENT_BYTES).into(),
    );
    assert_eq!(log.log(&huge), warden_decision_log::Logged::Dropped);
    assert!(log.log_sync(&huge).await.is_err());
    log.log(&event("after", Outcome::Deny));
    assert!(log.flush(Duration::from_secs(10)).await);
    let events = received.events.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["decision_id"], "after");
    assert_eq!(log.metrics().dropped(), 2);
}
