//! What to answer when no decision can be had.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, DecisionId, PolicyRevision};
use crate::pdp::{Pdp, PdpError, PdpFuture};
use crate::request::AccessRequest;

use super::canonical::cache_key;
use super::revision::{RevisionHistory, min_revision};

/// How a decision was served when the PDP could not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackUse {
    /// The last decision for the same request, younger than the configured bound.
    Stale,
    /// A permit without a decision: fail-open, opted into.
    FailOpen,
}

impl FallbackUse {
    /// The name in events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::FailOpen => "fail_open",
        }
    }
}

type AllowIf = dyn Fn(&AccessRequest) -> bool + Send + Sync;

/// What a [`Fallback`] answers when the inner PDP is unavailable (policy errors are never
/// covered: a broken policy must not be papered over).
#[derive(Clone, Default)]
pub enum FallbackMode {
    /// Fail closed: the error goes on, and the PEP refuses the request (the default).
    #[default]
    Deny,
    /// The last decision the PDP made for the same request, if made less than `max_age` ago
    /// (measured from its [`decided_at`](Decision::decided_at), not from when it was last
    /// served) and under the revision the PDP reports now, marked [`FallbackUse::Stale`]; else
    /// the error goes on. Only fresh answers of the PDP are remembered, never cache hits or
    /// fallbacks.
    Stale {
        /// The oldest decision that may be served, by the time it was made.
        max_age: Duration,
    },
    /// A permit, marked [`FallbackUse::FailOpen`], for the requests the predicate selects (say,
    /// one route); the error goes on for the others. Every use is counted and logged.
    Allow(Arc<AllowIf>),
}

impl FallbackMode {
    /// Fail open for every request this mode is used for (say, one route's, with
    /// [`RouteFallback`]).
    pub fn allow() -> Self {
        Self::allow_if(|_| true)
    }

    /// Fail open for the requests `predicate` selects.
    pub fn allow_if(predicate: impl Fn(&AccessRequest) -> bool + Send + Sync + 'static) -> Self {
        Self::Allow(Arc::new(predicate))
    }
}

impl fmt::Debug for FallbackMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deny => f.write_str("Deny"),
            Self::Stale { max_age } => f.debug_struct("Stale").field("max_age", max_age).finish(),
            Self::Allow(_) => f.write_str("Allow(..)"),
        }
    }
}

/// A fallback mode per route: the mode of the route template an HTTP PEP matched (the access
/// request's `resource.id` when its type is `route`), else the default. One layer serves a
/// router whose routes need different modes.
///
/// ```
/// use std::time::Duration;
/// use warden_decision::{FallbackMode, RouteFallback};
///
/// let fallback = RouteFallback::new(FallbackMode::Deny)
///     .route("/health", FallbackMode::allow())
///     .route("/patients/{id}", FallbackMode::Stale { max_age: Duration::from_secs(60) });
/// # let _ = fallback;
/// ```
#[derive(Debug, Clone, Default)]
pub struct RouteFallback {
    default: FallbackMode,
    routes: Vec<(String, FallbackMode)>,
}

impl RouteFallback {
    /// `default` for every route not named.
    pub fn new(default: FallbackMode) -> Self {
        Self {
            default,
            routes: Vec::new(),
        }
    }

    /// `mode` for the route `template` (as the router writes it: `/patients/{id}`).
    #[must_use]
    pub fn route(mut self, template: impl Into<String>, mode: FallbackMode) -> Self {
        self.routes.push((template.into(), mode));
        self
    }

    /// Wraps `inner` in a [`Fallback`] with these modes.
    pub fn wrap<P: Pdp>(self, inner: P) -> Fallback<P> {
        Fallback::with_routes(inner, self)
    }
}

/// A PDP that falls back to a [`FallbackMode`] when the inner one is unavailable.
pub struct Fallback<P> {
    inner: P,
    mode: FallbackMode,
    routes: Vec<(String, FallbackMode)>,
    last: Option<moka::sync::Cache<String, Arc<Decision>>>,
    history: Mutex<RevisionHistory>,
    used: AtomicU64,
}

impl<P> fmt::Debug for Fallback<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("mode", &self.mode)
            .field("routes", &self.routes)
            .field("used", &self.used())
            .finish()
    }
}

/// How many last decisions a stale fallback keeps.
const STALE_ENTRIES: u64 = 10_000;

impl<P> Fallback<P> {
    /// How many decisions were served by the fallback.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

impl<P: Pdp> Fallback<P> {
    /// Wraps `inner`.
    pub fn new(inner: P, mode: FallbackMode) -> Self {
        Self::with_routes(inner, RouteFallback::new(mode))
    }

