//! Decision age, revisions and consistency tokens across the cache and the fallback.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::tests::{Switch, request};
use super::*;
use crate::authzen::EvaluationResponse;
use crate::{AccessRequest, Decision, Pdp, PdpFuture, PolicyRevision};

/// A PDP whose decisions were made `age` before they reach the caller (a remote PDP's, say).
struct Aged {
    inner: Arc<Switch>,
    age: Duration,
}

impl Pdp for Aged {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(async move {
            let d = self.inner.decide(request).await?;
            Ok(d.made_at(SystemTime::now() - self.age))
        })
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revision()
    }
}

fn with_token(subject: &str, min: &str) -> AccessRequest {
    request(subject).with_context(MIN_REVISION_CONTEXT, min)
}

#[tokio::test]
async fn the_stale_bound_counts_from_when_the_decision_was_made_not_when_it_was_last_hit() {
    let inner = Switch::new();
    let pdp = inner
        .clone()
        .with_cache(CacheConfig::default().ttl(Duration::from_millis(120)))
        .with_fallback(FallbackMode::Stale {
            max_age: Duration::from_millis(300),
        });
    let start = Instant::now();
    let made = pdp.decide(&request("alice")).await.unwrap();
    assert!(made.decided_at.is_some(), "the cache stamps the decision");
    // Hits keep coming while the entry lives; they must not refresh the fallback's memory.
    while start.elapsed() < Duration::from_millis(110) {
        let hit = pdp.decide(&request("alice")).await.unwrap();
        assert!(hit.cache_hit);
        assert_eq!(hit.decided_at, made.decided_at, "a hit keeps the time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    inner.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150).saturating_sub(start.elapsed())).await;
    let stale = pdp.decide(&request("alice")).await.unwrap();
    assert_eq!(stale.fallback, Some(FallbackUse::Stale));
    assert_eq!(
        stale.decided_at, made.decided_at,
        "a fallback keeps the time"
    );
    tokio::time::sleep(Duration::from_millis(320).saturating_sub(start.elapsed())).await;
    // 320 ms after it was made, 210 ms after it was last hit: past the bound.
    assert!(
        pdp.decide(&request("alice")).await.is_err(),
        "a decision older than max_age is not served"
    );
}

#[tokio::test]
async fn a_fallback_decision_is_never_cached() {
    let inner = Switch::new();
    // The fallback inside the cache: the cache sees what the fallback serves.
    let pdp = inner
        .clone()
        .with_fallback(FallbackMode::Stale {
            max_age: Duration::from_secs(10),
        })
        .with_cache(CacheConfig::default().ttl(Duration::from_millis(50)));
    let made = pdp.decide(&request("alice")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(70)).await;
    inner.down.store(true, Ordering::SeqCst);
    let stale = pdp.decide(&request("alice")).await.unwrap();
    assert_eq!(stale.fallback, Some(FallbackUse::Stale));
    assert_eq!(stale.decided_at, made.decided_at);
    // The PDP is back: the next decision is its own, not the stale one from the cache.
    inner.down.store(false, Ordering::SeqCst);
    let calls = inner.calls();
    let next = pdp.decide(&request("alice")).await.unwrap();
    assert!(next.fallback.is_none() && !next.cache_hit);
    assert_eq!(inner.calls(), calls + 1);

    // Again with a young stale decision (the entry dropped, not expired), which an age-bound
    // TTL alone would let the cache keep.
    let pdp = inner
        .clone()
        .with_fallback(FallbackMode::Stale {
            max_age: Duration::from_secs(10),
        })
        .with_cache(CacheConfig::default().ttl(Duration::from_secs(10)));
    pdp.decide(&request("bob")).await.unwrap();
    pdp.clear();
    inner.down.store(true, Ordering::SeqCst);
    let stale = pdp.decide(&request("bob")).await.unwrap();
    assert_eq!(stale.fallback, Some(FallbackUse::Stale));
    inner.down.store(false, Ordering::SeqCst);
    let next = pdp.decide(&request("bob")).await.unwrap();
    assert!(next.fallback.is_none() && !next.cache_hit, "{next:?}");
}

#[tokio::test]
async fn the_cache_ttl_counts_from_when_the_pdp_made_the_decision() {
    let inner = Switch::new();
    let ttl = Duration::from_secs(30);
    // Made 31 s ago: older than the TTL already, never served from the cache.
    let pdp = Aged {
        inner: inner.clone(),
        age: ttl + Duration::from_secs(1),
    }
    .with_cache(CacheConfig::default().ttl(ttl));
    for _ in 0..3 {
        assert!(!pdp.decide(&request("alice")).await.unwrap().cache_hit);
    }
    assert_eq!(pdp.stats().hits, 0);
    assert_eq!(inner.calls(), 3);
    // Made 29.9 s ago: served for what is left of the TTL, then asked again.
    let pdp = Aged {
        inner: inner.clone(),
        age: ttl - Duration::from_millis(100),
    }
    .with_cache(CacheConfig::default().ttl(ttl).ttl_jitter(0.0));
    pdp.decide(&request("bob")).await.unwrap();
    assert!(pdp.decide(&request("bob")).await.unwrap().cache_hit);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!pdp.decide(&request("bob")).await.unwrap().cache_hit);
}

#[tokio::test]
async fn entries_made_together_expire_spread_over_the_jitter() {
    let inner = Switch::new();
    let pdp = inner.clone().with_cache(
        CacheConfig::default()
            .ttl(Duration::from_millis(400))
            .ttl_jitter(0.5),
    );
    let names: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    for name in &names {
        pdp.decide(&request(name)).await.unwrap();
    }
    // Lifetimes are spread over 200–400 ms: at 300 ms about half are gone, at 150 none.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let calls = inner.calls();
    for name in &names {
        pdp.decide(&request(name)).await.unwrap();
    }
    assert_eq!(
        inner.calls(),
        calls,
        "nothing expires before (1 - jitter) * ttl"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let calls = inner.calls();
    for name in &names {
        pdp.decide(&request(name)).await.unwrap();
    }
    let expired = inner.calls() - calls;
    assert!(
        (30..=170).contains(&expired),
        "{expired} of 200 entries expired at 300 ms; they should spread"
    );
}

#[tokio::test]
async fn a_stale_decision_of_an_older_revision_is_not_served() {
    let inner = Switch::new();
    let pdp = inner.clone().with_fallback(FallbackMode::Stale {
        max_age: Duration::from_secs(60),
    });
    assert!(pdp.decide(&request("alice")).await.unwrap().allowed);
    // Revision 2 is in force, and the PDP goes down before it answered for alice.
    *inner.revision.lock().unwrap() = "2".into();
    inner.down.store(true, Ordering::SeqCst);
    assert!(
        pdp.decide(&request("alice")).await.is_err(),
        "revision 1's permit is not served under revision 2"
    );
    assert_eq!(pdp.used(), 0);
}

#[tokio::test]
async fn a_consistency_token_bypasses_an_older_cached_revision() {
    let inner = Switch::new();
    let pdp = inner.clone().with_cache(CacheConfig::default());
    pdp.decide(&request("alice")).await.unwrap();
    // The same request with the current revision as token: a hit (the token is not part of
    // the key).
    assert!(
        pdp.decide(&with_token("alice", "1"))
            .await
            .unwrap()
            .cache_hit
    );
    // A revision the cache has not seen: the PDP is asked, and it is still at revision 1.
    let calls = inner.calls();
    let error = pdp.decide(&with_token("alice", "2")).await.unwrap_err();
    assert!(error.is_unavailable());
    assert!(
        error.to_string().contains("revision_unavailable"),
        "{error}"
    );
    assert_eq!(inner.calls(), calls + 1, "the cache did not answer");
    // The PDP switches: the token is met, and the old revision's entry is gone.
    *inner.revision.lock().unwrap() = "2".into();
    let d = pdp.decide(&with_token("alice", "2")).await.unwrap();
    assert!(!d.allowed && !d.cache_hit);
    assert_eq!(d.policy.revision, "2");
    // A token older than the revision in force is met by it.
    assert!(
        pdp.decide(&with_token("alice", "1"))
            .await
            .unwrap()
            .cache_hit
    );
}

#[tokio::test]
async fn a_stale_decision_must_meet_the_token_too() {
    let inner = Switch::new();
    let pdp = inner.clone().with_fallback(FallbackMode::Stale {
        max_age: Duration::from_secs(60),
    });
    pdp.decide(&request("alice")).await.unwrap();
    inner.down.store(true, Ordering::SeqCst);
    assert!(pdp.decide(&with_token("alice", "1")).await.is_ok());
    assert!(pdp.decide(&with_token("alice", "9")).await.is_err());
}

#[test]
fn revision_history_orders_by_switch_and_keeps_rollbacks() {
    let r = |v: &str| PolicyRevision::new("p", v);
    let mut h = RevisionHistory::with_capacity(3);
    assert_eq!(h.observe(&r("a")), Observed::New);
    assert_eq!(h.observe(&r("b")), Observed::New);
    assert_eq!(h.observe(&r("a")), Observed::Older, "a lagging answer");
    assert_eq!(h.current(), Some(&r("b")));
    assert!(h.advance(&r("a")), "a rollback is a switch");
    assert!(h.meets("a", "b") && !h.meets("b", "a"));
    h.advance(&r("c"));
    h.advance(&r("d"));
    assert!(!h.meets("d", "b"), "forgotten: not met");
    assert!(h.meets("d", "c"));
}

#[test]
fn decided_at_travels_in_the_authzen_context() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_130_000_123);
    let d = Decision::permit()
        .with_policy(PolicyRevision::new("p", "1"))
        .made_at(at);
    let wire = serde_json::to_value(EvaluationResponse::from_decision(&d)).unwrap();
    assert_eq!(wire["context"]["decided_at"], "2026-12-01T13:00:00.123Z");
    let back = EvaluationResponse::parse(wire.to_string().as_bytes())
        .unwrap()
        .into_decision()
        .unwrap();
    assert_eq!(back.decided_at, Some(at));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["decided_at"], "2026-12-01T13:00:00.123Z");
    assert_eq!(serde_json::from_value::<Decision>(json).unwrap(), d);
    // Without it, decisions read as before.
    let plain = EvaluationResponse::parse(br#"{"decision": true}"#)
        .unwrap()
        .into_decision()
        .unwrap();
    assert_eq!(plain.decided_at, None);
    // A malformed time is a malformed answer: unavailable, never a permit.
    for bad in [r#""yesterday""#, "17", "{}"] {
        let body = format!(r#"{{"decision": true, "context": {{"decided_at": {bad}}}}}"#);
        let error = EvaluationResponse::parse(body.as_bytes())
            .unwrap()
            .into_decision()
            .unwrap_err();
        assert!(error.is_unavailable(), "{bad}: {error}");
    }
}
