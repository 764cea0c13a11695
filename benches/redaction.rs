//! JSON redaction beside its floor, serde_json parse + serialize of the same body.
//!
//! DESIGN §9 target: redacting 3 paths (one wildcard, one recursive descent) in a 1 MB JSON
//! body costs at most 1.20 × parsing and serializing it with serde_json. A second group measures
//! what a redaction adds to a 2 KB response through the `PolicyLayer` (in-process, `oneshot`):
//! the same permit with and without the `redact` obligation (target: at most 10 µs).
//!
//! Run: `cargo bench -p warden-benches --bench redaction -- --noplot`.
#![expect(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::Criterion;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_decision::{Decision, Masker, Obligation};
use warden_http::{PolicyLayer, Redactor};
use warden_test::StaticPdp;

/// A document of `n` patients, about 210 bytes each.
fn document(n: usize) -> Vec<u8> {
    let patients: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("p{i}"), "clinic": format!("c{}", i % 7), "name": format!("Patient Number {i}"),
                "ssn": format!("{:03}-{:02}-{:04}", i % 1000, i % 100, i % 10000),
                "born": "1985-12-10", "notes": {"text": "Allergic to penicillin", "by": "alice"},
                "visits": [{"at": "2026-10-02", "summary": "check-up"}]
            })
        })
        .collect();
    serde_json::to_vec(&json!({"patients": patients, "meta": {"internal": "x", "count": n}}))
        .unwrap()
}

fn obligations() -> Vec<Obligation> {
    [
        json!({"type": "redact", "paths": ["$.patients[*].ssn"], "with": "last4"}),
        json!({"type": "redact", "paths": ["$..notes"], "with": "remove"}),
        json!({"type": "redact", "paths": ["$.meta.internal"], "with": "null"}),
    ]
    .into_iter()
    .map(|o| Obligation::from_json(o).unwrap())
    .collect()
}

fn floor(body: &[u8]) -> Vec<u8> {
    let value: Value = serde_json::from_slice(body).unwrap();
    serde_json::to_vec(&value).unwrap()
}

fn own_ratio(name: &str, iters: u32, mut floor: impl FnMut(), mut warden: impl FnMut()) -> String {
    let (mut floor_total, mut warden_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..4 {
        let started = Instant::now();
        for _ in 0..iters {
            floor();
        }
        floor_total += started.elapsed();
        let started = Instant::now();
        for _ in 0..iters {
            warden();
        }
        warden_total += started.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(iters * 4);
    format!(
        "{name}: floor {:.1} µs, warden {:.1} µs, ratio {:.2}, added {:.1} µs",
        per(floor_total),
        per(warden_total),
        per(warden_total) / per(floor_total),
        per(warden_total) - per(floor_total)
    )
}

fn router(decision: Decision, body: Vec<u8>) -> Router {
    Router::new()
        .route(
            "/patients",
            get(move || {
                let body = body.clone();
                async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .layer(PolicyLayer::new(StaticPdp::new(decision)).allow_anonymous())
}

/// `REDACTION_COUNT=<floor|warden>:<runs>` makes the bench only run the 1 MB floor or the
/// 1 MB redaction `runs` times, for instruction counts under valgrind (the difference between
/// two run counts is the cost of the runs).
fn count_only(spec: &str) {
    let (side, runs) = spec.split_once(':').unwrap();
    let big = document(5_000);
    let redactor = Redactor::new(&obligations(), Masker::new()).unwrap();
    for _ in 0..runs.parse::<u32>().unwrap() {
        if side == "floor" {
            black_box(floor(&big));
        } else {
            black_box(redactor.redact_json(&big).unwrap());
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("REDACTION_COUNT") {
        return count_only(&spec);
    }
    let big = document(5_000);
    assert!(big.len() > 1_000_000, "{} bytes", big.len());
    let redactor = Redactor::new(&obligations(), Masker::new()).unwrap();
    let out = redactor.redact_json(&big).unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("penicillin"));

    let small = document(9);
    assert!(
        (1_800..2_400).contains(&small.len()),
        "{} bytes",
        small.len()
    );
    let plain = router(Decision::permit(), small.clone());
    let mut redacting = Decision::permit();
    redacting.obligations = obligations();
    let redacted = router(redacting, small.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let fetch = |app: &Router| {
        let app = app.clone();
        runtime.block_on(async move {
            let response = app
                .oneshot(Request::get("/patients").body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert!(response.status().is_success());
            response.into_body().collect().await.unwrap().to_bytes()
        })
    };
    assert!(String::from_utf8_lossy(&fetch(&plain)).contains("penicillin"));
    assert!(!String::from_utf8_lossy(&fetch(&redacted)).contains("penicillin"));

    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = criterion.benchmark_group("redaction/1mb");
    group.bench_function("serde_json_parse_serialize", |b| {
        b.iter(|| black_box(floor(&big)))
    });
    group.bench_function("warden_redact_3_paths", |b| {
        b.iter(|| black_box(redactor.redact_json(&big).unwrap()))
    });
    group.finish();
    let mut group = criterion.benchmark_group("redaction/2kb_through_layer");
    group.bench_function("permit", |b| b.iter(|| black_box(fetch(&plain))));
    group.bench_function("permit_with_redact", |b| {
        b.iter(|| black_box(fetch(&redacted)))
    });
    group.finish();
    criterion.final_summary();

    println!();
    println!(
        "{} (target ≤ 1.20)",
        own_ratio(
            "redaction/1mb",
            20,
            || {
                black_box(floor(&big));
            },
            || {
                black_box(redactor.redact_json(&big).unwrap());
            },
        )
    );
    println!(
        "{}",
        own_ratio(
            "redaction/2kb_redactor",
            5_000,
            || {
                black_box(floor(&small));
            },
            || {
                black_box(redactor.redact_json(&small).unwrap());
            },
        )
    );
    println!(
        "{} (target: added ≤ 10 µs)",
        own_ratio(
            "redaction/2kb_through_layer",
            5_000,
            || {
                black_box(fetch(&plain));
            },
            || {
                black_box(fetch(&redacted));
            },
        )
    );
}
