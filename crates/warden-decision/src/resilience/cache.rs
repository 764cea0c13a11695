//! A decision cache tied to the policy revision.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::decision::{Decision, DecisionId, PolicyRevision};
use crate::pdp::{Pdp, PdpError, PdpFuture};
use crate::request::AccessRequest;

use super::canonical::request_key;
use super::revision::{MIN_REVISION_CONTEXT, RevisionHistory, min_revision};

/// How a [`DecisionCache`] is bounded and what it keeps.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The most decisions kept (default 10 000).
    pub max_entries: u64,
    /// The most bytes of keys and decisions kept (default 32 MiB).
    pub max_bytes: u64,
    /// How long after it was made (its [`decided_at`](Decision::decided_at)) a decision may
    /// be served from the cache (default 30 s).
    pub ttl: Duration,
    /// Each entry lives up to this share (0–1) less than `ttl`, chosen per entry, so entries
    /// made together do not all expire together (default 0.1). Never more than `ttl`.
    pub ttl_jitter: f64,
    /// Context attributes left out of the key because they change with every request (default
    /// `time` and `request_id`). A policy that decides on one of them must not be cached, or
    /// only with a TTL it can live with.
    pub ignore_context: Vec<String>,
    /// Obligation types whose decisions are never cached (default none).
    pub never_cache: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 32 * 1024 * 1024,
            ttl: Duration::from_secs(30),
            ttl_jitter: 0.1,
            ignore_context: vec!["time".into(), "request_id".into()],
            never_cache: Vec::new(),
        }
    }
}

impl CacheConfig {
    /// Sets the bound on entries.
    #[must_use]
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// Sets the bound on bytes.
    #[must_use]
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n.max(1);
        self
    }

    /// Sets the time to live.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the TTL jitter: entries live between `(1 - share) * ttl` and `ttl`.
    #[must_use]
    pub fn ttl_jitter(mut self, share: f64) -> Self {
        self.ttl_jitter = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Never caches decisions carrying an obligation of this type (e.g. `step_up`).
    #[must_use]
    pub fn never_cache(mut self, obligation_type: impl Into<String>) -> Self {
        self.never_cache.push(obligation_type.into());
        self
    }

    /// Leaves one more context attribute out of the key.
    #[must_use]
    pub fn ignore_context(mut self, key: impl Into<String>) -> Self {
        self.ignore_context.push(key.into());
        self
    }
}

/// Hit and miss counts of a [`DecisionCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Decisions served from the cache.
    pub hits: u64,
    /// Decisions the inner PDP was asked for.
    pub misses: u64,
}

/// Why a miss was not cached.
enum Miss {
    Error(PdpError),
    Uncacheable(Decision),
}

/// A PDP that remembers the decisions of another, keyed by a canonical form of the access
/// request, each entry valid for the policy revision it was decided under.
///
/// * Entries are dropped as soon as the inner PDP reports another revision, and a decision made
///   under one revision is never served under another.
/// * A decision is served for at most `ttl` after it was *made* (its
///   [`decided_at`](Decision::decided_at)), however often it is hit; entries expire with jitter.
/// * Errors, fallback decisions and decisions with errors are never cached. An inner PDP that
///   reports no revision is not cached at all.
/// * A request with a consistency token (`context.min_revision`, see
///   [`RevisionHistory`]) is served from the cache only when the cached revision meets it;
///   otherwise the inner PDP decides, and an answer of an older revision is refused as
///   unavailable (`revision_unavailable`).
/// * Concurrent identical requests are decided once; every caller gets its own decision id.
/// * Bounded by entries and bytes, with a time to live.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use warden_decision::{AccessRequest, Action, CacheConfig, Decision, Pdp, PdpExt, PolicyRevision, Resource, Subject};
/// # struct Engine;
/// # impl Pdp for Engine {
/// #     fn decide<'a>(&'a self, _: &'a AccessRequest) -> warden_decision::PdpFuture<'a> {
/// #         Box::pin(async { Ok(Decision::permit().with_policy(PolicyRevision::new("p", "1"))) })
/// #     }
/// #     fn revision(&self) -> Option<PolicyRevision> { Some(PolicyRevision::new("p", "1")) }
/// # }
/// let pdp = Engine.with_cache(CacheConfig::default());
/// let request = AccessRequest::new(Subject::user("a"), Action::new("GET"), Resource::new("route", "/"));
/// pdp.decide(&request).await.unwrap();
/// pdp.decide(&request).await.unwrap();
/// assert_eq!(pdp.stats().hits, 1);
/// # });
/// ```
pub struct DecisionCache<P> {
    inner: P,
    config: CacheConfig,
    pub(super) cache: moka::future::Cache<String, Arc<Decision>>,
    history: Mutex<RevisionHistory>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<P> fmt::Debug for DecisionCache<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionCache")
            .field("config", &self.config)
            .field("entries", &self.cache.entry_count())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<P> DecisionCache<P> {
    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }

