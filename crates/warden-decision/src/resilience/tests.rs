use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::{
    AccessRequest, Action, Decision, Obligation, PdpError, PdpFuture, PolicyRevision, Resource,
    Subject,
};

/// A PDP whose behaviour and revision a test switches, and that counts its calls.
#[derive(Default)]
pub(super) struct Switch {
    calls: AtomicUsize,
    pub(super) revision: Mutex<String>,
    pub(super) down: AtomicBool,
    pub(super) broken: AtomicBool,
    pub(super) delay_ms: AtomicU32,
    step_up: AtomicBool,
}

impl Switch {
    pub(super) fn new() -> Arc<Self> {
        let s = Self::default();
        *s.revision.lock().unwrap() = "1".into();
        Arc::new(s)
    }

    pub(super) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Pdp for Switch {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let delay = self.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(PdpError::unavailable("connection refused"));
            }
            if self.broken.load(Ordering::SeqCst) {
                return Err(PdpError::policy("rego_type_error"));
            }
            let revision = self.revision.lock().unwrap().clone();
            // Revision 1 permits, revision 2 denies.
            let mut d = if revision == "1" {
                Decision::permit()
            } else {
                Decision::deny()
            };
            d = d
                .with_policy(PolicyRevision::new("p", revision))
                .with_reason(request.subject.id.clone());
            if self.step_up.load(Ordering::SeqCst) {
                d = d.with_obligation(
                    Obligation::from_json(json!({"type": "step_up", "acr_values": "mfa"})).unwrap(),
                );
            }
            Ok(d)
        })
    }

    fn revision(&self) -> Option<PolicyRevision> {
        Some(PolicyRevision::new(
            "p",
            self.revision.lock().unwrap().clone(),
        ))
    }
}

pub(super) fn request(subject: &str) -> AccessRequest {
    AccessRequest::new(
        Subject::user(subject),
        Action::new("GET"),
        Resource::new("route", "/"),
    )
    .with_context("time", subject.len().to_string())
}

#[tokio::test]
async fn cache_hits_misses_and_fresh_ids() {
    let inner = Switch::new();
    let pdp = inner.clone().with_cache(CacheConfig::default());
    let a = pdp.decide(&request("alice")).await.unwrap();
    let b = pdp.decide(&request("alice")).await.unwrap();
    assert!(a.allowed && b.allowed);
    assert_ne!(a.id, b.id, "every request gets its own decision id");
    assert_eq!(inner.calls(), 1);
    assert_eq!(pdp.stats(), CacheStats { hits: 1, misses: 1 });
    // Another subject is another key; `time` is ignored by default.
    let mut later = request("alice");
    later
        .context
        .insert("time".into(), json!("2030-01-01T00:00:00Z"));
    pdp.decide(&later).await.unwrap();
    pdp.decide(&request("bob")).await.unwrap();
    assert_eq!(inner.calls(), 2);
}

#[tokio::test]
async fn a_permit_cached_under_one_revision_is_never_served_under_the_next() {
    let inner = Switch::new();
    let pdp = inner.clone().with_cache(CacheConfig::default());
    assert!(pdp.decide(&request("alice")).await.unwrap().allowed);
    *inner.revision.lock().unwrap() = "2".into();
    let d = pdp.decide(&request("alice")).await.unwrap();
    assert!(!d.allowed, "revision 2 denies");
    assert_eq!(d.policy.revision, "2");
    assert_eq!(inner.calls(), 2);
    // And back: entries of revision 2 are dropped too.
    *inner.revision.lock().unwrap() = "1".into();
    assert!(pdp.decide(&request("alice")).await.unwrap().allowed);
}

