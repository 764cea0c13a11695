//! The remote PDP client against the real Warden PDP server on 127.0.0.1, and against servers
//! that misbehave: down, slow, failing, or answering HTML, truncated or oversized bodies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::json;
use warden_decision::{
    AccessRequest, Action, Decision, Pdp, PdpError, PolicyRevision, Resource, Subject, TraceContext,
};
use warden_remote::{EvaluationsSemantic, RemotePdp};
use warden_server::Server;
use warden_test::{Answer, ScriptedPdp};

#[path = "remote_pdp/replicas.rs"]
mod replicas;

const PATIENT: &str = "/clinics/{clinic_id}/patients/{patient_id}";

fn nurse_reads(clinic: &str) -> AccessRequest {
    let mut resource = Resource::new("route", PATIENT);
    resource.properties.insert(
        "params".into(),
        json!({"clinic_id": clinic, "patient_id": "p1"}),
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

/// A running server and the means to stop it.
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

async fn start(server: Server) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.clone().serve(listener, async {
        let _ = stopped.await;
    }));
    for _ in 0..200 {
        if server.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.is_ready(), "the server did not load its policies");
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn clinic_server() -> Running {
    start(
        Server::builder()
            .policy_dir(warden_tests::clinic_policy_dir())
            .build(),
    )
    .await
}

#[tokio::test]
async fn authzen_and_opa_clients_get_the_servers_decisions() {
    let server = clinic_server().await;
    let authzen = RemotePdp::authzen(server.url()).build().unwrap();
    let opa = RemotePdp::opa(server.url(), "data.clinic.decision")
        .build()
        .unwrap();
    let discovered = RemotePdp::discover(server.url())
        .await
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        discovered.endpoint(),
        format!("{}/access/v1/evaluation", server.url())
    );
    let embedded = warden_rego::RegoPdp::from_dir(warden_tests::clinic_policy_dir()).unwrap();
    let expected = embedded.decide(&nurse_reads("c1")).await.unwrap();
    assert!(!expected.obligations.is_empty());
    for pdp in [&authzen, &opa, &discovered] {
        let permit = pdp.decide(&nurse_reads("c1")).await.unwrap();
        assert!(permit.allowed);
        assert_eq!(permit.obligations, expected.obligations);
        assert_eq!(permit.reasons, expected.reasons);
        // The package and revision; the OPA Data API has no member for the regulations.
        assert_eq!(permit.policy.id, expected.policy.id);
        assert_eq!(permit.policy.revision, expected.policy.revision);
        assert_eq!(pdp.revision(), Some(permit.policy.clone()));
        let deny = pdp.decide(&nurse_reads("c2")).await.unwrap();
        assert!(!deny.allowed);
        assert!(deny.obligations.is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn batches_use_the_evaluations_endpoint_and_its_semantics() {
    let server = clinic_server().await;
    let batch = [nurse_reads("c1"), nurse_reads("c2"), nurse_reads("c1")];
    let all = RemotePdp::authzen(server.url()).build().unwrap();
    let outcomes: Vec<bool> = all
        .decide_batch(&batch)
        .await
        .into_iter()
        .map(|d| d.unwrap().allowed)
        .collect();
    assert_eq!(outcomes, [true, false, true]);

    let first_deny = RemotePdp::authzen(server.url())
        .evaluations_semantic(EvaluationsSemantic::DenyOnFirstDeny)
        .build()
        .unwrap();
    let decisions: Vec<Decision> = first_deny
        .decide_batch(&batch)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        decisions.iter().map(|d| d.allowed).collect::<Vec<_>>(),
        [true, false, false]
    );
    assert!(decisions[2].reasons[0].message.contains("not evaluated"));
    server.stop().await;
}

#[tokio::test]
async fn many_concurrent_evaluations_all_get_their_own_answer() {
    let server = clinic_server().await;
    let pdp = Arc::new(RemotePdp::authzen(server.url()).build().unwrap());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let pdp = pdp.clone();
        tasks.push(tokio::spawn(async move {
            let clinic = if i % 3 == 0 { "c2" } else { "c1" };
            let decision = pdp.decide(&nurse_reads(clinic)).await.unwrap();
            (clinic, decision)
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (clinic, decision) = task.await.unwrap();
        assert_eq!(decision.allowed, clinic == "c1");
        assert!(ids.insert(decision.id));
    }
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let pdp = ScriptedPdp::new(|_| {
        Answer::Delay(
            Duration::from_millis(300),
            Box::new(Answer::Decision(
                Decision::permit().with_policy(PolicyRevision::new("slow", "1")),
            )),
        )
    });
    let server = start(Server::builder().pdp(Arc::new(pdp)).build()).await;
    let client = RemotePdp::authzen(server.url()).build().unwrap();
    let url = server.url();
    let in_flight = tokio::spawn(async move { client.decide(&nurse_reads("c1")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await;
    let decision = in_flight.await.unwrap().unwrap();
    assert!(decision.allowed, "the request in flight was answered");
    // And the server no longer accepts connections.
    let after = RemotePdp::authzen(url).build().unwrap();
    assert!(matches!(
        after.decide(&nurse_reads("c1")).await,
        Err(PdpError::Unavailable { .. })
    ));
}

/// What a misbehaving PDP answers.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Permit,
    Slow,
    Status500,
    Html,
    Truncated,
    Huge,
    NotFound,
    DecisionAsString,
    BadObligation,
}

async fn faulty(
    fault: Fault,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let handler = move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(headers);
            match fault {
                Fault::Permit => (StatusCode::OK, r#"{"decision": true}"#.to_owned()).into_response(),
                Fault::Slow => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    (StatusCode::OK, r#"{"decision": true}"#.to_owned()).into_response()
                }
                Fault::Status500 => (StatusCode::INTERNAL_SERVER_ERROR, r#"{"decision": true}"#.to_owned()).into_response(),
                Fault::Html => (StatusCode::OK, "<html><body>Welcome to nginx</body></html>".to_owned()).into_response(),
                Fault::Truncated => (StatusCode::OK, r#"{"decision": true, "context": {"obli"#.to_owned()).into_response(),
                Fault::Huge => (StatusCode::OK, format!(r#"{{"decision": true, "context": {{"pad": "{}"}}}}"#, "x".repeat(2 * 1024 * 1024))).into_response(),
                Fault::NotFound => (StatusCode::NOT_FOUND, "no such endpoint".to_owned()).into_response(),
                Fault::DecisionAsString => (StatusCode::OK, r#"{"decision": "true"}"#.to_owned()).into_response(),
                Fault::BadObligation => (StatusCode::OK, r#"{"decision": true, "context": {"obligations": [{"type": "redact", "paths": "$.ssn"}]}}"#.to_owned()).into_response(),
            }
        }
    };
    let app = Router::new()
        .route("/access/v1/evaluation", post(handler.clone()))
        .route("/v1/data/clinic/decision", post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test]
async fn every_failure_is_an_error_never_a_permit() {
    for fault in [
        Fault::Slow,
        Fault::Status500,
        Fault::Html,
        Fault::Truncated,
        Fault::Huge,
        Fault::NotFound,
        Fault::DecisionAsString,
        Fault::BadObligation,
    ] {
        let (addr, task) = faulty(fault, Arc::default()).await;
        for pdp in [
            RemotePdp::authzen(format!("http://{addr}")),
            RemotePdp::opa(format!("http://{addr}"), "clinic/decision"),
        ] {
            let pdp = pdp.timeout(Duration::from_millis(200)).build().unwrap();
            let started = Instant::now();
            let outcome = pdp.decide(&nurse_reads("c1")).await;
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{fault:?} took too long"
            );
            match (fault, &outcome) {
                // A 404 is a wrong URL or path: a configuration error, not an outage.
                (Fault::NotFound, Err(PdpError::Policy { .. })) => {}
                (Fault::NotFound, _) => panic!("a 404 gave {outcome:?}, not a policy error"),
                (Fault::Slow, Err(PdpError::Timeout { .. }))
                | (_, Err(PdpError::Unavailable { .. })) => {}
                // To the AuthZEN reader a malformed answer; to the OPA reader, which finds no
                // `result` in these AuthZEN-shaped bodies, an undefined document.
                (
                    Fault::DecisionAsString | Fault::BadObligation,
                    Err(PdpError::Malformed { .. } | PdpError::Policy { .. }),
                ) => {}
                _ => panic!("{fault:?} gave {outcome:?}"),
            }
        }
        task.abort();
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let pdp = RemotePdp::authzen(format!("http://{addr}"))
        .build()
        .unwrap();
    let outcome = pdp.decide(&nurse_reads("c1")).await;
    assert!(
        matches!(outcome, Err(PdpError::Unavailable { .. })),
        "{outcome:?}"
    );
    let batch = pdp
        .decide_batch(&[nurse_reads("c1"), nurse_reads("c2")])
        .await;
    assert!(
        batch
            .iter()
            .all(|d| matches!(d, Err(PdpError::Unavailable { .. })))
    );
}

#[tokio::test]
async fn trace_context_and_request_id_reach_the_pdp() {
    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let (addr, task) = faulty(Fault::Status500, seen.clone()).await;
    let pdp = RemotePdp::authzen(format!("http://{addr}"))
        .bearer_token("s3cret")
        .build()
        .unwrap();
    let incoming = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .unwrap()
        .with_request_id("req-42");
    let _ = incoming.scope(pdp.decide(&nurse_reads("c1"))).await;
    let _ = pdp.decide(&nurse_reads("c1")).await;
    let seen = seen.lock().unwrap();
    let traced = &seen[0];
    let traceparent = traced["traceparent"].to_str().unwrap();
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "a new child span"
    );
    assert_eq!(traced["x-request-id"], "req-42");
    assert_eq!(traced["authorization"], "Bearer s3cret");
    let untraced = &seen[1];
    assert!(untraced.get("traceparent").is_none());
    assert!(!untraced["x-request-id"].to_str().unwrap().is_empty());
    task.abort();
}

#[tokio::test]
async fn the_policy_layer_carries_the_callers_trace_to_the_remote_pdp() {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;
    use warden_http::PolicyLayer;

    let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let (addr, task) = faulty(Fault::Permit, seen.clone()).await;
    let pdp = RemotePdp::authzen(format!("http://{addr}"))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .layer(PolicyLayer::new(pdp).allow_anonymous());
    let request = axum::http::Request::get("/health")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .header("x-request-id", "edge-7")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let untraced = axum::http::Request::get("/health")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.oneshot(untraced).await.unwrap().status(),
        StatusCode::OK
    );

    let seen = seen.lock().unwrap();
    let traceparent = seen[0]["traceparent"].to_str().unwrap();
    assert!(traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
    assert!(traceparent.ends_with("-01"));
    assert!(!traceparent.contains("b7ad6b7169203331"));
    assert_eq!(seen[0]["x-request-id"], "edge-7");
    assert!(seen[1].get("traceparent").is_none());
    task.abort();
}

#[test]
fn invalid_urls_and_headers_are_refused_at_build() {
    for url in [
        "",
        "127.0.0.1:8181",
        "ftp://pdp",
        "http://",
        "http://pdp/?x=1",
    ] {
        assert!(RemotePdp::authzen(url).build().is_err(), "{url:?}");
    }
    assert!(
        RemotePdp::authzen("http://127.0.0.1:1")
            .header("bad header", "x")
            .build()
            .is_err()
    );
    assert!(
        RemotePdp::authzen("http://127.0.0.1:1")
            .header("x-api-key", "line\nbreak")
            .build()
            .is_err()
    );
}

/// A PDP whose revision a test switches: even revisions permit, odd ones deny.
struct Switching(Mutex<u32>);

impl Switching {
    fn set(&self, revision: u32) {
        *self.0.lock().unwrap() = revision;
    }
}

impl Pdp for Switching {
    fn decide<'a>(&'a self, _: &'a AccessRequest) -> warden_decision::PdpFuture<'a> {
        let revision = *self.0.lock().unwrap();
        let d = if revision.is_multiple_of(2) {
            Decision::permit()
        } else {
            Decision::deny()
        };
        let d = d.with_policy(PolicyRevision::new("p", format!("r{revision}")));
        Box::pin(async move { Ok(d) })
    }

    fn revision(&self) -> Option<PolicyRevision> {
        Some(PolicyRevision::new(
            "p",
            format!("r{}", *self.0.lock().unwrap()),
        ))
    }
}

async fn switching_server() -> (Arc<Switching>, Running) {
    let pdp = Arc::new(Switching(Mutex::new(0)));
    let running = start(Server::builder().pdp(pdp.clone()).build()).await;
    (pdp, running)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The cache's promise over the network: with every request a hit, a revision switch on the
/// server still reaches the PEP within the bound (1 s), through the revision watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_switch_reaches_a_cache_whose_traffic_is_all_hits() {
    use warden_decision::{CacheConfig, PdpExt};
    let (switch, running) = switching_server().await;
    let pdp = RemotePdp::authzen(running.url())
        .build()
        .unwrap()
        .with_cache(CacheConfig::default().ttl(Duration::from_secs(300)));
    let request = nurse_reads("c1");
    // Let the watch connect, then warm the cache.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pdp.decide(&request).await.unwrap().allowed);
    let mut delays = Vec::new();
    for revision in 1..=20_u32 {
        // A warm cache: the request before the switch is a hit.
        assert!(pdp.decide(&request).await.unwrap().cache_hit);
        switch.set(revision);
        let switched = Instant::now();
        loop {
            let d = pdp.decide(&request).await.unwrap();
            if d.policy.revision == format!("r{revision}") {
                assert_eq!(
                    d.allowed,
                    revision.is_multiple_of(2),
                    "the new revision decides"
                );
                break;
            }
            assert!(
                switched.elapsed() < Duration::from_secs(1),
                "revision r{revision} not seen within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(switched.elapsed());
        // Let the cache warm up again under the new revision.
        assert!(pdp.decide(&request).await.unwrap().cache_hit);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    delays.sort();
    println!(
        "revision propagation over {} switches: p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays.last().unwrap()
    );
    running.stop().await;
}

/// With the watch lost, cached decisions stop being served within the revalidation interval,
/// not after the cache's TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_watch_falls_back_to_revalidation_not_to_the_ttl() {
    use warden_decision::{CacheConfig, PdpExt};
    let (_switch, running) = switching_server().await;
    let pdp = RemotePdp::authzen(running.url())
        .revalidate_every(Duration::from_millis(300))
        .build()
        .unwrap()
        .with_cache(CacheConfig::default().ttl(Duration::from_secs(300)));
    let request = nurse_reads("c1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    pdp.decide(&request).await.unwrap();
    assert!(pdp.decide(&request).await.unwrap().cache_hit);
    let stopped = Instant::now();
    running.stop().await;
    // Within the interval (and the poll's grace) the revision is unconfirmed: no more hits.
    let mut served = 0;
    loop {
        match pdp.decide(&request).await {
            Ok(d) => {
                assert!(d.cache_hit, "only the cache can answer: the server is gone");
                served += 1;
            }
            Err(error) => {
                assert!(error.is_unavailable(), "{error}");
                break;
            }
        }
        assert!(
            stopped.elapsed() < Duration::from_millis(300 + 500 + 300),
            "still served from the cache {:?} after the watch was lost",
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pdp.revision(), None);
    println!(
        "watch lost: {served} hits, cache bypassed after {:?}",
        stopped.elapsed()
    );
}

/// A consistency token travels to the server, which refuses what it cannot meet; an answer of
/// a revision older than the one in force is refused by the client.
#[tokio::test]
async fn consistency_tokens_reach_the_server_and_old_revisions_are_refused() {
    let (switch, running) = switching_server().await;
    let pdp = RemotePdp::authzen(running.url()).build().unwrap();
    let with_token = |token: &str| nurse_reads("c1").with_context("min_revision", token);
    assert!(pdp.decide(&with_token("r0")).await.unwrap().allowed);
    let error = pdp.decide(&with_token("r7")).await.unwrap_err();
    assert!(
        error.is_unavailable() && error.to_string().contains("revision_unavailable"),
        "{error}"
    );
    switch.set(2);
    let d = pdp.decide(&with_token("r0")).await.unwrap();
    assert_eq!(d.policy.revision, "r2", "r2 came after r0: met");
    // The server rolls back to r0: a switch like any other, told by the watch.
    switch.set(0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pdp.revision().unwrap().revision, "r0");
    let d = pdp.decide(&nurse_reads("c1")).await.unwrap();
    assert_eq!(d.policy.revision, "r0");
    // Every decision says when it was made, by the client's clock bounds.
    let at = d.decided_at.unwrap();
    assert!(at <= std::time::SystemTime::now());
    running.stop().await;
}

#[tokio::test]
async fn a_pep_declaring_its_obligation_types_gets_no_permit_it_cannot_enforce() {
    let server = clinic_server().await;
    let text = std::fs::read_to_string(
        warden_tests::root().join("policies/clinic/requests/doctor-full-record.json"),
    )
    .unwrap();
    let record: AccessRequest = serde_json::from_str(&text).unwrap();

    // Without a declaration the permit stands, with its step-up obligation.
    let plain = RemotePdp::authzen(server.url()).build().unwrap();
    let permit = plain.decide(&record).await.unwrap();
    assert!(permit.allowed);
    assert!(
        permit
            .obligations
            .iter()
            .any(|o| o.type_name() == "step_up"),
        "{permit:?}"
    );

    // A PEP that carries out the profile's `custom` type only gets a deny saying why.
    let custom_only = RemotePdp::authzen(server.url())
        .supported_obligations(["custom"])
        .build()
        .unwrap();
    let deny = custom_only.decide(&record).await.unwrap();
    assert!(!deny.allowed, "{deny:?}");
    assert!(
        deny.reasons.iter().any(|r| r.message.contains("step-up")),
        "{deny:?}"
    );
    // Batches declare it too.
    let batch = custom_only
        .decide_batch(&[record.clone(), nurse_reads("c1")])
        .await;
    assert!(!batch[0].as_ref().unwrap().allowed, "{batch:?}");
    assert!(batch[1].as_ref().unwrap().allowed, "{batch:?}");

    // Both types: the permit stands.
    let both = RemotePdp::authzen(server.url())
        .supported_obligations(["step-up", "custom"])
        .build()
        .unwrap();
    assert!(both.decide(&record).await.unwrap().allowed);
}