    /// Wraps `inner` with a mode per route.
    pub fn with_routes(inner: P, routes: RouteFallback) -> Self {
        let longest = std::iter::once(&routes.default)
            .chain(routes.routes.iter().map(|(_, m)| m))
            .filter_map(|m| match m {
                FallbackMode::Stale { max_age } => Some(*max_age),
                _ => None,
            })
            .max();
        let last = longest.map(|max_age| {
            moka::sync::Cache::builder()
                .max_capacity(STALE_ENTRIES)
                .time_to_live(max_age)
                .build()
        });
        Self {
            inner,
            mode: routes.default,
            routes: routes.routes,
            last,
            history: Mutex::new(RevisionHistory::default()),
            used: AtomicU64::new(0),
        }
    }

    fn key(request: &AccessRequest, revision: Option<&PolicyRevision>) -> String {
        let none = PolicyRevision::default();
        cache_key(
            request,
            &[
                "time".to_owned(),
                "request_id".to_owned(),
                super::revision::MIN_REVISION_CONTEXT.to_owned(),
            ],
            revision.unwrap_or(&none),
        )
    }

    async fn decide_or_fall_back(&self, request: &AccessRequest) -> Result<Decision, PdpError> {
        let error = match self.inner.decide(request).await {
            Ok(mut decision) => {
                if let Some(last) = &self.last
                    && decision.error_class().is_none()
                    && !decision.cache_hit
                    && decision.fallback.is_none()
                {
                    decision.stamp_if_unset();
                    // Stale decisions are keyed without the revision: when the PDP is down, the
                    // revision it would report is unknown.
                    last.insert(Self::key(request, None), Arc::new(decision.clone()));
                }
                return Ok(decision);
            }
            Err(error) if error.is_unavailable() => error,
            Err(error) => return Err(error),
        };
        let mode = if request.resource.kind == "route" {
            self.routes
                .iter()
                .find(|(route, _)| *route == request.resource.id)
                .map_or(&self.mode, |(_, mode)| mode)
        } else {
            &self.mode
        };
        match mode {
            FallbackMode::Deny => Err(error),
            FallbackMode::Stale { max_age } => {
                let Some(stale) = self
                    .last
                    .as_ref()
                    .and_then(|l| l.get(&Self::key(request, None)))
                else {
                    return Err(error);
                };
                let Some(age) = stale.age(SystemTime::now()).filter(|age| age < max_age) else {
                    return Err(error);
                };
                if !self.current_enough(&stale, request) {
                    return Err(error);
                }
                self.used.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "warden::fallback",
                    fallback = "stale",
                    %error,
                    age_ms = age.as_millis() as u64,
                    subject = %request.subject.id,
                    resource = %request.resource.id,
                    "PDP unavailable: serving the last decision"
                );
                let mut decision = (*stale).clone();
                decision.id = DecisionId::new();
                decision.fallback = Some(FallbackUse::Stale);
                Ok(decision)
            }
            FallbackMode::Allow(predicate) => {
                if !predicate(request) {
                    return Err(error);
                }
                self.used.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "warden::fallback",
                    fallback = "fail_open",
                    %error,
                    subject = %request.subject.id,
                    action = %request.action.name,
                    resource = %request.resource.id,
                    "PDP unavailable: failing open"
                );
                let mut decision =
                    Decision::permit().with_reason("fail-open: the PDP was unavailable");
                decision.fallback = Some(FallbackUse::FailOpen);
                Ok(decision)
            }
        }
    }
}

impl<P: Pdp> Fallback<P> {
    /// Whether a remembered decision is of the revision in force (as the PDP last reported it)
    /// and meets the request's consistency token, if any.
    fn current_enough(&self, stale: &Decision, request: &AccessRequest) -> bool {
        let Ok(mut history) = self.history.lock() else {
            return false;
        };
        if let Some(current) = self.inner.revision() {
            history.advance(&current);
            if !super::revision::same(&stale.policy, &current) {
                return false;
            }
        }
        min_revision(request).is_none_or(|min| history.meets(&stale.policy.revision, min))
    }
}

impl<P: Pdp> Pdp for Fallback<P> {
    fn decide<'a>(&'a self, request: &'a AccessRequest) -> PdpFuture<'a> {
        Box::pin(self.decide_or_fall_back(request))
    }

    fn revision(&self) -> Option<PolicyRevision> {
        self.inner.revision()
    }
}