#[tokio::test]
async fn a_decision_made_under_a_revision_that_changed_meanwhile_is_not_cached() {
    let inner = Switch::new();
    inner.delay_ms.store(50, Ordering::SeqCst);
    let pdp = Arc::new(inner.clone().with_cache(CacheConfig::default()));
    let deciding = {
        let pdp = pdp.clone();
        tokio::spawn(async move { pdp.decide(&request("alice")).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    *inner.revision.lock().unwrap() = "2".into();
    let first = deciding.await.unwrap().unwrap();
    assert_eq!(first.policy.revision, "2", "decided after the reload");
    inner.delay_ms.store(0, Ordering::SeqCst);
    let again = pdp.decide(&request("alice")).await.unwrap();
    assert_eq!(again.policy.revision, "2");
}

#[tokio::test]
async fn errors_and_never_cache_obligations_are_not_cached() {
    let inner = Switch::new();
    let pdp = inner
        .clone()
        .with_cache(CacheConfig::default().never_cache("step_up"));
    inner.down.store(true, Ordering::SeqCst);
    assert!(pdp.decide(&request("alice")).await.is_err());
    assert!(pdp.decide(&request("alice")).await.is_err());
    assert_eq!(inner.calls(), 2);
    inner.down.store(false, Ordering::SeqCst);
    inner.step_up.store(true, Ordering::SeqCst);
    pdp.decide(&request("alice")).await.unwrap();
    pdp.decide(&request("alice")).await.unwrap();
    assert_eq!(inner.calls(), 4);
}

#[tokio::test]
async fn concurrent_identical_requests_are_decided_once() {
    let inner = Switch::new();
    inner.delay_ms.store(30, Ordering::SeqCst);
    let pdp = Arc::new(inner.clone().with_cache(CacheConfig::default()));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let pdp = pdp.clone();
        tasks.push(tokio::spawn(async move {
            pdp.decide(&request("alice")).await.unwrap()
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let d = t.await.unwrap();
        assert_eq!(d.reasons[0].message, "alice");
        ids.insert(d.id);
    }
    assert_eq!(inner.calls(), 1);
    assert_eq!(ids.len(), 32);
}

#[tokio::test]
async fn the_cache_is_bounded_and_entries_expire() {
    let inner = Switch::new();
    let pdp = inner.clone().with_cache(
        CacheConfig::default()
            .max_entries(50)
            .ttl(Duration::from_millis(200)),
    );
    for i in 0..500 {
        pdp.decide(&request(&format!("user-{i}"))).await.unwrap();
    }
    pdp.cache.run_pending_tasks().await;
    assert!(pdp.entry_count() <= 50, "{} entries", pdp.entry_count());
    let calls = inner.calls();
    pdp.decide(&request("user-499")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pdp.decide(&request("user-499")).await.unwrap();
    assert!(inner.calls() > calls, "expired entries are decided again");
    let bytes = inner
        .clone()
        .with_cache(CacheConfig::default().max_bytes(10_000));
    for i in 0..500 {
        bytes.decide(&request(&format!("user-{i}"))).await.unwrap();
    }
    bytes.cache.run_pending_tasks().await;
    assert!(bytes.cache.weighted_size() <= 10_000);
}

#[tokio::test]
async fn timeout_bounds_a_slow_pdp() {
    let inner = Switch::new();
    inner.delay_ms.store(500, Ordering::SeqCst);
    let pdp = inner.with_timeout(Duration::from_millis(50));
    let err = pdp.decide(&request("a")).await.unwrap_err();
    assert!(matches!(err, PdpError::Timeout { .. }));
    assert!(err.is_unavailable());
}

#[tokio::test]
async fn breaker_opens_after_consecutive_failures_and_recovers_through_a_probe() {
    let inner = Switch::new();
    let pdp = inner.clone().with_breaker(
        BreakerConfig::default()
            .consecutive_failures(3)
            .open_for(Duration::from_millis(100)),
    );
    inner.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(pdp.decide(&request("a")).await.is_err());
    }
    assert_eq!(pdp.state(), BreakerState::Open);
    let err = pdp.decide(&request("a")).await.unwrap_err();
    assert!(err.to_string().contains("circuit open"));
    assert_eq!(inner.calls(), 3, "an open breaker does not call the PDP");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(pdp.state(), BreakerState::HalfOpen);
    assert!(pdp.decide(&request("a")).await.is_err(), "the probe fails");
    assert_eq!(pdp.state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(120)).await;
    inner.down.store(false, Ordering::SeqCst);
    assert!(pdp.decide(&request("a")).await.unwrap().allowed);
    assert_eq!(pdp.state(), BreakerState::Closed);
}

#[tokio::test]
async fn policy_errors_and_denies_do_not_open_the_breaker() {
    let inner = Switch::new();
    let pdp = inner
        .clone()
        .with_breaker(BreakerConfig::default().consecutive_failures(2));
    inner.broken.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        assert!(pdp.decide(&request("a")).await.is_err());
    }
    assert_eq!(pdp.state(), BreakerState::Closed);
}

#[tokio::test]
async fn breaker_opens_on_a_failure_rate() {
    let inner = Switch::new();
    let pdp = inner.clone().with_breaker(
        BreakerConfig::default()
            .consecutive_failures(100)
            .failure_rate(0.5, Duration::from_secs(10), 10),
    );
    for i in 0..10 {
        inner.down.store(i % 2 == 0, Ordering::SeqCst);
        let _ = pdp.decide(&request("a")).await;
    }
    assert_eq!(pdp.state(), BreakerState::Open);
}

#[tokio::test]
async fn a_cancelled_probe_does_not_wedge_the_breaker() {
    let inner = Switch::new();
    let pdp = Arc::new(
        inner.clone().with_breaker(
            BreakerConfig::default()
                .consecutive_failures(1)
                .open_for(Duration::from_millis(50)),
        ),
    );
    inner.down.store(true, Ordering::SeqCst);
    let _ = pdp.decide(&request("a")).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    inner.down.store(false, Ordering::SeqCst);
    inner.delay_ms.store(1_000, Ordering::SeqCst);
    let probe = tokio::time::timeout(Duration::from_millis(20), pdp.decide(&request("a"))).await;
    assert!(probe.is_err(), "the probe was cancelled");
    inner.delay_ms.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(pdp.decide(&request("a")).await.unwrap().allowed);
    assert_eq!(pdp.state(), BreakerState::Closed);
}

#[tokio::test]
async fn fallback_deny_lets_the_error_through() {
    let inner = Switch::new();
    let pdp = inner.clone().with_fallback(FallbackMode::Deny);
    inner.down.store(true, Ordering::SeqCst);
    assert!(
        pdp.decide(&request("a"))
            .await
            .unwrap_err()
            .is_unavailable()
    );
    assert_eq!(pdp.used(), 0);
}

#[tokio::test]
async fn fallback_stale_serves_only_decisions_within_the_bound() {
    let inner = Switch::new();
    let pdp = inner.clone().with_fallback(FallbackMode::Stale {
        max_age: Duration::from_millis(150),
    });
    let fresh = pdp.decide(&request("alice")).await.unwrap();
    assert!(fresh.fallback.is_none());
    inner.down.store(true, Ordering::SeqCst);
    let stale = pdp.decide(&request("alice")).await.unwrap();
    assert!(stale.allowed);
    assert_eq!(stale.fallback, Some(FallbackUse::Stale));
    assert_ne!(stale.id, fresh.id);
    assert!(
        pdp.decide(&request("bob")).await.is_err(),
        "no decision for bob to reuse"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pdp.decide(&request("alice")).await.is_err(), "too old");
    assert_eq!(pdp.used(), 1);
    // A broken policy is never covered by a fallback.
    inner.down.store(false, Ordering::SeqCst);
    pdp.decide(&request("alice")).await.unwrap();
    inner.broken.store(true, Ordering::SeqCst);
    assert!(
        !pdp.decide(&request("alice"))
            .await
            .unwrap_err()
            .is_unavailable()
    );
}

#[tokio::test]
async fn fallback_allow_fails_open_only_where_opted_in_and_counts() {
    let inner = Switch::new();
    let pdp = inner
        .clone()
        .with_fallback(FallbackMode::allow_if(|r| r.subject.id == "health-checker"));
    inner.down.store(true, Ordering::SeqCst);
    let d = pdp.decide(&request("health-checker")).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.fallback, Some(FallbackUse::FailOpen));
    assert!(pdp.decide(&request("alice")).await.is_err());
    assert_eq!(pdp.used(), 1);
}

#[tokio::test]
async fn the_stack_composes() {
    let inner = Switch::new();
    let pdp = inner
        .clone()
        .with_timeout(Duration::from_millis(100))
        .with_breaker(BreakerConfig::default().consecutive_failures(2))
        .with_cache(CacheConfig::default())
        .with_fallback(FallbackMode::Stale {
            max_age: Duration::from_secs(60),
        });
    assert!(pdp.decide(&request("alice")).await.unwrap().allowed);
    inner.delay_ms.store(1_000, Ordering::SeqCst);
    // Cached: no call at all.
    assert!(
        pdp.decide(&request("alice"))
            .await
            .unwrap()
            .fallback
            .is_none()
    );
    // Uncached and slow: times out twice, the breaker opens, nothing is served for bob.
    assert!(pdp.decide(&request("bob")).await.is_err());
    assert!(pdp.decide(&request("bob")).await.is_err());
    assert_eq!(pdp.revision().unwrap().revision, "1");
}

#[tokio::test]
async fn shadow_records_disagreements_and_never_changes_the_enforced_decision() {
    let active = Switch::new();
    let candidate = Switch::new();
    *candidate.revision.lock().unwrap() = "2".into(); // the candidate denies
    let pdp = active.clone().shadowed_by(candidate.clone(), 1.0);
    for i in 0..20 {
        let d = pdp.decide(&request(&format!("u{i}"))).await.unwrap();
        assert!(d.allowed, "the active policy is enforced");
        assert_eq!(d.policy.revision, "1");
    }
    // The candidate runs off the request path; wait for it.
    for _ in 0..100 {
        if pdp.stats().evaluated == 20 && candidate.calls() == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = pdp.stats();
    assert_eq!(stats.evaluated, 20);
    assert_eq!(stats.disagreements, 20);
    // A candidate that agrees records no disagreement; a sample of 0 asks it nothing.
    let agreeing = Switch::new().shadowed_by(Switch::new(), 1.0);
    agreeing.decide(&request("a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(agreeing.stats().disagreements, 0);
    let idle = Switch::new();
    let never = Switch::new().shadowed_by(idle.clone(), 0.0);
    never.decide(&request("a")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(idle.calls(), 0);
    // A slow or failing candidate neither slows nor fails the request.
    let slow = Switch::new();
    slow.delay_ms.store(2_000, Ordering::SeqCst);
    slow.down.store(true, Ordering::SeqCst);
    let pdp = Switch::new().shadowed_by(slow, 1.0);
    let started = std::time::Instant::now();
    assert!(pdp.decide(&request("a")).await.unwrap().allowed);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn canary_split_is_sticky_and_close_to_the_share() {
    let active = Switch::new();
    let candidate = Switch::new();
    *candidate.revision.lock().unwrap() = "2".into();
    let pdp = active.clone().with_canary(candidate.clone(), 0.2);
    let mut on_canary = 0;
    for i in 0..10_000 {
        let r = request(&format!("subject-{i}"));
        if pdp.is_canary(&r) {
            on_canary += 1;
        }
    }
    let share = f64::from(on_canary) / 10_000.0;
    assert!((0.17..=0.23).contains(&share), "{share}");
    for i in 0..200 {
        let r = request(&format!("subject-{i}"));
        let first = pdp.decide(&r).await.unwrap();
        let second = pdp.decide(&r).await.unwrap();
        assert_eq!(first.served_by, second.served_by, "sticky");
        let side = if pdp.is_canary(&r) {
            "canary"
        } else {
            "active"
        };
        assert_eq!(first.served_by.as_deref(), Some(side));
        assert_eq!(
            first.allowed,
            side == "active",
            "the canary's policy decided"
        );
    }
    assert_eq!(pdp.revision().unwrap().revision, "1+2");
}