    /// The number of entries (eventually consistent).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

impl<P: Pdp> DecisionCache<P> {
    /// Caches the decisions of `inner`.
    pub fn new(inner: P, mut config: CacheConfig) -> Self {
        if !config
            .ignore_context
            .iter()
            .any(|k| k == MIN_REVISION_CONTEXT)
        {
            config.ignore_context.push(MIN_REVISION_CONTEXT.to_owned());
        }
        // One weight serves both bounds: an entry weighs its bytes, but at least the share of
        // the byte budget that one of `max_entries` entries may have.
        let floor = (config.max_bytes / config.max_entries.max(1)).max(1);
        let cache = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .expire_after(AgeExpiry {
                ttl: config.ttl,
                jitter: config.ttl_jitter,
                seed: RandomState::new(),
            })
            .weigher(move |key: &String, decision: &Arc<Decision>| {
                let bytes = key.len() as u64 + estimated_size(decision);
                u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            inner,
            config,
            cache,
            history: Mutex::new(RevisionHistory::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Notes the inner PDP's revision; a new one empties the cache.
    fn observe(&self, revision: &PolicyRevision) {
        if let Ok(mut history) = self.history.lock()
            && history.advance(revision)
        {
            self.cache.invalidate_all();
        }
    }

    fn meets(&self, have: &str, min: &str) -> bool {
        self.history.lock().is_ok_and(|h| h.meets(have, min))
    }

    fn cacheable(&self, decision: &Decision, revision: &PolicyRevision) -> bool {
        super::revision::same(&decision.policy, revision)
            && decision.fallback.is_none()
            && decision.error_class().is_none()
            && !decision
                .obligations
                .iter()
                .any(|o| self.config.never_cache.iter().any(|t| t == o.type_name()))
    }

    async fn decide_cached(&self, request: &AccessRequest) -> Result<Decision, PdpError> {
        let Some(revision) = self.inner.revision() else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return self.inner.decide(request).await;
        };
        self.observe(&revision);
        if let Some(min) = min_revision(request)
            && !self.meets(&revision.revision, min)
        {
            return self.decide_at_least(request, min).await;
        }
        // The key leaves the revision out: every entry was decided under the revision its
        // decision names (see `cacheable`), and a hit is served only under that revision.
        let key = request_key(request, &self.config.ignore_context);
        if let Some(hit) = self.cache.get(&key).await {
            // Moka's timers are coarse: the bound is checked again on every hit.
            if super::revision::same(&hit.policy, &revision)
                && hit
                    .age(SystemTime::now())
                    .is_some_and(|age| age < self.config.ttl)
            {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let mut decision = fresh(&hit);
                decision.cache_hit = true;
                return Ok(decision);
            }
            self.cache.invalidate(&key).await;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let outcome = self
            .cache
            .try_get_with(key, async {
                match self.inner.decide(request).await {
                    Err(error) => Err(Miss::Error(error)),
                    Ok(mut d) if self.cacheable(&d, &revision) => {
                        d.stamp_if_unset();
                        Ok(Arc::new(d))
                    }
                    Ok(d) => Err(Miss::Uncacheable(d)),
                }
            })
            .await;
        match outcome {
            Ok(decision) if super::revision::same(&decision.policy, &revision) => {
                Ok(fresh(&decision))
            }
            // Decided, or found, under another revision than this request's (the policy
            // changed meanwhile): never served under this one.
            Ok(_) => self.inner.decide(request).await,
            Err(miss) => match &*miss {
                Miss::Error(error) => Err(error.clone()),
                Miss::Uncacheable(decision) => Ok(fresh(decision)),
            },
        }
    }
}

impl<P: Pdp> DecisionCache<P> {
    /// A request whose token the cached revision does not meet: the inner PDP decides, and its
    /// answer must meet the token.
    async fn decide_at_least(
        &self,
        request: &AccessRequest,
        min: &str,
    ) -> Result<Decision, PdpError> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut decision = self.inner.decide(request).await?;
        if let Some(revision) = self.inner.revision() {
            self.observe(&revision);
        }
        if !self.meets(&decision.policy.revision, min) {
            return Err(PdpError::unavailable(format!(
                "revision_unavailable: the decision was made under revision `{}`, not at least `{min}`",
                decision.policy.revision
            )));
        }
        decision.stamp_if_unset();
        Ok(decision)
    }
}

/// Entries live `ttl` from when their decision was made, less a per-entry share of the jitter.
struct AgeExpiry {
    ttl: Duration,
    jitter: f64,
    seed: RandomState,
}

impl moka::Expiry<String, Arc<Decision>> for AgeExpiry {
    fn expire_after_create(
        &self,
        key: &String,
        decision: &Arc<Decision>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let age = decision.age(SystemTime::now()).unwrap_or_default();
        let remaining = self.ttl.saturating_sub(age);
        // A share in [0, 1) from the key's hash under a per-cache random seed.
        let share = (self.seed.hash_one(key) >> 11) as f64 / (1_u64 << 53) as f64;
        Some(remaining.mul_f64((1.0 - self.jitter * share).clamp(0.0, 1.0)))
    }
}

/// A copy of a remembered decision with an id of its own.
fn fresh(decision: &Decision) -> Decision {
    let mut decision = decision.clone();
    decision.id = DecisionId::new();
    decision
}

fn estimated_size(decision: &Decision) -> u64 {
    let strings: usize = decision
        .reasons
        .iter()
        .map(|r| r.message.len() + r.code.as_ref().map_or(0, String::len))
        .chain(decision.diagnostics.iter().map(|d| d.message.len()))
        .sum();
    (std::mem::size_of::<Decision>()
        + strings
        + decision.policy.id.len()
        + decision.policy.revision.len()
        + decision.obligations.len() * 256) as u64
}

impl<P: Pdp> Pdp for DecisionCache<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(self.decide_cached(request))
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revision()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Switch, request};
    use super::*;
    use crate::PdpExt;

    #[tokio::test]
    async fn an_entry_of_another_revision_is_never_served() {
        // Revision 1 permits, revision 2 denies.
        let inner = Switch::new();
        let pdp = inner.clone().with_cache(CacheConfig::default());
        *inner.revision.lock().unwrap() = "2".into();
        assert!(!pdp.decide(&request("alice")).await.unwrap().allowed);
        // A permit of revision 1 lands under the request's key, as one decided while the
        // revision changed would.
        let key = request_key(&request("alice"), &pdp.config.ignore_context);
        let stale = Decision::permit()
            .with_policy(PolicyRevision::new("p", "1"))
            .made_at(SystemTime::now());
        pdp.cache.insert(key, Arc::new(stale)).await;
        let decision = pdp.decide(&request("alice")).await.unwrap();
        assert!(!decision.allowed, "a decision of revision 1 served under 2");
        assert_eq!(decision.policy.revision, "2");
        assert!(!decision.cache_hit);
        // Its own revision's answer is cached again.
        assert!(pdp.decide(&request("alice")).await.unwrap().cache_hit);
    }
}
