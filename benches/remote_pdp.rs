//! Remote decisions: the AuthZEN client against the Warden PDP server over loopback (keep-alive),
//! beside its floor, the same client against a bare axum endpoint that answers a fixed decision
//! without evaluating anything.
//!
//! The servers run on a multi-threaded runtime of their own; the client on a current-thread
//! runtime. After criterion's report, the bench times each path itself and prints p50 / p99
//! latency of sequential calls and the throughput of 32 concurrent callers.
//!
//! Run: `cargo bench -p warden-benches --bench remote_pdp -- --noplot`.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "benchmark setup fails loudly"
)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use criterion::Criterion;
use serde_json::json;
use tokio::runtime::Runtime;
use warden_decision::{AccessRequest, Action, Pdp, Resource, Subject};
use warden_remote::RemotePdp;
use warden_server::Server;

const SEQUENTIAL: usize = 3_000;
const CONCURRENT_CALLERS: usize = 32;
const CONCURRENT_TOTAL: usize = 6_000;

fn request() -> AccessRequest {
    let mut resource = Resource::new("route", "/clinics/{clinic_id}/patients/{patient_id}");
    resource.properties.insert(
        "params".into(),
        json!({"clinic_id": "c1", "patient_id": "p1"}),
    );
    resource.properties.insert("query".into(), json!({}));
    AccessRequest::new(
        Subject::user("nina")
            .with_property("role", "nurse")
            .with_property("clinics", json!(["c1"])),
        Action::new("GET"),
        resource,
    )
}

fn serve(server: &Runtime, app: Router) -> SocketAddr {
    server.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    })
}

/// The floor: an endpoint that answers what the Warden server answers for the bench's
/// request, without deciding.
fn echo(answer: String) -> Router {
    Router::new().route(
        "/access/v1/evaluation",
        post(move || {
            let answer = answer.clone();
            async move { ([("content-type", "application/json")], answer) }
        }),
    )
}

struct Setup {
    client: Runtime,
    _server: Runtime,
    paths: Vec<(&'static str, Arc<RemotePdp>)>,
}

fn setup() -> Setup {
    let server = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut paths = Vec::new();
    let mut answer = None;
    for (name, dir) in [
        ("warden_server/rego", "policies/clinic"),
        ("warden_server/cedar", "policies/clinic-cedar"),
    ] {
        let pdp = Server::builder().policy_dir(root.join(dir)).build();
        pdp.load().unwrap();
        let addr = serve(&server, pdp.router());
        let remote = RemotePdp::authzen(format!("http://{addr}"))
            .build()
            .unwrap();
        let decision = client.block_on(remote.decide(&request())).unwrap();
        assert!(decision.allowed, "{name} permits the bench's request");
        answer.get_or_insert_with(|| {
            serde_json::to_string(
                &warden_decision::authzen::EvaluationResponse::from_decision(&decision),
            )
            .unwrap()
        });
        paths.push((name, Arc::new(remote)));
    }
    let addr = serve(&server, echo(answer.unwrap()));
    let floor = RemotePdp::authzen(format!("http://{addr}"))
        .build()
        .unwrap();
    assert!(client.block_on(floor.decide(&request())).unwrap().allowed);
    paths.insert(0, ("floor/axum_echo", Arc::new(floor)));
    Setup {
        client,
        _server: server,
        paths,
    }
}

fn group(c: &mut Criterion, s: &Setup) {
    let mut group = c.benchmark_group("remote_pdp");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    let request = request();
    for (name, pdp) in &s.paths {
        group.bench_function(*name, |b| {
            b.to_async(&s.client)
                .iter(|| async { black_box(pdp.decide(&request).await.unwrap()) });
        });
    }
    group.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(s: &Setup) {
    println!();
    println!(
        "remote_pdp summary ({SEQUENTIAL} sequential calls; then {CONCURRENT_TOTAL} calls from {CONCURRENT_CALLERS} concurrent callers):"
    );
    let request = Arc::new(request());
    let mut floor_p50 = None;
    for (name, pdp) in &s.paths {
        let mut latencies = s.client.block_on(async {
            for _ in 0..SEQUENTIAL / 10 {
                pdp.decide(&request).await.unwrap();
            }
            let mut latencies = Vec::with_capacity(SEQUENTIAL);
            for _ in 0..SEQUENTIAL {
                let started = Instant::now();
                black_box(pdp.decide(&request).await.unwrap());
                latencies.push(started.elapsed());
            }
            latencies
        });
        latencies.sort();
        let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
        let rate = s.client.block_on(async {
            let started = Instant::now();
            let mut callers = Vec::new();
            for _ in 0..CONCURRENT_CALLERS {
                let (pdp, request) = (pdp.clone(), request.clone());
                callers.push(tokio::spawn(async move {
                    for _ in 0..CONCURRENT_TOTAL / CONCURRENT_CALLERS {
                        black_box(pdp.decide(&request).await.unwrap());
                    }
                }));
            }
            for caller in callers {
                caller.await.unwrap();
            }
            CONCURRENT_TOTAL as f64 / started.elapsed().as_secs_f64()
        });
        let ratio = match floor_p50 {
            None => {
                floor_p50 = Some(p50);
                String::new()
            }
            Some(floor) => format!(
                ", p50 ratio to the floor {:.2}",
                p50.as_secs_f64() / Duration::as_secs_f64(&floor)
            ),
        };
        println!(
            "remote_pdp {name}: p50 {:.0} µs, p99 {:.0} µs, {:.0} decisions/s concurrent{ratio}",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            rate
        );
    }
}

fn main() {
    let setup = setup();
    let mut criterion = Criterion::default().configure_from_args();
    group(&mut criterion, &setup);
    criterion.final_summary();
    // Only under `cargo bench`; `cargo test --benches` runs each benchmark once.
    if std::env::args().any(|arg| arg == "--bench") {
        summary(&setup);
    }
}
