//! `HTTP_LAYER_COUNT=<variant>:<requests>`: only `requests` in-process requests of one variant,
//! for instruction counts under valgrind (the difference between two request counts is the
//! cost of the requests, whatever the machine's load):
//!
//! ```text
//! HTTP_LAYER_COUNT=cached:2000 valgrind --tool=callgrind target/release/deps/http_layer-…
//! ```
//!
//! Variants: `bare`, `immediate` (a PDP that permits at once), `rego`, `cached` (Rego behind the
//! decision cache), `cached_telemetry` (the same with decision events, written every 100
//! requests, so the count holds the writer task's work too) and `casbin` (axum-casbin); every
//! request names its subject with an extension.

use std::hint::black_box;

use axum::Router;
use http::StatusCode;
use warden_telemetry::{DecisionEvent, Telemetry};

use super::{Credentials, PATH, oneshot};

/// Runs the count mode: `spec` is `<variant>:<requests>`.
pub(crate) fn run(spec: &str) {
    let (variant, requests) = spec
        .split_once(':')
        .expect("HTTP_LAYER_COUNT is <variant>:<requests>");
    let requests: u32 = requests.parse().expect("a request count");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let subject = Credentials::subject();
    let mut telemetry = None;
    let (app, credentials) = runtime.block_on(async {
        match variant {
            "bare" => (super::bare(), subject),
            "immediate" => (super::with_layer_immediate(), subject),
            "rego" => (super::with_layer(), subject),
            "cached" => (super::with_layer_cached(), subject),
            "cached_telemetry" => {
                let events = Telemetry::builder()
                    .writer(|event: &DecisionEvent| {
                        black_box(serde_json::to_vec(event).ok());
                    })
                    .build()
                    .unwrap();
                telemetry = Some(events.clone());
                (super::with_layer_cached_telemetry(events), subject)
            }
            "casbin" => (
                super::with_casbin(super::peer::casbin_layer().await),
                Credentials::Casbin(super::peer::doctor()),
            ),
            other => {
                eprintln!("HTTP_LAYER_COUNT: unknown variant `{other}`");
                std::process::exit(2);
            }
        }
    });
    runtime.block_on(requests_of(
        &app,
        &credentials,
        requests,
        telemetry.as_ref(),
    ));
}

async fn requests_of(
    app: &Router,
    credentials: &Credentials,
    requests: u32,
    telemetry: Option<&Telemetry>,
) {
    let (status, _) = oneshot(app, credentials, PATH).await;
    assert_eq!(status, StatusCode::OK);
    for i in 0..requests {
        black_box(oneshot(app, credentials, PATH).await);
        // Every request is ready at once: without a pause the writer task would never run.
        if let Some(telemetry) = telemetry
            && i % 100 == 99
        {
            telemetry.flush().await;
        }
    }
    if let Some(telemetry) = telemetry {
        telemetry.flush().await;
    }
}
