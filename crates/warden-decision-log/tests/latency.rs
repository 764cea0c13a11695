//! The request-path cost of asynchronous shipping: p99 latency of requests through the HTTP
//! PEP with every decision shipped to NATS JetStream, against the same PEP with the events
//! going nowhere. Alternating rounds in one process; the figure is printed.
//!
//! `cargo test --release -p warden-decision-log --test latency -- --nocapture`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code outside #[test] functions: a failure fails the test"
)]

mod common;

use std::time::{Duration, Instant};

use common::{delete_stream, shared_nats, unique};
use tower::ServiceExt;
use warden_decision_log::{DecisionLog, JetStreamSink, Mode};
use warden_telemetry::{DecisionEvent, Telemetry};

const ROUNDS: usize = 10;
const PER_ROUND: usize = 2_000;

fn app(telemetry: Telemetry) -> axum::Router {
    axum::Router::new()
        .route("/patients/{id}", axum::routing::get(|| async { "patient" }))
        .layer(
            warden_http::PolicyLayer::new(warden_test::StaticPdp::permit())
                .allow_anonymous()
                .telemetry(telemetry),
        )
}

async fn round(app: &axum::Router, samples: &mut Vec<Duration>) {
    for i in 0..PER_ROUND {
        let request = http::Request::get(format!("/patients/{i}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let started = Instant::now();
        let response = app.clone().oneshot(request).await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(response.status(), 200);
    }
}

fn p(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * q) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p99_with_asynchronous_shipping_against_shipping_off() {
    let Some(url) = shared_nats() else { return };
    let stream = unique("WARDEN_DL_LATENCY");
    let prefix = unique("warden.latency");
    let sink = JetStreamSink::connect(&url, &stream, &prefix)
        .await
        .unwrap();
    let log = DecisionLog::builder(sink)
        .mode(Mode::Memory { capacity: 65_536 })
        .build()
        .unwrap();
    let telemetry = Telemetry::builder().writer(log.writer()).build().unwrap();
    let shipping = app(telemetry.clone());
    let off = app(Telemetry::builder()
        .writer(|_: &DecisionEvent| {})
        .build()
        .unwrap());
    // Warm up both.
    let (mut on_samples, mut off_samples) = (Vec::new(), Vec::new());
    round(&shipping, &mut Vec::new()).await;
    round(&off, &mut Vec::new()).await;
    for _ in 0..ROUNDS {
        round(&off, &mut off_samples).await;
        round(&shipping, &mut on_samples).await;
    }
    // The PEP's own queue first (it never blocks a request: on a loaded machine it may drop,
    // and counts what it drops), then the decision log's.
    telemetry.flush().await;
    assert!(log.flush(Duration::from_secs(60)).await);
    let shipped = log.metrics().shipped();
    let dropped_by_the_pep = telemetry.metrics().dropped();
    let (on50, off50) = (p(&mut on_samples, 0.5), p(&mut off_samples, 0.5));
    let (on99, off99) = (p(&mut on_samples, 0.99), p(&mut off_samples, 0.99));
    eprintln!(
        "{} requests each: p50 {on50:?} shipping vs {off50:?} off; p99 {on99:?} shipping vs {off99:?} off (ratio {:.2}); {shipped} events shipped, {} dropped",
        ROUNDS * PER_ROUND,
        on99.as_secs_f64() / off99.as_secs_f64(),
        log.metrics().dropped()
    );
    assert_eq!(
        (shipped + dropped_by_the_pep + log.metrics().dropped()) as usize,
        (ROUNDS + 1) * PER_ROUND,
        "every event shipped or counted as dropped"
    );
    delete_stream(&url, &stream).await;
}
