//! Fault drills: a `PolicyLayer` under concurrent load, deciding through the remote client
//! against the real Warden PDP server on 127.0.0.1, while the server is killed, restarted, made
//! slow, made to answer 500s and garbage.
//!
//! The stack is the one the book recommends: fallback → circuit breaker → timeout → remote.
//! In `deny` mode no request is ever forwarded without a valid decision from the server; in
//! `stale` mode only decisions within the bound are served; the breaker opens during the outage
//! and closes after recovery; and the counts of requests, decisions, fallbacks and events add up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers fail loudly"
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_decision::{
    BreakerConfig, BreakerState, CircuitBreaker, FallbackMode, FallbackUse, Pdp, PdpExt, Subject,
    Timeout,
};
use warden_http::{Authorized, PolicyLayer};
use warden_remote::RemotePdp;
use warden_server::Server;
use warden_telemetry::{DecisionEvent, Outcome, Pep, Telemetry};

/// What listens on the PDP's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The real Warden PDP server.
    Up,
    /// Nothing: the server was killed.
    Killed,
    /// A server that answers after 2 s, far past the client's timeout.
    Slow,
    /// A server that answers 500.
    Failing,
    /// A server that answers 200 with a body that is not an AuthZEN answer.
    Garbage,
}

/// The PDP's port and whatever is serving it.
struct PdpPort {
    addr: SocketAddr,
    server: Server,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PdpPort {
    async fn new() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let server = Server::builder()
            .policy_dir(warden_tests::clinic_policy_dir())
            .build();
        server.load().unwrap();
        let mut pdp = Self {
            addr,
            server,
            task: None,
        };
        pdp.enter(Phase::Up).await;
        pdp
    }

    /// Kills whatever serves the port (dropping its connections) and starts the next phase.
    async fn enter(&mut self, phase: Phase) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        if phase == Phase::Killed {
            return;
        }
        let listener = bind(self.addr).await;
        let router = match phase {
            Phase::Up => self.server.router(),
            Phase::Slow => fault(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                (StatusCode::OK, r#"{"decision": true}"#).into_response()
            }),
            Phase::Failing => fault(|| async {
                (StatusCode::INTERNAL_SERVER_ERROR, r#"{"decision": true}"#).into_response()
            }),
            Phase::Garbage => {
                fault(|| async { (StatusCode::OK, "\u{0}\u{1}garbage{{{{").into_response() })
            }
            Phase::Killed => unreachable!(),
        };
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        }));
    }
}

fn fault<F, Fut>(answer: F) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = axum::response::Response> + Send + 'static,
{
    Router::new().route("/access/v1/evaluation", post(answer))
}

/// Binds the port again; the previous listener may take a moment to let go of it.
async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = tokio::net::TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cannot bind {addr} again");
}

#[path = "fault_drills/replicas.rs"]
mod replicas;

const PATIENT: &str = "/clinics/{clinic_id}/patients/{patient_id}";

/// Who the load generator plays: a nurse of clinic c1 reading patients of c1 (permitted) and
/// of c2 (denied by the policy).
fn nurse() -> Subject {
    Subject::user("nina")
        .with_property("role", "nurse")
        .with_property("clinics", json!(["c1"]))
}

/// One response the load generator saw.
#[derive(Debug, Clone)]
struct Seen {
    clinic: &'static str,
    status: StatusCode,
    /// The decision the handler saw, for forwarded requests.
    decision: Option<Value>,
    at: Instant,
}

struct Drill {
    seen: Vec<Seen>,
    forwards: usize,
    events: Vec<DecisionEvent>,
    telemetry: Telemetry,
    breaker_opened: bool,
    breaker_at_end: BreakerState,
}

type Stack = warden_decision::Fallback<Arc<CircuitBreaker<Timeout<RemotePdp>>>>;

