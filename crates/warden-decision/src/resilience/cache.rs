//! A decision cache tied to the policy revision.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::decision::{Decision, DecisionId, PolicyRevision};
use crate::pdp::{Pdp, PdpError, PdpFuture};
use crate::request::AccessRequest;

use super::canonical::cache_key;

/// How a [`DecisionCache`] is bounded and what it keeps.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The most decisions kept (default 10 000).
    pub max_entries: u64,
    /// The most bytes of keys and decisions kept (default 32 MiB).
    pub max_bytes: u64,
    /// How long a decision may be served from the cache (default 30 s).
    pub ttl: Duration,
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
/// request and the policy revision.
///
/// * Entries are dropped as soon as the inner PDP reports another revision, and a decision made
///   under one revision is never served under another.
/// * Errors are never cached. An inner PDP that reports no revision is not cached at all.
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
    revision: Mutex<Option<PolicyRevision>>,
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
    pub fn new(inner: P, config: CacheConfig) -> Self {
        // One weight serves both bounds: an entry weighs its bytes, but at least the share of
        // the byte budget that one of `max_entries` entries may have.
        let floor = (config.max_bytes / config.max_entries.max(1)).max(1);
        let cache = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .time_to_live(config.ttl)
            .weigher(move |key: &String, decision: &Arc<Decision>| {
                let bytes = key.len() as u64 + estimated_size(decision);
                u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            inner,
            config,
            cache,
            revision: Mutex::new(None),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Notes the inner PDP's revision; a new one empties the cache.
    fn observe(&self, revision: &PolicyRevision) {
        if let Ok(mut current) = self.revision.lock()
            && current.as_ref() != Some(revision)
        {
            if current.is_some() {
                self.cache.invalidate_all();
            }
            *current = Some(revision.clone());
        }
    }

    fn cacheable(&self, decision: &Decision, revision: &PolicyRevision) -> bool {
        decision.policy == *revision
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
        let key = cache_key(request, &self.config.ignore_context, &revision);
        if let Some(hit) = self.cache.get(&key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            let mut decision = fresh(&hit);
            decision.cache_hit = true;
            return Ok(decision);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let outcome = self
            .cache
            .try_get_with(key, async {
                match self.inner.decide(request).await {
                    Err(error) => Err(Miss::Error(error)),
                    Ok(d) if self.cacheable(&d, &revision) => Ok(Arc::new(d)),
                    Ok(d) => Err(Miss::Uncacheable(d)),
                }
            })
            .await;
        match outcome {
            Ok(decision) => Ok(fresh(&decision)),
            Err(miss) => match &*miss {
                Miss::Error(error) => Err(error.clone()),
                Miss::Uncacheable(decision) => Ok(fresh(decision)),
            },
        }
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
