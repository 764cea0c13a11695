//! `HTTP_LAYER_COUNT=<variant>:<requests>`: only `requests` in-process requests of one variant,
//! for instruction counts under valgrind (the difference between two request counts is the
//! cost of the requests, whatever the machine's load):
//!
//! ```text
//! HTTP_LAYER_COUNT=cached:2000 valgrind --tool=callgrind target/release/deps/http_layer-…
//! ```
//!
//! Variants: `bare`, `immediate` (a PDP that permits at once), `rego`, `cached` (Rego behind the
//! decision cache), `cached_telemetry` (the same with decision events) and `casbin`
//! (axum-casbin); every request names its subject with an extension.

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
    let (app, credentials) = runtime.block_on(async {
        match variant {
            "bare" => (super::bare(), subject),
            "immediate" => (super::with_layer_immediate(), subject),
            "rego" => (super::with_layer(), subject),
            "cached" => (super::with_layer_cached(), subject),
            "cached_telemetry" => {
                let telemetry = Telemetry::builder()
                    .writer(|event: &DecisionEvent| {
                        black_box(serde_json::to_vec(event).ok());
                    })
                    .build()
                    .unwrap();
                (super::with_layer_cached_telemetry(telemetry), subject)
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
    runtime.block_on(requests_of(&app, &credentials, requests));
}

async fn requests_of(app: &Router, credentials: &Credentials, requests: u32) {
    let (status, _) = oneshot(app, credentials, PATH).await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..requests {
        black_box(oneshot(app, credentials, PATH).await);
    }
}