async fn drill(mode: FallbackMode, phases: &[(Phase, Duration)]) -> Drill {
    let mut pdp = PdpPort::new().await;
    let remote = RemotePdp::authzen(format!("http://{}", pdp.addr))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let breaker = Arc::new(
        remote
            .with_timeout(Duration::from_millis(150))
            .with_breaker(
                BreakerConfig::default()
                    .consecutive_failures(5)
                    .open_for(Duration::from_millis(150))
                    .probes(1),
            ),
    );
    let stack: Stack = breaker.clone().with_fallback(mode);

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let telemetry = Telemetry::builder()
        .capacity(100_000)
        .writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let forwards = Arc::new(AtomicUsize::new(0));
    let counted = forwards.clone();
    let app = Router::new()
        .route(
            PATIENT,
            get(move |authorized: Authorized| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    axum::Json(serde_json::to_value(authorized.decision()).unwrap())
                }
            }),
        )
        .layer(
            PolicyLayer::new(stack)
                .decision_timeout(Duration::from_secs(1))
                .telemetry(telemetry.clone()),
        );

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for worker in 0..6 {
        let (app, stop, seen) = (app.clone(), stop.clone(), seen.clone());
        workers.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let clinic = if i % 4 == 0 { "c2" } else { "c1" };
                let mut request = Request::get(format!("/clinics/{clinic}/patients/p1"))
                    .body(Body::empty())
                    .unwrap();
                request.extensions_mut().insert(nurse());
                let response = app.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let decision = (status == StatusCode::OK)
                    .then(|| serde_json::from_slice::<Value>(&body).unwrap());
                seen.lock().unwrap().push(Seen {
                    clinic,
                    status,
                    decision,
                    at: Instant::now(),
                });
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    let watching = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (breaker, stop, watching) = (breaker.clone(), stop.clone(), watching.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if breaker.state() == BreakerState::Open {
                    watching.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    for (phase, length) in phases {
        pdp.enter(*phase).await;
        tokio::time::sleep(*length).await;
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("a load worker panicked");
    }
    monitor.await.unwrap();
    let breaker_at_end = breaker.state();
    pdp.enter(Phase::Killed).await;
    telemetry.flush().await;
    let seen = seen.lock().unwrap().clone();
    let events = events.lock().unwrap().clone();
    let count = |status| seen.iter().filter(|s: &&Seen| s.status == status).count();
    eprintln!(
        "drill: {} requests: {} forwarded, {} denied, {} unavailable; {} events, breaker opened: {}",
        seen.len(),
        count(StatusCode::OK),
        count(StatusCode::FORBIDDEN),
        count(StatusCode::SERVICE_UNAVAILABLE),
        events.len(),
        watching.load(Ordering::SeqCst)
    );
    Drill {
        seen,
        forwards: forwards.load(Ordering::SeqCst),
        events,
        telemetry,
        breaker_opened: watching.load(Ordering::SeqCst),
        breaker_at_end,
    }
}

const MS: fn(u64) -> Duration = Duration::from_millis;

fn all_faults() -> Vec<(Phase, Duration)> {
    vec![
        (Phase::Up, MS(300)),
        (Phase::Killed, MS(400)),
        (Phase::Up, MS(400)),
        (Phase::Slow, MS(400)),
        (Phase::Up, MS(400)),
        (Phase::Failing, MS(400)),
        (Phase::Up, MS(400)),
        (Phase::Garbage, MS(400)),
        (Phase::Up, MS(500)),
    ]
}

/// The counts add up: one decision event per request, nothing lost without being counted.
fn check_counts(d: &Drill) {
    let total = d.seen.len();
    let metrics = d.telemetry.metrics();
    let decided: u64 = [
        Outcome::Permit,
        Outcome::Deny,
        Outcome::StepUp,
        Outcome::Unauthenticated,
        Outcome::Unavailable,
    ]
    .into_iter()
    .map(|o| metrics.decisions(Pep::Http, o))
    .sum();
    assert_eq!(decided, total as u64, "one counted decision per request");
    assert_eq!(
        d.events.len() as u64 + metrics.dropped(),
        total as u64,
        "every event written or counted as dropped"
    );
    let ok = d.seen.iter().filter(|s| s.status == StatusCode::OK).count();
    let unavailable = d
        .seen
        .iter()
        .filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(ok, d.forwards, "every 200 was forwarded, nothing else was");
    assert_eq!(
        metrics.decisions(Pep::Http, Outcome::Permit),
        ok as u64,
        "permits"
    );
    assert_eq!(
        metrics.decisions(Pep::Http, Outcome::Unavailable),
        unavailable as u64,
        "unavailable"
    );
    for s in &d.seen {
        assert!(
            matches!(
                s.status,
                StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::SERVICE_UNAVAILABLE
            ),
            "unexpected status {}",
            s.status
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_mode_never_forwards_without_a_valid_decision() {
    let d = drill(FallbackMode::Deny, &all_faults()).await;
    let revision = warden_rego::RegoPdp::from_dir(warden_tests::clinic_policy_dir())
        .unwrap()
        .revision()
        .unwrap();
    assert!(d.seen.len() > 200, "too little load: {}", d.seen.len());
    for s in &d.seen {
        if s.status == StatusCode::OK {
            let decision = s.decision.as_ref().unwrap();
            assert_eq!(s.clinic, "c1", "the policy denies c2: {decision}");
            assert_eq!(decision["decision"], true);
            assert!(decision.get("fallback").is_none(), "{decision}");
            // Only the real server names the policy and revision: a fault server's permit
            // never got through.
            assert_eq!(decision["policy"]["revision"], revision.revision.as_str());
        }
    }
    let unavailable = d
        .seen
        .iter()
        .filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(unavailable > 20, "the faults were felt: {unavailable}");
    assert!(d.forwards > 50, "the server answered between faults");
    assert!(d.breaker_opened, "the breaker opened during the outages");
    assert_eq!(d.breaker_at_end, BreakerState::Closed, "and closed after");
    assert!(
        d.events
            .iter()
            .filter(|e| e.outcome == Outcome::Unavailable)
            .all(|e| e.error_class.as_deref() == Some("pdp_unavailable")),
        "outages are classed pdp_unavailable, not violations"
    );
    check_counts(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_mode_serves_only_decisions_within_the_bound() {
    let max_age = MS(250);
    let phases = [
        (Phase::Up, MS(300)),
        (Phase::Killed, MS(700)),
        (Phase::Up, MS(300)),
        (Phase::Failing, MS(700)),
        (Phase::Up, MS(400)),
    ];
    let d = drill(FallbackMode::Stale { max_age }, &phases).await;
    let mut last_fresh: Option<Instant> = None;
    let (mut stale, mut refused_after_bound) = (0, 0);
    for s in &d.seen {
        match (s.status, s.decision.as_ref()) {
            (StatusCode::OK, Some(decision)) => {
                assert_eq!(s.clinic, "c1", "the policy denies c2: {decision}");
                if decision.get("fallback").is_some() {
                    assert_eq!(decision["fallback"], FallbackUse::Stale.as_str());
                    let fresh = last_fresh.expect("a stale decision needs an earlier fresh one");
                    // The fallback's clock starts when the fresh decision is made, which is
                    // before the load generator sees it; allow for scheduling on 2 cores.
                    assert!(
                        s.at.duration_since(fresh) <= max_age + MS(150),
                        "a stale decision {:?} old was served",
                        s.at.duration_since(fresh)
                    );
                    stale += 1;
                } else {
                    last_fresh = Some(s.at);
                }
            }
            (StatusCode::SERVICE_UNAVAILABLE, _)
                if last_fresh.is_some_and(|f| s.at.duration_since(f) > max_age) =>
            {
                refused_after_bound += 1;
            }
            _ => {}
        }
    }
    assert!(stale > 0, "stale decisions were served during the outage");
    assert!(
        refused_after_bound > 0,
        "past the bound, requests are refused"
    );
    let fallbacks = d
        .events
        .iter()
        .filter(|e| e.fallback.as_deref() == Some("stale"))
        .count();
    assert!(
        fallbacks >= stale,
        "each stale decision is in the events ({fallbacks} < {stale})"
    );
    check_counts(&d);
}

#[tokio::test]
async fn the_remote_stack_is_a_pdp_like_any_other() {
    // The wrappers compose over the remote client and keep its revision, so a decision cache
    // above them is invalidated when the server's policy changes.
    let pdp = PdpPort::new().await;
    let remote = RemotePdp::authzen(format!("http://{}", pdp.addr))
        .build()
        .unwrap();
    let stack = remote
        .clone()
        .with_timeout(MS(500))
        .with_breaker(BreakerConfig::default())
        .with_fallback(FallbackMode::Deny);
    let request = warden_decision::AccessRequest::new(
        nurse(),
        warden_decision::Action::new("GET"),
        warden_decision::Resource::new("route", "/health"),
    );
    assert!(stack.decide(&request).await.unwrap().allowed);
    assert_eq!(stack.revision(), remote.revision());
    assert!(stack.revision().is_some());
}

/// A PDP that permits until it is switched off, then is unavailable.
struct Toggle(AtomicBool);

impl Pdp for Toggle {
    fn decide<'a>(
        &'a self,
        _: &'a warden_decision::AccessRequest,
    ) -> warden_decision::PdpFuture<'a> {
        let down = self.0.load(Ordering::SeqCst);
        Box::pin(async move {
            if down {
                Err(warden_decision::PdpError::unavailable("connection refused"))
            } else {
                Ok(warden_decision::Decision::permit()
                    .with_policy(warden_decision::PolicyRevision::new("p", "1")))
            }
        })
    }
}

/// One `PolicyLayer`, three routes, three fallbacks: deny, stale, and a counted fail-open.
#[tokio::test]
async fn each_route_chooses_its_fallback_in_one_policy_layer() {
    use warden_decision::RouteFallback;
    let pdp = Arc::new(Toggle(AtomicBool::new(false)));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let telemetry = Telemetry::builder()
        .writer(move |e: &DecisionEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(PATIENT, get(|| async { "patient" }))
        .route("/admin", get(|| async { "admin" }))
        .layer(
            PolicyLayer::from_arc(pdp.clone())
                .fallback(
                    RouteFallback::new(FallbackMode::Deny)
                        .route("/health", FallbackMode::allow())
                        .route(
                            PATIENT,
                            FallbackMode::Stale {
                                max_age: MS(60_000),
                            },
                        ),
                )
                .telemetry(telemetry.clone()),
        );
    let call = |path: &str| {
        let mut request = Request::get(path).body(Body::empty()).unwrap();
        request.extensions_mut().insert(nurse());
        app.clone().oneshot(request)
    };
    for path in ["/health", "/clinics/c1/patients/p1", "/admin"] {
        assert_eq!(call(path).await.unwrap().status(), StatusCode::OK, "{path}");
    }
    pdp.0.store(true, Ordering::SeqCst);
    assert_eq!(call("/health").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        call("/clinics/c1/patients/p1").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        call("/clinics/c1/patients/p2").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no decision to reuse for p2"
    );
    assert_eq!(
        call("/admin").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    telemetry.flush().await;
    let fallbacks: Vec<Option<String>> = events
        .lock()
        .unwrap()
        .iter()
        .skip(3)
        .map(|e| e.fallback.clone())
        .collect();
    assert_eq!(
        fallbacks,
        [Some("fail_open".into()), Some("stale".into()), None, None],
        "every fallback use is in the events"
    );
    // The stale decision's event says how old it was; fresh ones say nothing.
    let events = events.lock().unwrap();
    let ages: Vec<Option<u64>> = events.iter().map(|e| e.decision_age_ms).collect();
    assert!(ages[..4].iter().all(Option::is_none), "{ages:?}");
    assert!(ages[5..].iter().all(Option::is_none), "{ages:?}");
    let stale = events
        .iter()
        .find(|e| e.fallback.as_deref() == Some("stale"))
        .unwrap();
    assert!(
        stale.decision_age_ms.is_some_and(|ms| ms < 5_000),
        "{stale:?}"
    );
}
