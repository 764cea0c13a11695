//! The breaker's ramp-up and what counts as a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::tests::request;
use super::*;
use crate::{AccessRequest, Decision, Pdp, PdpError, PdpFuture};

/// A PDP that answers garbage while `garbage` is set.
#[derive(Default)]
struct Garbage {
    garbage: AtomicBool,
    calls: AtomicUsize,
}

impl Pdp for Garbage {
    fn decide<'a>(&'a self, _: &'a AccessRequest) -> PdpFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let garbage = self.garbage.load(Ordering::SeqCst);
        Box::pin(async move {
            if garbage {
                Err(PdpError::malformed("malformed `obligations` in the answer"))
            } else {
                Ok(Decision::permit())
            }
        })
    }
}

#[tokio::test]
async fn malformed_answers_open_the_breaker_and_are_never_a_permit() {
    let inner = Arc::new(Garbage::default());
    inner.garbage.store(true, Ordering::SeqCst);
    let pdp = inner.clone().with_breaker(
        BreakerConfig::default()
            .consecutive_failures(3)
            .open_for(Duration::from_millis(50)),
    );
    for _ in 0..3 {
        let error = pdp.decide(&request("a")).await.unwrap_err();
        assert!(
            !error.is_unavailable(),
            "a malformed answer is not an outage: {error}"
        );
    }
    assert_eq!(pdp.state(), BreakerState::Open);
    assert_eq!(pdp.opened(), 1);
    let calls = inner.calls.load(Ordering::SeqCst);
    assert!(
        pdp.decide(&request("a"))
            .await
            .unwrap_err()
            .is_unavailable()
    );
    assert_eq!(
        inner.calls.load(Ordering::SeqCst),
        calls,
        "open: not called"
    );
    // A policy error is still an answer, not a failure.
    assert!(!PdpError::policy("rego_type_error").is_pdp_failure());
    assert!(PdpError::malformed("x").is_pdp_failure());
}

#[tokio::test]
async fn after_closing_traffic_ramps_up_instead_of_arriving_all_at_once() {
    let inner = Arc::new(Garbage::default());
    inner.garbage.store(true, Ordering::SeqCst);
    let pdp = inner.clone().with_breaker(
        BreakerConfig::default()
            .consecutive_failures(1)
            .open_for(Duration::from_millis(20))
            .ramp_up(Duration::from_millis(400)),
    );
    assert!(pdp.decide(&request("a")).await.is_err());
    assert_eq!(pdp.state(), BreakerState::Open);
    inner.garbage.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(pdp.decide(&request("a")).await.is_ok(), "the probe");
    assert_eq!(pdp.state(), BreakerState::Closed);
    // Right after closing, only a small share gets through...
    let mut early = 0;
    for _ in 0..100 {
        early += usize::from(pdp.decide(&request("a")).await.is_ok());
    }
    assert!(
        (1..=30).contains(&early),
        "{early} of 100 right after closing"
    );
    // ...about half in the middle of the ramp...
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut middle = 0;
    for _ in 0..100 {
        middle += usize::from(pdp.decide(&request("a")).await.is_ok());
    }
    assert!((30..=80).contains(&middle), "{middle} of 100 in the middle");
    // ...and all of them after it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..100 {
        assert!(pdp.decide(&request("a")).await.is_ok());
    }
}

#[tokio::test]
async fn each_route_falls_back_its_own_way() {
    use super::tests::Switch;
    use crate::{Action, Resource, Subject};
    let on = |route: &str| {
        AccessRequest::new(
            Subject::user("a"),
            Action::new("GET"),
            Resource::new("route", route),
        )
    };
    let inner = Switch::new();
    let pdp = RouteFallback::new(FallbackMode::Deny)
        .route("/health", FallbackMode::allow())
        .route(
            "/patients/{id}",
            FallbackMode::Stale {
                max_age: Duration::from_secs(60),
            },
        )
        .wrap(inner.clone());
    for route in ["/health", "/patients/{id}", "/admin"] {
        assert!(pdp.decide(&on(route)).await.unwrap().allowed);
    }
    inner.down.store(true, Ordering::SeqCst);
    let health = pdp.decide(&on("/health")).await.unwrap();
    assert_eq!(health.fallback, Some(FallbackUse::FailOpen));
    let patient = pdp.decide(&on("/patients/{id}")).await.unwrap();
    assert_eq!(patient.fallback, Some(FallbackUse::Stale));
    assert!(
        pdp.decide(&on("/admin"))
            .await
            .unwrap_err()
            .is_unavailable(),
        "deny: the error goes on"
    );
    // A resource that is not a route never takes a route's mode.
    let table = AccessRequest::new(
        Subject::user("a"),
        Action::new("GET"),
        Resource::new("table", "/health"),
    );
    assert!(pdp.decide(&table).await.is_err());
    assert_eq!(pdp.used(), 2);
}

#[tokio::test]
async fn breaker_state_and_pdp_latency_are_metrics() {
    let metrics = PdpMetrics::new();
    let inner = Arc::new(Garbage::default());
    let pdp = inner.clone().measured(metrics.clone()).with_breaker(
        BreakerConfig::default()
            .consecutive_failures(2)
            .open_for(Duration::from_millis(30))
            .metrics(metrics.clone()),
    );
    pdp.decide(&request("a")).await.unwrap();
    assert_eq!((metrics.calls(), metrics.failures()), (1, 0));
    assert_eq!(metrics.breaker_state(), 0);
    inner.garbage.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let _ = pdp.decide(&request("a")).await;
    }
    assert_eq!(
        (metrics.calls(), metrics.failures()),
        (3, 2),
        "the third call never reached the PDP"
    );
    assert_eq!(metrics.breaker_state(), 2);
    assert_eq!(metrics.breaker_opened_total(), 1);
    inner.garbage.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(pdp.state(), BreakerState::HalfOpen);
    assert_eq!(metrics.breaker_state(), 1);
    pdp.decide(&request("a")).await.unwrap();
    assert_eq!(metrics.breaker_state(), 0);
    assert_eq!(
        metrics.latency_buckets().iter().sum::<u64>(),
        metrics.calls()
    );
    let text = metrics.render_prometheus();
    for line in [
        "warden_pdp_duration_seconds_count 4",
        "warden_pdp_duration_seconds_bucket{le=\"+Inf\"} 4",
        "warden_pdp_failures_total 2",
        "warden_breaker_state 0",
        "warden_breaker_opened_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
}
